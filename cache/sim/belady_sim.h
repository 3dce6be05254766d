// BeladySim: Belady's MIN, the offline optimum cache_sim measures the
// other policies against. On a miss it evicts the resident expert whose
// next use lies farthest in the future (never used again counts as
// infinitely far), until the requested expert fits; the requested expert
// always enters (no bypass), like every policy compared with it.
//
// For equal-sized keys this maximises hits over every demand-paging policy
// at the same capacity (Belady 1966; Mattson et al. 1970). With unequal
// sizes the optimum is NP-hard and farthest-next-use is only a heuristic;
// cache_sim's traces of one model have equal-sized experts.
//
// Needs the whole trace up front (it looks ahead).
#ifndef EDGE_CACHE_SIM_BELADY_SIM_H_
#define EDGE_CACHE_SIM_BELADY_SIM_H_

#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cache/sim/simulated_cache.h"

namespace edge::sim {

class BeladySim final : public SimulatedCache {
 public:
  // Computes every access's next use; `trace` need not outlive this.
  BeladySim(uint64_t capacity_bytes, const std::vector<ExpertAccess>& trace);

  bool Access(int64_t index, const ExpertAccess& access) override;

 private:
  struct Entry {
    int64_t next_use = 0;
    uint64_t bytes = 0;
  };

  const uint64_t capacity_bytes_;
  // next_use_[i]: index of the next access to trace[i]'s key after i, or
  // the trace's length if there is none.
  std::vector<int64_t> next_use_;
  std::unordered_map<ExpertKey, Entry, ExpertKeyHash> entries_;
  std::set<std::pair<int64_t, ExpertKey>> by_next_use_;  // last: farthest.
};

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_BELADY_SIM_H_
