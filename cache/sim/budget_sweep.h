// The comparison cache_sim runs: one trace replayed, at each budget,
// against fixed-size LRU, the adaptive cache, LRU at the adaptive cache's
// peak bytes, S3-FIFO, the static oracle A0 and Belady's MIN (the policies:
// simulated_cache.h).
//
// "LRU at the adaptive cache's peak" is the fair baseline for adaptive
// sizing: the adaptive cache may hold up to its budget but is credited for
// what it actually used at most, so it must beat LRU given that much.
//
// Stateless and thread-safe.
#ifndef EDGE_CACHE_SIM_BUDGET_SWEEP_H_
#define EDGE_CACHE_SIM_BUDGET_SWEEP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/access_trace.h"
#include "cache/adaptive_policy.h"
#include "cache/sim/simulated_cache.h"

namespace edge::sim {

// Policy names, in the order runs list them.
inline constexpr char kLru[] = "lru";
inline constexpr char kAdaptive[] = "adaptive";
inline constexpr char kLruAtPeak[] = "lru_at_peak";
inline constexpr char kS3Fifo[] = "s3fifo";
inline constexpr char kStaticOracle[] = "static_oracle";
inline constexpr char kBelady[] = "belady";
inline constexpr int kPolicyCount = 6;

struct TraceStats {
  int64_t accesses = 0;
  int64_t passes = 0;
  int distinct_experts = 0;
  uint64_t distinct_bytes = 0;  // every distinct expert once: 100% budget.
};

TraceStats SummarizeTrace(const std::vector<ExpertAccess>& trace);

// "10%,25%,100000000": percentages of `distinct_bytes` (rounded down to a
// byte) or byte counts; returned sorted, without repeats. INVALID_ARGUMENT
// naming a malformed or zero entry.
absl::StatusOr<std::vector<uint64_t>> ParseBudgets(const std::string& text,
                                                   uint64_t distinct_bytes);

struct SweepOptions {
  std::vector<uint64_t> budgets_bytes;  // each > 0.
  // The adaptive cache's min_bytes (its floor and starting size) as a
  // fraction of its budget (max_bytes). 0.25: it may leave three quarters
  // of the budget unused.
  double adaptive_min_fraction = 0.25;
  // Every other AdaptivePolicy option; max_bytes and min_bytes are set
  // per budget.
  AdaptivePolicyOptions adaptive;
};

struct PolicyRun {
  std::string name;
  uint64_t capacity_bytes = 0;  // the fixed size, or the adaptive maximum.
  SimCounters counters;
  std::vector<ResizeEvent> resizes;  // adaptive only.
  int resizes_up() const;
  int resizes_down() const;
};

struct BudgetRun {
  uint64_t budget_bytes = 0;
  std::vector<PolicyRun>
      runs;  // kLru, kAdaptive, kLruAtPeak, kS3Fifo, kStaticOracle, kBelady.

  // REQUIRES: `name` is one of the policies above.
  const PolicyRun& Find(const std::string& name) const;
  // Hit-rate ratio adaptive / Belady (1 when Belady has no hit either).
  double AdaptiveOverBelady() const;
  // The same for the static oracle: about the best an online policy can
  // do on traces without locality (static_oracle_sim.h).
  double StaticOracleOverBelady() const;
  // Hit-rate difference adaptive - LRU at the adaptive peak.
  double AdaptiveMinusLruAtPeak() const;

 private:
  double OverBelady(const std::string& name) const;
};

std::vector<BudgetRun> RunSweep(const std::vector<ExpertAccess>& trace,
                                const SweepOptions& options);

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_BUDGET_SWEEP_H_
