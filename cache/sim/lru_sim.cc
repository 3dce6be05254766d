#include "cache/sim/lru_sim.h"

namespace edge::sim {

bool LruSim::Access(int64_t, const ExpertAccess& access) {
  auto it = entries_.find(access.key);
  const bool hit = it != entries_.end();
  CountAccess(hit, access.bytes);
  if (hit) {
    order_.splice(order_.end(), order_, it->second.position);
    return true;
  }
  if (access.bytes > capacity_bytes_) return false;  // can never fit.
  while (counters().resident_bytes + access.bytes > capacity_bytes_) {
    auto victim = entries_.find(order_.front());
    CountEvict(victim->second.bytes);
    entries_.erase(victim);
    order_.pop_front();
  }
  order_.push_back(access.key);
  entries_[access.key] = Entry{std::prev(order_.end()), access.bytes};
  CountInsert(access.bytes);
  return false;
}

}  // namespace edge::sim
