// AdaptiveSim: a simulated resident set driven by edge::AdaptivePolicy
// (cache/adaptive_policy.h), the way ExpertCache drives it, minus loading
// and pinning. Per access:
//
//   at the first access of a pass id: BeginPass(layer, the pass's keys),
//     as the gateway announces a batch's experts when the router decides;
//   RecordAccess(key, bytes, hit);
//   on a miss: evict ChooseVictim(resident keys) until the expert fits in
//     capacity_bytes(), then insert it (an expert larger than the
//     capacity is loaded but not kept);
//   MaybeResize(), and evict down to the new capacity; resizes are kept.
//
// Needs the whole trace up front, only to know each pass's keys.
#ifndef EDGE_CACHE_SIM_ADAPTIVE_SIM_H_
#define EDGE_CACHE_SIM_ADAPTIVE_SIM_H_

#include <map>
#include <unordered_map>
#include <vector>

#include "cache/adaptive_policy.h"
#include "cache/sim/simulated_cache.h"

namespace edge::sim {

class AdaptiveSim final : public SimulatedCache {
 public:
  // REQUIRES: `options` satisfy AdaptivePolicy's REQUIRES.
  AdaptiveSim(const AdaptivePolicyOptions& options,
              const std::vector<ExpertAccess>& trace);

  bool Access(int64_t index, const ExpertAccess& access) override;

  const std::vector<ResizeEvent>& resizes() const { return resizes_; }
  const AdaptivePolicy& policy() const { return policy_; }

 private:
  // Evicts the policy's victims until at most `bytes` are resident.
  void EvictDownTo(uint64_t bytes);

  AdaptivePolicy policy_;
  // Keys of the passes not begun yet, in first-access order.
  std::unordered_map<int64_t, std::vector<ExpertKey>> unbegun_passes_;
  std::map<ExpertKey, uint64_t> resident_;  // ordered: reproducible ties.
  std::vector<ResizeEvent> resizes_;
};

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_ADAPTIVE_SIM_H_
