#include "cache/sim/internal/synthetic_router.h"

#include <algorithm>
#include <numeric>

#include "tools/cpp/random.h"
#include "tools/cpp/scene_picker.h"

namespace edge::internal {
namespace {

// Tags the table's stream so it never coincides with a camera's or the
// ranking's stream (all derive from the same seed).
constexpr uint64_t kRouterStream = 0x524f555445523a29ull;  // "ROUTER:)"

// Draws per expert wanted before DrawDistinct stops drawing and takes the
// most popular experts not chosen yet: a steep expert_alpha with top_k
// near E would otherwise wait long for the rarest expert.
constexpr int kDrawsPerChoice = 64;

}  // namespace

SyntheticRouter::SyntheticRouter(const TraceGeneratorOptions& options)
    : options_(options),
      expert_cdf_(ZipfCdf(options.num_experts, options.expert_alpha)) {
  std::mt19937_64 rng(SplitMix64(options.seed ^ kRouterStream));
  const int layers = static_cast<int>(options.moe_layers.size());
  for (int l = 0; l < layers; ++l) {
    std::vector<int> order(options.num_experts);
    std::iota(order.begin(), order.end(), 0);
    Shuffle(order, rng);
    expert_order_.push_back(std::move(order));
  }
  scene_experts_.resize(options.scenes);
  for (auto& per_layer : scene_experts_) {
    for (int l = 0; l < layers; ++l) {
      per_layer.push_back(DrawDistinct(l, [&] { return DrawExpert(l, rng); }));
    }
  }
}

int SyntheticRouter::DrawExpert(int layer_index, std::mt19937_64& rng) const {
  return expert_order_[layer_index][DrawRank(expert_cdf_, rng)];
}

template <typename Draw>
std::vector<int> SyntheticRouter::DrawDistinct(int layer_index,
                                               Draw draw) const {
  std::vector<int> chosen;
  auto add = [&chosen](int e) {
    if (std::find(chosen.begin(), chosen.end(), e) == chosen.end()) {
      chosen.push_back(e);
    }
  };
  const size_t k = options_.top_k;
  for (size_t i = 0; i < kDrawsPerChoice * k && chosen.size() < k; ++i) {
    add(draw());
  }
  for (size_t i = 0; chosen.size() < k; ++i) {
    add(expert_order_[layer_index][i]);
  }
  return chosen;
}

void SyntheticRouter::Route(int scene, int layer_index, std::mt19937_64& rng,
                            std::set<int>* experts) const {
  const std::vector<int>& own = scene_experts_[scene][layer_index];
  if (options_.routing == Routing::kImage) {
    for (int e : own) {
      if (UnitInterval(rng) < options_.routing_noise) {
        e = DrawExpert(layer_index, rng);  // may repeat one: fewer experts.
      }
      experts->insert(e);
    }
    return;
  }
  auto draw = [&] {
    return UnitInterval(rng) < options_.token_scene_share
               ? own[Below(rng, own.size())]
               : DrawExpert(layer_index, rng);
  };
  for (int t = 0; t < options_.tokens; ++t) {
    for (int e : DrawDistinct(layer_index, draw)) experts->insert(e);
  }
}

}  // namespace edge::internal
