// Bilinear resize + normalisation following the arithmetic of PyTorch's CPU
// kernel for interpolate(mode="bilinear", align_corners=False,
// antialias=False) on float32 (aten/src/ATen/native/UpSample.h and
// cpu/UpSampleKernel.cpp, torch 1.13): the same float scale, the source index
// in double clamped at 0, float weights, and multiply-adds along W first,
// then H. Against torch 1.13 the outputs differ by about 1e-6 after
// normalisation (ulp-level: fused multiply-adds and vectorised division on
// torch's side); the parity test allows 1e-4.
#include <cstdint>
#include <vector>

#include "server/internal/image_codecs.h"

namespace edge::decoder_internal {
namespace {

// One output coordinate's two source taps along an axis.
struct AxisTap {
  int64_t index0 = 0;
  int64_t index1 = 0;
  float weight0 = 1.0f;
  float weight1 = 0.0f;
};

// Mirrors compute_source_index_and_lambda() in UpSample.h. The scale is a
// float, but the source index and the weight are computed in double (torch's
// CPU accumulate type for float) and only the weight is rounded to float.
// Rounding the index to float first moves weights by ~3e-5 on a 640-px axis
// and outputs by 1.5e-4, over the parity test's limit.
std::vector<AxisTap> ComputeTaps(int input_size, int output_size) {
  std::vector<AxisTap> taps(output_size);
  if (input_size == output_size) {
    for (int i = 0; i < output_size; ++i) taps[i].index0 = taps[i].index1 = i;
    return taps;
  }
  const float scale =
      static_cast<float>(input_size) / static_cast<float>(output_size);
  for (int i = 0; i < output_size; ++i) {
    double source = static_cast<double>(scale) * (i + 0.5) - 0.5;
    if (source < 0.0) source = 0.0;  // Half-pixel centres clamp at 0.
    AxisTap& tap = taps[i];
    tap.index0 = static_cast<int64_t>(source);
    tap.index1 = tap.index0 + (tap.index0 < input_size - 1 ? 1 : 0);
    tap.weight1 = static_cast<float>(source - static_cast<double>(tap.index0));
    tap.weight0 = 1.0f - tap.weight1;
  }
  return taps;
}

}  // namespace

void ResizeBilinearToChw(const uint8_t* rgb, int width, int height, int side,
                         const Normalization& norm, float* out) {
  const std::vector<AxisTap> x_taps = ComputeTaps(width, side);
  const std::vector<AxisTap> y_taps = ComputeTaps(height, side);
  const int64_t row_bytes = static_cast<int64_t>(width) * 3;
  const int64_t plane = static_cast<int64_t>(side) * side;
  for (int y = 0; y < side; ++y) {
    const AxisTap& ty = y_taps[y];
    const uint8_t* row0 = rgb + ty.index0 * row_bytes;
    const uint8_t* row1 = rgb + ty.index1 * row_bytes;
    for (int x = 0; x < side; ++x) {
      const AxisTap& tx = x_taps[x];
      const int64_t x0 = tx.index0 * 3;
      const int64_t x1 = tx.index1 * 3;
      for (int c = 0; c < 3; ++c) {
        const float top = static_cast<float>(row0[x0 + c]) * tx.weight0 +
                          static_cast<float>(row0[x1 + c]) * tx.weight1;
        const float bottom = static_cast<float>(row1[x0 + c]) * tx.weight0 +
                             static_cast<float>(row1[x1 + c]) * tx.weight1;
        const float value = top * ty.weight0 + bottom * ty.weight1;
        // Same expression as the reference (x / 255 - mean) / std, so a
        // constant image normalises to exactly the expected constant.
        out[c * plane + static_cast<int64_t>(y) * side + x] =
            (value / 255.0f - norm.mean[c]) / norm.std[c];
      }
    }
  }
}

}  // namespace edge::decoder_internal
