#include "loadtest/synthetic_scene.h"

#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "tools/cpp/random.h"

namespace edge::loadtest {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::array<double, 3> RandomColour(std::mt19937_64& rng) {
  return {Uniform(rng, 0, 255), Uniform(rng, 0, 255), Uniform(rng, 0, 255)};
}

SceneShape RandomShape(std::mt19937_64& rng) {
  SceneShape shape;
  shape.circle = Below(rng, 2) == 0;
  shape.cx = Uniform(rng, 0.1, 0.9);
  shape.cy = Uniform(rng, 0.1, 0.9);
  shape.rx = Uniform(rng, 0.05, 0.3);
  shape.ry = shape.circle ? shape.rx : Uniform(rng, 0.05, 0.3);
  shape.rgb = RandomColour(rng);
  return shape;
}

bool Covers(const SceneShape& s, double u, double v, double aspect) {
  const double dx = (u - s.cx) / s.rx;
  // Circles are round on the picture: their vertical radius is in units of
  // the width.
  const double dy = s.circle ? (v - s.cy) * aspect / s.rx : (v - s.cy) / s.ry;
  return s.circle ? dx * dx + dy * dy <= 1
                  : std::fabs(dx) <= 1 && std::fabs(dy) <= 1;
}

// The colour of the scene at (u, v), fractions of width and height.
std::array<double, 3> ColourAt(const SceneStyle& style, double u, double v,
                               double aspect) {
  for (auto it = style.shapes.rbegin(); it != style.shapes.rend(); ++it) {
    if (Covers(*it, u, v, aspect)) return it->rgb;  // Last drawn is on top.
  }
  const double along = 0.5 + 0.5 * (std::cos(style.gradient_angle) * (u - 0.5) +
                                    std::sin(style.gradient_angle) * (v - 0.5));
  const double wave = style.texture_amplitude *
                      std::sin(2 * kPi * style.texture_cycles *
                               (std::cos(style.texture_angle) * u +
                                std::sin(style.texture_angle) * v / aspect));
  std::array<double, 3> rgb;
  for (int c = 0; c < 3; ++c) {
    rgb[c] = style.from[c] + (style.to[c] - style.from[c]) * along + wave;
  }
  return rgb;
}

uint8_t ToByte(double value) {
  return static_cast<uint8_t>(std::clamp(std::lround(value), 0l, 255l));
}

}  // namespace

SceneStyle DrawSceneStyle(uint64_t seed, int scene_id) {
  std::mt19937_64 rng(SplitMix64(SplitMix64(seed) + scene_id));
  SceneStyle style;
  style.from = RandomColour(rng);
  style.to = RandomColour(rng);
  style.gradient_angle = Uniform(rng, 0, 2 * kPi);
  style.texture_amplitude = Uniform(rng, 0, 60);
  // From broad bands to a few pixels wide at 640 px: patch embeddings see
  // texture at the patch scale (16 px), so both sides of it are covered.
  style.texture_cycles = std::exp(Uniform(rng, std::log(1.0), std::log(80.0)));
  style.texture_angle = Uniform(rng, 0, kPi);
  const int shapes = 1 + static_cast<int>(Below(rng, 5));
  for (int i = 0; i < shapes; ++i) style.shapes.push_back(RandomShape(rng));
  return style;
}

std::vector<uint8_t> RenderScene(const SceneStyle& style, int width,
                                 int height) {
  std::vector<uint8_t> rgb(static_cast<size_t>(width) * height * 3);
  const double aspect = static_cast<double>(height) / width;
  uint8_t* out = rgb.data();
  for (int y = 0; y < height; ++y) {
    const double v = (y + 0.5) / height;
    for (int x = 0; x < width; ++x) {
      const std::array<double, 3> c =
          ColourAt(style, (x + 0.5) / width, v, aspect);
      *out++ = ToByte(c[0]);
      *out++ = ToByte(c[1]);
      *out++ = ToByte(c[2]);
    }
  }
  return rgb;
}

absl::StatusOr<std::string> EncodeJpeg(const std::vector<uint8_t>& rgb,
                                       int width, int height, int quality) {
  tjhandle handle = tjInitCompress();
  if (handle == nullptr) {
    return absl::InternalError(
        absl::StrCat("tjInitCompress: ", tjGetErrorStr2(nullptr)));
  }
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  const int failed =
      tjCompress2(handle, rgb.data(), width, /*pitch=*/0, height, TJPF_RGB,
                  &jpeg, &size, TJSAMP_420, quality, TJFLAG_FASTDCT);
  std::string result;
  if (failed == 0) result.assign(reinterpret_cast<const char*>(jpeg), size);
  const std::string error = failed ? tjGetErrorStr2(handle) : "";
  tjFree(jpeg);
  tjDestroy(handle);
  if (failed) return absl::InternalError(absl::StrCat("tjCompress2: ", error));
  return result;
}

std::string RenderSceneTensor(const SceneStyle& style, int side) {
  const std::vector<uint8_t> rgb = RenderScene(style, side, side);
  const size_t plane = static_cast<size_t>(side) * side;
  std::vector<float> chw(3 * plane);
  for (size_t i = 0; i < plane; ++i) {
    for (size_t c = 0; c < 3; ++c) {
      chw[c * plane + i] = (rgb[i * 3 + c] / 255.0f - 0.5f) / 0.5f;
    }
  }
  // The wire format is little-endian float32, as is every host we build
  // for (x86-64, aarch64), so the bytes are copied as they are.
  std::string bytes(chw.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), chw.data(), bytes.size());
  return bytes;
}

}  // namespace edge::loadtest
