// StaticOracleSim: the best static demand-paging policy given the trace's
// access counts in hindsight, A0 of Aho, Denning and Ullman (1971). The
// most accessed experts, as many as fit beside one free slot, stay
// resident once loaded; the slot (the largest expert's bytes) serves every
// other expert in turn.
//
// Why cache_sim runs it: under the independent reference model (every
// access an independent draw from fixed popularities) and with equal-sized
// experts, A0 with the true popularities has the highest expected hit rate
// of all online demand-paging policies (with unequal sizes the greedy
// choice here is only a heuristic). On traces near that model
// (cache_acceptance's "iid" fleets) its hit rate is therefore about what any
// online cache can reach, and its gap to Belady's MIN is the price of not
// knowing the future, which no online policy closes. Where accesses have
// locality or drift (cameras that keep their scene) online policies can beat
// it.
//
// Needs the whole trace up front (it counts accesses first).
#ifndef EDGE_CACHE_SIM_STATIC_ORACLE_SIM_H_
#define EDGE_CACHE_SIM_STATIC_ORACLE_SIM_H_

#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache/sim/simulated_cache.h"

namespace edge::sim {

class StaticOracleSim final : public SimulatedCache {
 public:
  // Chooses the resident set from `trace`, which need not outlive this.
  StaticOracleSim(uint64_t capacity_bytes,
                  const std::vector<ExpertAccess>& trace);

  bool Access(int64_t index, const ExpertAccess& access) override;

 private:
  const uint64_t capacity_bytes_;
  std::unordered_set<ExpertKey, ExpertKeyHash> kept_;      // chosen
  std::unordered_set<ExpertKey, ExpertKeyHash> resident_;  // of kept_
  std::optional<ExpertAccess> slot_;  // the one expert not in kept_
};

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_STATIC_ORACLE_SIM_H_
