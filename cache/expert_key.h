// ExpertKey: names one expert of one MoE block. A value type.
#ifndef EDGE_CACHE_EXPERT_KEY_H_
#define EDGE_CACHE_EXPERT_KEY_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"

namespace edge {

struct ExpertKey {
  int layer = 0;   // block index (a `moe.layers` entry, docs/model-spec.md).
  int expert = 0;  // expert index in [0, E).

  friend bool operator==(const ExpertKey& a, const ExpertKey& b) {
    return a.layer == b.layer && a.expert == b.expert;
  }
  friend bool operator!=(const ExpertKey& a, const ExpertKey& b) {
    return !(a == b);
  }
  friend bool operator<(const ExpertKey& a, const ExpertKey& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.expert < b.expert;
  }
  std::string ToString() const {
    return absl::StrCat("layer ", layer, " expert ", expert);
  }
};

struct ExpertKeyHash {
  size_t operator()(const ExpertKey& k) const {
    return std::hash<long long>()((static_cast<long long>(k.layer) << 32) ^
                                  static_cast<unsigned>(k.expert));
  }
};

}  // namespace edge

#endif  // EDGE_CACHE_EXPERT_KEY_H_
