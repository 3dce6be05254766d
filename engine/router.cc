#include "engine/router.h"

#include <algorithm>
#include <numeric>

#include "engine/top_k.h"

namespace edge {

std::vector<ExpertChoice> RouteImage(const float* probs, int num_experts, int k,
                                     bool renormalize) {
  std::vector<int> top;
  TopK(probs, num_experts, k, &top);
  std::vector<ExpertChoice> choices(k);
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) {
    choices[j] = {top[j], probs[top[j]]};
    sum += probs[top[j]];
  }
  if (renormalize && sum > 0.0f) {
    for (ExpertChoice& c : choices) c.weight /= sum;
  }
  return choices;
}

TokenRouting RouteTokens(const float* probs, int num_tokens, int num_experts,
                         int k, int capacity, bool batch_priority) {
  TokenRouting routing;
  routing.choices.resize(static_cast<size_t>(num_tokens) * k);
  routing.kept.assign(routing.choices.size(), 0);
  std::vector<int> top;
  for (int t = 0; t < num_tokens; ++t) {
    const float* p = probs + static_cast<size_t>(t) * num_experts;
    TopK(p, num_experts, k, &top);
    for (int j = 0; j < k; ++j) {
      routing.choices[static_cast<size_t>(t) * k + j] = {top[j], p[top[j]]};
    }
  }

  // Priority order of tokens, shared by every choice round.
  std::vector<int> order(num_tokens);
  std::iota(order.begin(), order.end(), 0);
  if (batch_priority) {
    const auto& c = routing.choices;
    std::stable_sort(order.begin(), order.end(), [&c, k](int a, int b) {
      return c[static_cast<size_t>(a) * k].weight >
             c[static_cast<size_t>(b) * k].weight;
    });
  }

  std::vector<int> used(num_experts, 0);
  for (int j = 0; j < k; ++j) {
    for (int t : order) {
      const size_t i = static_cast<size_t>(t) * k + j;
      int& slots = used[routing.choices[i].expert];
      if (slots < capacity) {
        ++slots;
        routing.kept[i] = 1;
      }
    }
  }
  return routing;
}

}  // namespace edge
