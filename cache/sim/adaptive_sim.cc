#include "cache/sim/adaptive_sim.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace edge::sim {

AdaptiveSim::AdaptiveSim(const AdaptivePolicyOptions& options,
                         const std::vector<ExpertAccess>& trace)
    : policy_(options) {
  for (const ExpertAccess& a : trace) {
    std::vector<ExpertKey>& keys = unbegun_passes_[a.pass];
    if (std::find(keys.begin(), keys.end(), a.key) == keys.end()) {
      keys.push_back(a.key);
    }
  }
}

bool AdaptiveSim::Access(int64_t, const ExpertAccess& access) {
  if (auto pass = unbegun_passes_.find(access.pass);
      pass != unbegun_passes_.end()) {
    policy_.BeginPass(access.key.layer, pass->second);
    unbegun_passes_.erase(pass);
  }
  const bool hit = resident_.count(access.key) > 0;
  CountAccess(hit, access.bytes);
  policy_.RecordAccess(access.key, access.bytes, hit);
  if (!hit && access.bytes <= policy_.capacity_bytes()) {
    EvictDownTo(policy_.capacity_bytes() - access.bytes);
    resident_[access.key] = access.bytes;
    CountInsert(access.bytes);
  }
  if (std::optional<ResizeEvent> resize = policy_.MaybeResize()) {
    resizes_.push_back(*resize);
    EvictDownTo(policy_.capacity_bytes());
  }
  return hit;
}

void AdaptiveSim::EvictDownTo(uint64_t bytes) {
  std::vector<ExpertKey> keys;
  while (counters().resident_bytes > bytes) {
    keys.clear();
    for (const auto& [key, size] : resident_) keys.push_back(key);
    const ExpertKey chosen = policy_.ChooseVictim(keys);
    auto victim = resident_.find(chosen);
    if (victim == resident_.end()) {  // the policy broke its contract.
      std::fprintf(stderr, "AdaptivePolicy chose %s, which is not resident\n",
                   chosen.ToString().c_str());
      std::abort();
    }
    CountEvict(victim->second);
    resident_.erase(victim);
  }
}

}  // namespace edge::sim
