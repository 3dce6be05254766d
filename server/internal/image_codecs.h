// Internals of ImageDecoder (server/image_decoder.h): JPEG and PNG to 8-bit
// RGB, and the bilinear resize + normalisation to the model's input. Not a
// public API; only image_decoder.cc and its tests include this.
//
// Thread-safety: free functions without shared state; each call owns its
// codec handle.
#ifndef EDGE_SERVER_INTERNAL_IMAGE_CODECS_H_
#define EDGE_SERVER_INTERNAL_IMAGE_CODECS_H_

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edge::decoder_internal {

// An image decoded to 8-bit RGB, HWC order.
struct DecodedRgb {
  int source_width = 0;  // As declared by the file header.
  int source_height = 0;
  int width = 0;  // Of `pixels`; smaller than source after DCT scaling.
  int height = 0;
  std::vector<uint8_t> pixels;  // width * height * 3 bytes.
};

// INVALID_ARGUMENT unless 0 < width, height and width * height <= max_pixels.
// Called on header dimensions, before any pixel buffer exists.
absl::Status CheckDimensions(int64_t width, int64_t height,
                             uint64_t max_pixels);

// Decodes a JPEG to RGB. With `min_scaled_side` > 0 the image is decoded at
// the smallest of 1/1, 1/2, 1/4, 1/8 that keeps both sides >= it (DCT
// scaling); 0 decodes at full size. Any libjpeg-turbo warning ("Premature
// end of JPEG file", "Corrupt JPEG data: ...") is an error: a half-decoded
// frame padded with grey would be classified without anyone noticing.
absl::StatusOr<DecodedRgb> DecodeJpeg(std::string_view bytes,
                                      uint64_t max_pixels, int min_scaled_side);

// Decodes any PNG (greyscale, palette, 16-bit, alpha, interlaced) to RGB8;
// alpha is dropped, 16-bit samples keep their high byte.
absl::StatusOr<DecodedRgb> DecodePng(std::string_view bytes,
                                     uint64_t max_pixels);

// Normalisation after resizing: out = (v / 255 - mean[c]) / std[c].
struct Normalization {
  std::array<float, 3> mean;
  std::array<float, 3> std;
};

// Resizes HWC RGB `rgb` (width x height) to `side` x `side` exactly as
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
// antialias=False) does on float32 [0, 255] pixels, normalises, and writes
// CHW planes to `out`.
// REQUIRES: width, height, side > 0; `rgb` holds width * height * 3 bytes;
//           `out` holds 3 * side * side floats.
void ResizeBilinearToChw(const uint8_t* rgb, int width, int height, int side,
                         const Normalization& norm, float* out);

}  // namespace edge::decoder_internal

#endif  // EDGE_SERVER_INTERNAL_IMAGE_CODECS_H_
