#include "cache/sim/belady_sim.h"

namespace edge::sim {

BeladySim::BeladySim(uint64_t capacity_bytes,
                     const std::vector<ExpertAccess>& trace)
    : capacity_bytes_(capacity_bytes), next_use_(trace.size()) {
  const int64_t never = static_cast<int64_t>(trace.size());
  std::unordered_map<ExpertKey, int64_t, ExpertKeyHash> later;
  for (int64_t i = never - 1; i >= 0; --i) {
    auto [it, inserted] = later.try_emplace(trace[i].key, never);
    next_use_[i] = it->second;
    it->second = i;
  }
}

bool BeladySim::Access(int64_t index, const ExpertAccess& access) {
  const int64_t next = next_use_[index];
  auto it = entries_.find(access.key);
  const bool hit = it != entries_.end();
  CountAccess(hit, access.bytes);
  if (hit) {
    by_next_use_.erase({it->second.next_use, access.key});
    it->second.next_use = next;
    by_next_use_.insert({next, access.key});
    return true;
  }
  if (access.bytes > capacity_bytes_) return false;
  while (counters().resident_bytes + access.bytes > capacity_bytes_) {
    auto farthest = std::prev(by_next_use_.end());
    auto victim = entries_.find(farthest->second);
    CountEvict(victim->second.bytes);
    entries_.erase(victim);
    by_next_use_.erase(farthest);
  }
  entries_[access.key] = Entry{next, access.bytes};
  by_next_use_.insert({next, access.key});
  CountInsert(access.bytes);
  return false;
}

}  // namespace edge::sim
