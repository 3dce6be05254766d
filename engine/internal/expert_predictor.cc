#include "engine/internal/expert_predictor.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace edge::internal {

NextLayerPredictor::NextLayerPredictor(int moe_layers, int experts)
    : moe_layers_(moe_layers), experts_(experts) {
  const int pairs = std::max(0, moe_layers - 1);
  pair_counts_.assign(pairs, std::vector<uint32_t>(experts * experts, 0));
  row_counts_.assign(pairs, std::vector<uint32_t>(experts, 0));
  observed_units_.assign(pairs, 0);
}

void NextLayerPredictor::Learn(int m, const UnitExperts& at_m,
                               const UnitExperts& at_next) {
  if (m < 0 || m + 1 >= moe_layers_) return;
  absl::MutexLock lock(&mu_);
  std::vector<uint32_t>& pairs = pair_counts_[m];
  std::vector<uint32_t>& rows = row_counts_[m];
  const size_t units = std::min(at_m.size(), at_next.size());
  for (size_t u = 0; u < units; ++u) {
    for (int i : at_m[u]) {
      for (int j : at_next[u]) ++pairs[i * experts_ + j];
      if (++rows[i] < kMaxRowCount) continue;
      rows[i] /= 2;
      for (int j = 0; j < experts_; ++j) pairs[i * experts_ + j] /= 2;
    }
  }
  observed_units_[m] += units;
}

std::vector<int> NextLayerPredictor::Predict(int m, const UnitExperts& at_m,
                                             double min_probability) const {
  if (m < 0 || m + 1 >= moe_layers_) return {};
  std::vector<double> log_miss(experts_, 0.0);  // log P(no unit uses j)
  {
    absl::MutexLock lock(&mu_);
    if (observed_units_[m] < kMinObservations) return {};
    const std::vector<uint32_t>& pairs = pair_counts_[m];
    const std::vector<uint32_t>& rows = row_counts_[m];
    std::vector<double> p(experts_);
    for (const std::vector<int>& unit : at_m) {
      std::fill(p.begin(), p.end(), 0.0);
      int known = 0;
      for (int i : unit) {
        if (rows[i] == 0) continue;
        ++known;
        for (int j = 0; j < experts_; ++j) {
          p[j] += static_cast<double>(pairs[i * experts_ + j]) / rows[i];
        }
      }
      if (known == 0) continue;
      // Each unit uses several experts at the next layer, so P(j | i) sums
      // to k over j; averaging over the unit's experts keeps that scale.
      for (int j = 0; j < experts_; ++j) {
        log_miss[j] += std::log1p(-std::min(p[j] / known, 1.0 - 1e-9));
      }
    }
  }
  std::vector<int> order(experts_);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return log_miss[a] < log_miss[b]; });
  std::vector<int> guesses;
  for (int j : order) {
    if (1 - std::exp(log_miss[j]) < min_probability) break;
    guesses.push_back(j);
  }
  return guesses;
}

void NextLayerPredictor::Score(const std::vector<int>& guesses,
                               const std::vector<int>& used) {
  uint64_t hits = 0;
  for (int g : guesses) {
    hits += std::find(used.begin(), used.end(), g) != used.end();
  }
  absl::MutexLock lock(&mu_);
  stats_.guesses += guesses.size();
  stats_.guesses_used += hits;
  stats_.next_layer_experts += used.size();
}

PredictionStats NextLayerPredictor::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace edge::internal
