// LruSim: a fixed-capacity least-recently-used cache of expert keys, the
// policy ExpertCache had before adaptive sizing and cache_sim's baseline.
#ifndef EDGE_CACHE_SIM_LRU_SIM_H_
#define EDGE_CACHE_SIM_LRU_SIM_H_

#include <list>
#include <unordered_map>

#include "cache/sim/simulated_cache.h"

namespace edge::sim {

class LruSim final : public SimulatedCache {
 public:
  explicit LruSim(uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  bool Access(int64_t index, const ExpertAccess& access) override;

 private:
  struct Entry {
    std::list<ExpertKey>::iterator position;
    uint64_t bytes = 0;
  };

  const uint64_t capacity_bytes_;
  std::list<ExpertKey> order_;  // least recently used first.
  std::unordered_map<ExpertKey, Entry, ExpertKeyHash> entries_;
};

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_LRU_SIM_H_
