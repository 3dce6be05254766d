// TopK: the indices of the k largest of n scores, largest first, equal
// scores in ascending index order. docs/model-spec.md requires that order
// for the router's expert choice (torch.topk does not promise one); the
// gateway's answers list their top classes by the same rule, so a tie
// between two classes always lists the lower class index first.
//
// Thread-safe (a pure function).
#ifndef EDGE_ENGINE_TOP_K_H_
#define EDGE_ENGINE_TOP_K_H_

#include <algorithm>
#include <numeric>
#include <vector>

namespace edge {

// Sets *order to the indices of the `k` largest of values[0 .. n-1], in
// that order. REQUIRES: 0 <= k <= n.
inline void TopK(const float* values, int n, int k, std::vector<int>* order) {
  order->resize(n);
  std::iota(order->begin(), order->end(), 0);
  std::partial_sort(
      order->begin(), order->begin() + k, order->end(), [values](int a, int b) {
        return values[a] > values[b] || (values[a] == values[b] && a < b);
      });
  order->resize(k);
}

}  // namespace edge

#endif  // EDGE_ENGINE_TOP_K_H_
