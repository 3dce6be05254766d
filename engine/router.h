// Router: docs/model-spec.md's expert selection ("Routing"), as pure
// functions of the router's gate probabilities. No oneDNN, no state: the
// engine computes the probabilities and calls these per image, so every
// decision is unit-tested on its own and no request depends on its batch
// neighbours.
//
// Thread-safe (pure functions).
#ifndef EDGE_ENGINE_ROUTER_H_
#define EDGE_ENGINE_ROUTER_H_

#include <cstdint>
#include <vector>

namespace edge {

struct ExpertChoice {
  int expert = -1;
  float weight = 0.0f;  // the gate weight the expert's output is scaled by.
};

// Whole-image routing (Mobile V-MoE): the k largest of `probs` (E values;
// ties: lower expert index first), in descending order; with `renormalize`
// the k weights are divided by their sum.
// REQUIRES: 1 <= k <= num_experts.
std::vector<ExpertChoice> RouteImage(const float* probs, int num_experts, int k,
                                     bool renormalize);

// Per-token routing with capacity for one image (V-MoE).
struct TokenRouting {
  // num_tokens * k entries, token-major, each token's choices in descending
  // gate order.
  std::vector<ExpertChoice> choices;
  // Parallel to `choices`: 1 if the assignment kept its slot.
  std::vector<uint8_t> kept;
};

// `probs` is [num_tokens, num_experts] row-major. Slots are handed out choice
// by choice (every token's choice 0, then every token's choice 1, ...);
// within one choice tokens go by descending choice-0 weight (ties: lower
// token index) with `batch_priority`, else by token index. An assignment is
// kept while its expert has fewer than `capacity` kept assignments.
// REQUIRES: 1 <= k <= num_experts, capacity >= 0.
TokenRouting RouteTokens(const float* probs, int num_tokens, int num_experts,
                         int k, int capacity, bool batch_priority);

}  // namespace edge

#endif  // EDGE_ENGINE_ROUTER_H_
