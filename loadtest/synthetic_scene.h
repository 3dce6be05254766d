// Synthetic camera scenes: each scene id, with the run's seed, gives a
// picture that differs from the others in what a vision model's first
// layers see (overall colour, colour gradient, texture frequency and
// orientation, a few solid shapes), so that an image router spreads the
// scenes over its experts the way real, different camera views would.
//
// A scene is described in coordinates relative to the picture, so the same
// scene rendered at 640x480 (to send as JPEG) and at the model's S x S (to
// send as a tensor) shows the same content.
//
// Stateless and thread-safe.
#ifndef EDGE_LOADTEST_SYNTHETIC_SCENE_H_
#define EDGE_LOADTEST_SYNTHETIC_SCENE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace edge::loadtest {

struct SceneShape {
  bool circle = false;             // Else an axis-aligned rectangle.
  double cx = 0, cy = 0;           // Centre, fractions of width / height.
  double rx = 0, ry = 0;           // Half-extent, fractions.
  std::array<double, 3> rgb = {};  // 0..255.
};

struct SceneStyle {
  // Background: a linear gradient from `from` to `to` along gradient_angle.
  std::array<double, 3> from = {}, to = {};
  double gradient_angle = 0;  // Radians.
  // A sinusoidal texture added to every channel (amplitude in 0..255 units,
  // frequency in cycles across the picture's width).
  double texture_amplitude = 0;
  double texture_cycles = 0;
  double texture_angle = 0;
  std::vector<SceneShape> shapes;
};

// The style of scene `scene_id` under `seed`; deterministic.
SceneStyle DrawSceneStyle(uint64_t seed, int scene_id);

// width x height x 3 bytes, RGB, row-major. REQUIRES: width, height > 0.
std::vector<uint8_t> RenderScene(const SceneStyle& style, int width,
                                 int height);

// JPEG file bytes (4:2:0, TurboJPEG). INTERNAL if the encoder fails.
// REQUIRES: rgb.size() == width * height * 3, quality in 1..100.
absl::StatusOr<std::string> EncodeJpeg(const std::vector<uint8_t>& rgb,
                                       int width, int height, int quality);

// float32 [3, side, side] little-endian bytes: the scene rendered at
// side x side and normalised as (value / 255 - 0.5) / 0.5. That is the
// common ViT normalisation; the exact manifest mean/std do not matter for a
// load test, only that values are in the model's usual range.
std::string RenderSceneTensor(const SceneStyle& style, int side);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_SYNTHETIC_SCENE_H_
