// NextLayerPredictor: guesses which experts the next MoE layer will use,
// from the experts the current layer chose, so they can be prefetched
// while the current layer computes.
//
// It learns co-activation online: for every routing unit (an image with
// image routing, a token with token routing) it counts, for each expert i
// the unit used at MoE layer m, the experts j it used at layer m + 1:
// P(j | i) = count(i, j) / count(i). A batch's chance of needing j is
// 1 - prod over units (1 - p_unit(j)), p_unit(j) the mean of P(j | i) over
// the unit's experts i. Counts are halved when a row passes
// kMaxRowCount, so the statistics follow popularity drift.
//
// Thread-safe (one mutex; calls are a few microseconds per layer).
#ifndef EDGE_ENGINE_INTERNAL_EXPERT_PREDICTOR_H_
#define EDGE_ENGINE_INTERNAL_EXPERT_PREDICTOR_H_

#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace edge::internal {

// Experts used by each routing unit at one MoE layer.
using UnitExperts = std::vector<std::vector<int>>;

struct PredictionStats {
  uint64_t guesses = 0;             // experts predicted (and prefetched).
  uint64_t guesses_used = 0;        // of those, used by the next layer.
  uint64_t next_layer_experts = 0;  // experts the predicted layers used.
};

class NextLayerPredictor {
 public:
  NextLayerPredictor(int moe_layers, int experts);

  // Units' experts at MoE layer m and m + 1 (same units, same order).
  void Learn(int m, const UnitExperts& at_m, const UnitExperts& at_next);
  // Experts of MoE layer m + 1 the batch needs with probability >=
  // min_probability, most likely first. Empty until layer m has seen
  // kMinObservations units.
  std::vector<int> Predict(int m, const UnitExperts& at_m,
                           double min_probability) const;
  // Scores `guesses` made for layer m + 1 against what it `used`.
  void Score(const std::vector<int>& guesses, const std::vector<int>& used);
  PredictionStats stats() const;

 private:
  // 1 << 14 observations per expert: a few minutes of a busy camera
  // fleet, after which older evidence counts half.
  static constexpr uint32_t kMaxRowCount = 1u << 14;
  // Before this many units the estimates are noise.
  static constexpr uint64_t kMinObservations = 32;

  const int moe_layers_;
  const int experts_;
  mutable absl::Mutex mu_;
  // [m][i * experts + j] and [m][i].
  std::vector<std::vector<uint32_t>> pair_counts_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint32_t>> row_counts_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> observed_units_ ABSL_GUARDED_BY(mu_);
  PredictionStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_EXPERT_PREDICTOR_H_
