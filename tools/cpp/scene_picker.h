// ScenePicker: which scene a camera sees in its next frame.
//
// Popularity model. Scenes are ranked; a frame draws a rank r with Zipf
// probability P(r) ~ 1 / (r + 1)^alpha (r = 0 is the most popular) and
// shows scene ranking[(r + home) mod K], where `home` is the camera's own
// offset into the ranking: cameras are spread evenly over it, so each one
// mostly sees "its" scene and its neighbours', as a fixed camera sees mostly
// its own view, while the fleet as a whole covers many scenes. With
// drift_period_s > 0 the ranking is reshuffled at every period boundary, so
// the scenes (and thus experts) that are hot change during the run.
//
// Reproducible: rankings depend only on the seed and the period index, and
// each camera draws from its own RNG stream (MakeClientRng: seed + camera
// id), so a camera's sequence of scenes does not depend on thread timing.
//
// Shared by edge-loadtest (which scene's frame a camera sends) and the
// expert trace generator (cache/sim/trace_generator.h), so synthetic traces and
// load runs follow the same popularity model.
//
// Immutable after construction; Pick() is thread-safe as long as each
// thread passes its own RNG.
#ifndef EDGE_TOOLS_CPP_SCENE_PICKER_H_
#define EDGE_TOOLS_CPP_SCENE_PICKER_H_

#include <cstdint>
#include <random>
#include <vector>

namespace edge {

struct ScenePickerOptions {
  int scenes = 64;            // K, > 0.
  double zipf_alpha = 1.0;    // >= 0; 0 is uniform.
  double drift_period_s = 0;  // Seconds per ranking; 0 = one ranking.
  // Rankings are precomputed for [0, horizon_s]; later times use the last.
  double horizon_s = 10;
  int clients = 1;  // Cameras (or unary clients) sharing the ranking.
  uint64_t seed = 1;
};

class ScenePicker {
 public:
  explicit ScenePicker(const ScenePickerOptions& options);

  // The scene (0..K-1) for `client` at `elapsed_s` seconds into the run.
  // REQUIRES: 0 <= client < options.clients.
  int Pick(int client, double elapsed_s, std::mt19937_64& rng) const;

  // The ranking period `elapsed_s` falls in (always 0 without drift).
  int Period(double elapsed_s) const;

 private:
  int HomeOffset(int client) const;

  const ScenePickerOptions options_;
  std::vector<double> rank_cdf_;  // rank_cdf_[r] = P(rank <= r); last is 1.
  std::vector<std::vector<int>> rankings_;  // [period][rank] -> scene.
};

// Cumulative Zipf probabilities over ranks 0..n-1: cdf[r] = P(rank <= r)
// with P(r) ~ 1 / (r + 1)^alpha; the last entry is exactly 1. n > 0.
std::vector<double> ZipfCdf(int n, double alpha);
// The rank an `rng` draw falls on in `cdf` (from ZipfCdf or any CDF).
int DrawRank(const std::vector<double>& cdf, std::mt19937_64& rng);

// The RNG of client `client`: its own stream, seeded from seed + client.
std::mt19937_64 MakeClientRng(uint64_t seed, int client);

}  // namespace edge

#endif  // EDGE_TOOLS_CPP_SCENE_PICKER_H_
