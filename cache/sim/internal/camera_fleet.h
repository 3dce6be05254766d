// CameraFleet: the scene each camera's next frame shows, for the trace
// generator (cache/sim/trace_generator.h explains the model). Draws come from
// ScenePicker with each camera's own RNG stream; dwell is applied here.
//
// Not thread-safe (cameras' current scenes and RNGs change per frame).
#ifndef EDGE_CACHE_SIM_INTERNAL_CAMERA_FLEET_H_
#define EDGE_CACHE_SIM_INTERNAL_CAMERA_FLEET_H_

#include <random>
#include <vector>

#include "cache/sim/trace_generator.h"
#include "tools/cpp/scene_picker.h"

namespace edge::internal {

class CameraFleet {
 public:
  // Uses scenes, zipf_alpha, cameras, dwell, drift_batches, batches,
  // batch_time_us and seed. REQUIRES: the options are valid.
  explicit CameraFleet(const TraceGeneratorOptions& options);

  // The scene of `camera`'s next frame, which belongs to batch `batch`.
  int NextScene(int camera, int batch);

 private:
  const double dwell_;
  const double batch_time_s_;
  const ScenePicker picker_;
  std::vector<std::mt19937_64> rngs_;  // per camera.
  std::vector<int> current_;           // per camera; -1 before its first.
};

}  // namespace edge::internal

#endif  // EDGE_CACHE_SIM_INTERNAL_CAMERA_FLEET_H_
