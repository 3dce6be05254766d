// Bilinear resize + normalisation following the arithmetic of PyTorch's CPU
// kernel for interpolate(mode="bilinear", align_corners=False,
// antialias=False) on float32 (aten/src/ATen/native/UpSample.h and
// cpu/UpSampleKernel.cpp, torch 1.13): the same float scale, the source index
// in double clamped at 0, float weights, and multiply-adds along W first,
// then H. Against torch 1.13 the outputs differ by about 1e-6 after
// normalisation (ulp-level: fused multiply-adds and vectorised division on
// torch's side); the parity test allows 1e-4.
//
// Because W goes first, a source row is interpolated along W once, into S
// floats per channel, and every output row then blends two of those rows.
// The resizer therefore only ever holds two W-interpolated rows and can take
// the source a row at a time (PNG decoding streams into it); the whole-image
// entry point feeds it the same way, so both paths run the same float
// operations in the same order and agree bit for bit.
#include <cstdint>
#include <vector>

#include "server/internal/image_codecs.h"

namespace edge::decoder_internal {
namespace {

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

BilinearRowResizer::BilinearRowResizer(int width, int height, int side,
                                       const Normalization& norm, float* out)
    : side_(side),
      norm_(norm),
      out_(out),
      x_taps_(ComputeTaps(width, side)),
      y_taps_(ComputeTaps(height, side)),
      held_(2 * 3 * static_cast<size_t>(side)) {}

uint64_t BilinearRowResizer::HeapBytes(int side) {
  // Two tap tables and two W-interpolated rows (3 * S floats each).
  return 2 * sizeof(AxisTap) * static_cast<uint64_t>(side) +
         2 * 3 * sizeof(float) * static_cast<uint64_t>(side);
}

void BilinearRowResizer::PushRow(const uint8_t* rgb_row) {
  const int64_t row = rows_pushed_++;
  if (next_y_ >= side_) return;
  const AxisTap& ty = y_taps_[next_y_];
  // Taps never decrease with the output row, and the next output row still
  // waits for its second tap, so index1 >= row >= index0 - 1 here: `row` is
  // needed iff it is one of the next output row's two taps.
  if (row != ty.index0 && row != ty.index1) return;
  const int slot = held_row_[0] < held_row_[1] ? 0 : 1;  // Evict the older.
  InterpolateAlongW(rgb_row, &held_[slot * 3 * side_]);
  held_row_[slot] = row;
  while (next_y_ < side_ && y_taps_[next_y_].index1 == row) {
    EmitRow(next_y_++);
  }
}

// Same expression as the `top`/`bottom` lines of the reference kernel, stored
// as float: a float's value survives the round trip through memory.
void BilinearRowResizer::InterpolateAlongW(const uint8_t* rgb_row,
                                           float* planes) const {
  for (int c = 0; c < 3; ++c) {
    float* plane = planes + static_cast<int64_t>(c) * side_;
    for (int x = 0; x < side_; ++x) {
      const AxisTap& tx = x_taps_[x];
      plane[x] = static_cast<float>(rgb_row[tx.index0 * 3 + c]) * tx.weight0 +
                 static_cast<float>(rgb_row[tx.index1 * 3 + c]) * tx.weight1;
    }
  }
}

const float* BilinearRowResizer::HeldRow(int64_t row) const {
  const int slot = held_row_[0] == row ? 0 : 1;
  return &held_[slot * 3 * side_];
}

void BilinearRowResizer::EmitRow(int y) const {
  const AxisTap& ty = y_taps_[y];
  const float* top_planes = HeldRow(ty.index0);
  const float* bottom_planes = HeldRow(ty.index1);
  const int64_t plane = static_cast<int64_t>(side_) * side_;
  for (int c = 0; c < 3; ++c) {
    const float* top = top_planes + static_cast<int64_t>(c) * side_;
    const float* bottom = bottom_planes + static_cast<int64_t>(c) * side_;
    float* dst = out_ + c * plane + static_cast<int64_t>(y) * side_;
    for (int x = 0; x < side_; ++x) {
      const float value = top[x] * ty.weight0 + bottom[x] * ty.weight1;
      // Same expression as the reference (x / 255 - mean) / std, so a
      // constant image normalises to exactly the expected constant.
      dst[x] = (value / 255.0f - norm_.mean[c]) / norm_.std[c];
    }
  }
}

void ResizeBilinearToChw(const uint8_t* rgb, int width, int height, int side,
                         const Normalization& norm, float* out) {
  BilinearRowResizer resizer(width, height, side, norm, out);
  const int64_t row_bytes = static_cast<int64_t>(width) * 3;
  for (int y = 0; y < height && !resizer.done(); ++y) {
    resizer.PushRow(rgb + y * row_bytes);
  }
}

}  // namespace edge::decoder_internal
