// Internals of ImageDecoder (server/image_decoder.h): JPEG and PNG to 8-bit
// RGB, the bilinear resize + normalisation to the model's input, and the
// header probes that predict what a decode will cost. Not a public API; only
// image_decoder.cc and its tests include this.
//
// Thread-safety: free functions without shared state; each call owns its
// codec handle. A BilinearRowResizer is used by one thread at a time.
#ifndef EDGE_SERVER_INTERNAL_IMAGE_CODECS_H_
#define EDGE_SERVER_INTERNAL_IMAGE_CODECS_H_

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edge::decoder_internal {

// The sizes a decode deals with.
struct DecodedSize {
  int source_width = 0;  // As declared by the file header.
  int source_height = 0;
  int width = 0;  // Of the decoded pixels; smaller after DCT scaling.
  int height = 0;
};

// An image decoded to 8-bit RGB, HWC order.
struct DecodedRgb {
  int source_width = 0;  // As declared by the file header.
  int source_height = 0;
  int width = 0;  // Of `pixels`; smaller than source after DCT scaling.
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3 bytes.
};

// What decoding an image will cost, predicted from its header alone.
struct CodecCost {
  DecodedSize size;
  // Upper estimate of the heap bytes the codec's decode allocates at its
  // peak: pixel buffers, the codec library's own state and the metadata it
  // keeps. Excludes the resizer (BilinearRowResizer::HeapBytes).
  uint64_t heap_bytes = 0;
  // Decode CPU time in units of "one pixel of a full-size baseline 4:2:0
  // JPEG decode" (the measured ns/pixel figures are in jpeg_cost.cc and
  // png_codec.cc).
  uint64_t work_pixels = 0;
};

// INVALID_ARGUMENT unless 0 < width, height and width * height <= max_pixels.
// Called on header dimensions, before any pixel buffer exists.
absl::Status CheckDimensions(int64_t width, int64_t height,
                             uint64_t max_pixels);

// Decodes a JPEG to RGB. With `min_scaled_side` > 0 the image is decoded at
// the smallest of 1/1, 1/2, 1/4, 1/8 that keeps both sides >= it (DCT
// scaling); 0 decodes at full size. CMYK and YCCK JPEGs are converted to RGB
// assuming Adobe's inverted storage (see jpeg_codec.cc). Any libjpeg-turbo
// warning ("Premature end of JPEG file", "Corrupt JPEG data: ...") is an
// error: a half-decoded frame padded with grey would be classified without
// anyone noticing.
absl::StatusOr<DecodedRgb> DecodeJpeg(std::string_view bytes,
                                      uint64_t max_pixels, int min_scaled_side);

// What DecodeJpeg(bytes, max_pixels, min_scaled_side) will cost, from the
// headers (the markers before the first scan). Fails like DecodeJpeg on
// headers it would refuse; OK does not promise the scan data is intact.
absl::StatusOr<CodecCost> ProbeJpeg(std::string_view bytes, uint64_t max_pixels,
                                    int min_scaled_side);

// Normalisation after resizing: out = (v / 255 - mean[c]) / std[c].
struct Normalization {
  std::array<float, 3> mean;
  std::array<float, 3> std;
};

// Decodes any PNG (greyscale, palette, 16-bit, alpha, interlaced) to RGB8 and
// resizes it into `out` as ResizeBilinearToChw does; alpha is dropped, 16-bit
// samples keep their high byte. Every chunk up to IEND is read and its CRC
// checked. Non-interlaced images stream row by row into the resizer, so the
// decoded image never exists whole; interlaced (Adam7) ones are decoded
// whole first, since each pass revisits every row.
// REQUIRES: side > 0; `out` holds 3 * side * side floats.
// On error `out` may have been partly written.
absl::StatusOr<DecodedSize> DecodePngToChw(std::string_view bytes,
                                           uint64_t max_pixels, int side,
                                           const Normalization& norm,
                                           float* out);

// What DecodePngToChw(bytes, max_pixels, ...) will cost, from the IHDR chunk
// and the chunk headers. Fails like DecodePngToChw on an IHDR it would
// refuse; OK does not promise the data or the CRCs are intact.
absl::StatusOr<CodecCost> ProbePng(std::string_view bytes, uint64_t max_pixels);

// Resizes HWC RGB `rgb` (width x height) to `side` x `side` exactly as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
// antialias=False) does on float32 [0, 255] pixels, normalises, and writes
// CHW planes to `out`.
// REQUIRES: width, height, side > 0; `rgb` holds width * height * 3 bytes;
//           `out` holds 3 * side * side floats.
void ResizeBilinearToChw(const uint8_t* rgb, int width, int height, int side,
                         const Normalization& norm, float* out);

// One output coordinate's two source taps along an axis.
struct AxisTap {
  int64_t index0 = 0;
  int64_t index1 = 0;
  float weight0 = 1.0f;
  float weight1 = 0.0f;
};

// ResizeBilinearToChw fed one source row at a time, top to bottom, holding
// only two W-interpolated rows (2 * 3 * side floats) whatever the source
// size. Output row y is written as soon as both of its source rows have
// arrived; after the last source row, all of `out` is written. The result is
// bit-identical to ResizeBilinearToChw (which is implemented with it).
//
// Example:
//   BilinearRowResizer resizer(width, height, side, norm, out);
//   for (int y = 0; y < height; ++y) resizer.PushRow(DecodeRow(y));
class BilinearRowResizer {
 public:
  // REQUIRES: width, height, side > 0; `out` holds 3 * side * side floats
  //           and outlives the resizer.
  BilinearRowResizer(int width, int height, int side, const Normalization& norm,
                     float* out);

  BilinearRowResizer(const BilinearRowResizer&) = delete;
  BilinearRowResizer& operator=(const BilinearRowResizer&) = delete;

  // Takes source row rows_pushed(): width * 3 bytes of RGB. Rows no output
  // row samples are skipped cheaply.
  // REQUIRES: fewer than `height` rows pushed so far.
  void PushRow(const uint8_t* rgb_row);

  // True once every output row is written; later rows are not needed.
  bool done() const { return next_y_ >= side_; }

  // The heap a resizer to `side` allocates.
  static uint64_t HeapBytes(int side);

 private:
  void InterpolateAlongW(const uint8_t* rgb_row, float* planes) const;
  const float* HeldRow(int64_t row) const;
  void EmitRow(int y) const;

  // Constant after construction.
  const int side_;
  const Normalization norm_;
  float* const out_;
  const std::vector<AxisTap> x_taps_;
  const std::vector<AxisTap> y_taps_;

  // Two W-interpolated source rows, each as 3 planes of side_ floats, and
  // the source row each holds (-1: none yet).
  std::vector<float> held_;
  int64_t held_row_[2] = {-1, -1};
  int64_t rows_pushed_ = 0;
  int next_y_ = 0;  // First output row not yet written.
};

}  // namespace edge::decoder_internal

#endif  // EDGE_SERVER_INTERNAL_IMAGE_CODECS_H_
