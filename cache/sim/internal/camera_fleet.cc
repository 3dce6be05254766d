#include "cache/sim/internal/camera_fleet.h"

#include "tools/cpp/random.h"

namespace edge::internal {
namespace {

ScenePickerOptions PickerOptions(const TraceGeneratorOptions& o) {
  // The picker drifts by time; the trace's time advances batch_time_us per
  // batch, so a drift every drift_batches batches is a drift period of
  // drift_batches * batch_time_us.
  const double batch_time_s = o.batch_time_us * 1e-6;
  ScenePickerOptions p;
  p.scenes = o.scenes;
  p.zipf_alpha = o.zipf_alpha;
  p.drift_period_s = o.drift_batches * batch_time_s;
  p.horizon_s = o.batches * batch_time_s;
  p.clients = o.cameras;
  p.seed = o.seed;
  return p;
}

}  // namespace

CameraFleet::CameraFleet(const TraceGeneratorOptions& options)
    : dwell_(options.dwell),
      batch_time_s_(options.batch_time_us * 1e-6),
      picker_(PickerOptions(options)),
      current_(options.cameras, -1) {
  for (int c = 0; c < options.cameras; ++c) {
    rngs_.push_back(MakeClientRng(options.seed, c));
  }
}

int CameraFleet::NextScene(int camera, int batch) {
  std::mt19937_64& rng = rngs_[camera];
  // The dwell draw is taken even for a first frame, so that a camera's
  // stream does not depend on when it first appears.
  const bool keep = UnitInterval(rng) < dwell_;
  if (current_[camera] < 0 || !keep) {
    // The middle of the batch's time slot: never on a period boundary.
    current_[camera] = picker_.Pick(camera, (batch + 0.5) * batch_time_s_, rng);
  }
  return current_[camera];
}

}  // namespace edge::internal
