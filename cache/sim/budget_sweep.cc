#include "cache/sim/budget_sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <unordered_set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cache/sim/adaptive_sim.h"
#include "cache/sim/belady_sim.h"
#include "cache/sim/lru_sim.h"
#include "cache/sim/s3fifo_sim.h"
#include "cache/sim/static_oracle_sim.h"

namespace edge::sim {
namespace {

absl::StatusOr<uint64_t> ParseBudget(absl::string_view field,
                                     uint64_t distinct_bytes) {
  absl::string_view text = absl::StripAsciiWhitespace(field);
  double percent = 0;
  uint64_t bytes = 0;
  if (absl::ConsumeSuffix(&text, "%")) {
    if (absl::SimpleAtod(text, &percent) && percent > 0) {
      bytes = static_cast<uint64_t>(std::floor(distinct_bytes * percent / 100));
    }
  } else if (!absl::SimpleAtoi(text, &bytes)) {
    bytes = 0;
  }
  if (bytes == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "budget '", field, "': expected bytes or a percentage > 0 (of ",
        distinct_bytes, " bytes of distinct experts)"));
  }
  return bytes;
}

PolicyRun Run(const std::string& name, uint64_t capacity_bytes,
              const std::vector<ExpertAccess>& trace, SimulatedCache* cache) {
  PolicyRun run;
  run.name = name;
  run.capacity_bytes = capacity_bytes;
  run.counters = Replay(trace, cache);
  return run;
}

PolicyRun RunAdaptive(const std::vector<ExpertAccess>& trace,
                      const SweepOptions& options, uint64_t budget) {
  AdaptivePolicyOptions adaptive = options.adaptive;
  adaptive.max_bytes = budget;
  adaptive.min_bytes =
      static_cast<uint64_t>(budget * options.adaptive_min_fraction);
  AdaptiveSim sim(adaptive, trace);
  PolicyRun run = Run(kAdaptive, budget, trace, &sim);
  run.resizes = sim.resizes();
  return run;
}

BudgetRun RunBudget(const std::vector<ExpertAccess>& trace,
                    const SweepOptions& options, uint64_t budget) {
  BudgetRun result;
  result.budget_bytes = budget;
  LruSim lru(budget);
  result.runs.push_back(Run(kLru, budget, trace, &lru));
  result.runs.push_back(RunAdaptive(trace, options, budget));
  const uint64_t peak = result.runs.back().counters.peak_bytes;
  LruSim lru_at_peak(peak);
  result.runs.push_back(Run(kLruAtPeak, peak, trace, &lru_at_peak));
  S3FifoSim s3fifo(budget);
  result.runs.push_back(Run(kS3Fifo, budget, trace, &s3fifo));
  StaticOracleSim static_oracle(budget, trace);
  result.runs.push_back(Run(kStaticOracle, budget, trace, &static_oracle));
  BeladySim belady(budget, trace);
  result.runs.push_back(Run(kBelady, budget, trace, &belady));
  return result;
}

}  // namespace

TraceStats SummarizeTrace(const std::vector<ExpertAccess>& trace) {
  TraceStats stats;
  stats.accesses = static_cast<int64_t>(trace.size());
  std::map<ExpertKey, uint64_t> sizes;
  std::unordered_set<int64_t> passes;
  for (const ExpertAccess& a : trace) {
    uint64_t& bytes = sizes[a.key];
    bytes = std::max(bytes, a.bytes);
    passes.insert(a.pass);
  }
  stats.passes = static_cast<int64_t>(passes.size());
  stats.distinct_experts = static_cast<int>(sizes.size());
  for (const auto& [key, bytes] : sizes) stats.distinct_bytes += bytes;
  return stats;
}

absl::StatusOr<std::vector<uint64_t>> ParseBudgets(const std::string& text,
                                                   uint64_t distinct_bytes) {
  std::vector<uint64_t> budgets;
  for (absl::string_view field : absl::StrSplit(text, ',')) {
    absl::StatusOr<uint64_t> budget = ParseBudget(field, distinct_bytes);
    if (!budget.ok()) return budget.status();
    budgets.push_back(*budget);
  }
  std::sort(budgets.begin(), budgets.end());
  budgets.erase(std::unique(budgets.begin(), budgets.end()), budgets.end());
  return budgets;
}

int PolicyRun::resizes_up() const {
  int up = 0;
  for (const ResizeEvent& e : resizes) up += e.grew() ? 1 : 0;
  return up;
}

int PolicyRun::resizes_down() const {
  return static_cast<int>(resizes.size()) - resizes_up();
}

const PolicyRun& BudgetRun::Find(const std::string& name) const {
  for (const PolicyRun& run : runs) {
    if (run.name == name) return run;
  }
  std::abort();  // REQUIRES violated: RunBudget always runs every policy.
}

double BudgetRun::AdaptiveOverBelady() const { return OverBelady(kAdaptive); }

double BudgetRun::StaticOracleOverBelady() const {
  return OverBelady(kStaticOracle);
}

double BudgetRun::OverBelady(const std::string& name) const {
  const double optimum = Find(kBelady).counters.hit_rate();
  return optimum == 0 ? 1.0 : Find(name).counters.hit_rate() / optimum;
}

double BudgetRun::AdaptiveMinusLruAtPeak() const {
  return Find(kAdaptive).counters.hit_rate() -
         Find(kLruAtPeak).counters.hit_rate();
}

std::vector<BudgetRun> RunSweep(const std::vector<ExpertAccess>& trace,
                                const SweepOptions& options) {
  std::vector<BudgetRun> results;
  for (uint64_t budget : options.budgets_bytes) {
    results.push_back(RunBudget(trace, options, budget));
  }
  return results;
}

}  // namespace edge::sim
