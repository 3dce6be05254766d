#include "cache/sim/static_oracle_sim.h"

#include <algorithm>
#include <tuple>

namespace edge::sim {

StaticOracleSim::StaticOracleSim(uint64_t capacity_bytes,
                                 const std::vector<ExpertAccess>& trace)
    : capacity_bytes_(capacity_bytes) {
  struct Count {
    int64_t accesses = 0;
    uint64_t bytes = 0;
  };
  std::unordered_map<ExpertKey, Count, ExpertKeyHash> counts;
  uint64_t largest = 0;
  for (const ExpertAccess& a : trace) {
    Count& c = counts[a.key];
    ++c.accesses;
    c.bytes = std::max(c.bytes, a.bytes);
    largest = std::max(largest, a.bytes);
  }
  std::vector<std::pair<ExpertKey, Count>> ranked(counts.begin(), counts.end());
  // Most accessed first; ties by key, so the choice is deterministic.
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return std::tie(b.second.accesses, a.first.layer, a.first.expert) <
           std::tie(a.second.accesses, b.first.layer, b.first.expert);
  });
  const uint64_t room = capacity_bytes > largest ? capacity_bytes - largest : 0;
  uint64_t kept_bytes = 0;
  for (const auto& [key, count] : ranked) {
    if (kept_bytes + count.bytes > room) continue;
    kept_bytes += count.bytes;
    kept_.insert(key);
  }
}

bool StaticOracleSim::Access(int64_t /*index*/, const ExpertAccess& access) {
  const bool kept = kept_.count(access.key) > 0;
  const bool hit = kept ? resident_.count(access.key) > 0
                        : slot_.has_value() && slot_->key == access.key;
  CountAccess(hit, access.bytes);
  if (hit || access.bytes > capacity_bytes_) return hit;
  if (kept) {
    resident_.insert(access.key);
  } else {
    if (slot_.has_value()) CountEvict(slot_->bytes);
    slot_ = access;
  }
  CountInsert(access.bytes);
  return false;
}

}  // namespace edge::sim
