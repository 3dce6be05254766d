// SyntheticRouter: which experts an image of a given scene is routed to in
// each MoE layer, for the trace generator (cache/sim/trace_generator.h explains
// the model, image and token mode).
//
// The scene -> experts table and the per-layer expert popularity are drawn
// at construction from the seed; Route() draws the per-image variation from
// the RNG it is given. Immutable after construction; Route() is
// thread-safe as long as each thread passes its own RNG.
#ifndef EDGE_CACHE_SIM_INTERNAL_SYNTHETIC_ROUTER_H_
#define EDGE_CACHE_SIM_INTERNAL_SYNTHETIC_ROUTER_H_

#include <random>
#include <set>
#include <vector>

#include "cache/sim/trace_generator.h"

namespace edge::internal {

class SyntheticRouter {
 public:
  // REQUIRES: the options are valid.
  explicit SyntheticRouter(const TraceGeneratorOptions& options);

  // Adds the experts of MoE layer number `layer_index` (an index into
  // moe_layers) that one image of `scene` is routed to into `experts`.
  void Route(int scene, int layer_index, std::mt19937_64& rng,
             std::set<int>* experts) const;

  // The scene's top_k experts in that layer before per-image variation.
  const std::vector<int>& SceneExperts(int scene, int layer_index) const {
    return scene_experts_[scene][layer_index];
  }

 private:
  // One expert of the layer drawn from its skewed popularity.
  int DrawExpert(int layer_index, std::mt19937_64& rng) const;
  // top_k distinct experts of the layer, each from `draw`.
  template <typename Draw>
  std::vector<int> DrawDistinct(int layer_index, Draw draw) const;

  const TraceGeneratorOptions options_;
  std::vector<double> expert_cdf_;  // Zipf over popularity ranks.
  // [layer index][rank] -> expert: each layer favours different experts.
  std::vector<std::vector<int>> expert_order_;
  // [scene][layer index] -> its top_k experts.
  std::vector<std::vector<std::vector<int>>> scene_experts_;
};

}  // namespace edge::internal

#endif  // EDGE_CACHE_SIM_INTERNAL_SYNTHETIC_ROUTER_H_
