// ImageDecoder turns what a camera or client sends into the engine's input: a
// float32 [3, S, S] tensor in CHW order, resized and normalised exactly as the
// model was trained (docs/model-spec.md, "Preprocessing"):
//
//   1. decode JPEG (libjpeg-turbo) or PNG (libspng) to 8-bit RGB; greyscale is
//      replicated to three channels, alpha is dropped, 16-bit PNG samples are
//      reduced to 8 bits and palette PNGs are expanded;
//   2. resize to S x S with bilinear interpolation identical to PyTorch's
//      interpolate(x, size=(S, S), mode="bilinear", align_corners=False,
//      antialias=False) on the float image (half-pixel centres);
//   3. normalise each channel: (rgb / 255 - mean[c]) / std[c].
//
// Inputs come from the network and are hostile until proven otherwise: sizes
// are checked against the limits in ImageDecoderOptions before anything is
// allocated, libspng's chunk limits bound the metadata it may buffer, and
// every failure is INVALID_ARGUMENT with a message naming the problem, so the
// server can return it to the client verbatim. No input crashes the decoder.
//
// EXIF orientation and embedded colour profiles are ignored: pixels are used
// as stored, which is what PIL- and torchvision-based training loaders do by
// default. CMYK/YCCK JPEGs are converted to RGB as PIL converts them
// (assuming Adobe's inverted CMYK).
//
// Memory: a JPEG is decoded whole (at its DCT-scaled size), a non-interlaced
// PNG a row at a time straight into the resize, so its decode holds O(width)
// bytes however tall it is. ProbeEncoded() predicts a decode's peak memory
// and CPU work from the headers alone, for admission control: see DecodeCost.
//
// Thread-safety: an ImageDecoder is immutable after Create(); all methods are
// const and safe to call concurrently. Each call creates its own libjpeg-turbo
// or libspng handle, so calls share no codec state.
//
// Example:
//   ImageDecoderOptions options;
//   options.image_size = 224;
//   ASSIGN_OR_RETURN(auto decoder, ImageDecoder::Create(options));
//   std::vector<float> input(3 * 224 * 224);
//   ASSIGN_OR_RETURN(DecodeInfo info, decoder->DecodeEncoded(bytes,
//                                                            input.data()));
#ifndef EDGE_SERVER_IMAGE_DECODER_H_
#define EDGE_SERVER_IMAGE_DECODER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edge {

struct ImageDecoderOptions {
  // S, the side of the model's square input (`image_size` in
  // docs/model-spec.md). Required: must be in [1, 8192].
  int image_size = 0;

  // Per-channel (R, G, B) normalisation applied to pixel values in [0, 1]:
  // (v - mean[c]) / std[c]. The defaults are the ViT / timm "inception"
  // values; take the real ones from the model manifest's `preprocessing`.
  // Every std must be finite and non-zero.
  std::array<float, 3> mean{0.5f, 0.5f, 0.5f};
  std::array<float, 3> std{0.5f, 0.5f, 0.5f};

  // Largest encoded image accepted, checked before decoding. 16 MiB holds an
  // 8K (7680x4320) camera JPEG at quality 95 (typically 8-12 MB) and a
  // lossless 4K PNG; larger requests are almost certainly not camera frames.
  // The gRPC server's max receive size must be at least this.
  uint64_t max_encoded_bytes = 16ull << 20;

  // Largest decoded width * height, checked from the file header before any
  // pixel buffer is allocated. 40 MP admits 8K UHD (33.2 MP) and 24-36 MP
  // stills; the peak cost of a decode at the limit is the 120 MB RGB buffer
  // plus, for progressive 4:4:4 JPEGs, libjpeg-turbo's 240 MB coefficient
  // buffer, which bounds one request's memory on an edge box.
  uint64_t max_pixels = 40'000'000;

  // Decode a large JPEG directly at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's
  // DCT scaling), choosing the smallest scale that still leaves both sides
  // >= image_size, then resize as usual. A 1920x1080 frame for S = 224 is
  // decoded at 1/4 (480x270): about 4x faster and 16x less memory. The scaled
  // IDCT averages each 8x8 block instead of sampling it, so pixels differ
  // slightly (a few grey levels on smooth images, more on fine texture) from
  // a full decode followed by bilinear resize; set false when bit-exact
  // parity with a full-resolution PyTorch pipeline matters more than speed.
  // Only power-of-two factors are used: libjpeg-turbo has SIMD IDCTs for
  // them, and they are the factors PIL's Image.draft() uses.
  bool jpeg_dct_scaling = true;
};

enum class ImageFormat { kJpeg, kPng };

// What DecodeEncoded() saw, for logs and tests.
struct DecodeInfo {
  ImageFormat format = ImageFormat::kJpeg;
  int source_width = 0;  // As declared by the file header.
  int source_height = 0;
  int decoded_width = 0;  // Smaller than source after JPEG DCT scaling.
  int decoded_height = 0;
};

// What decoding an image will cost, predicted by ProbeEncoded() without
// decoding it. (Raw pixels need no probe: FromRgb() resizes them in place
// from the message, skipping the rows the resize does not sample.)
struct DecodeCost {
  // The sizes DecodeEncoded() will report for the same bytes.
  DecodeInfo info;

  // Upper estimate of the heap a decode allocates at its peak, beyond the
  // caller's `out` buffer: decoded pixels, codec state (libjpeg's
  // whole-image coefficient buffer for progressive JPEGs: 3-6 bytes per
  // full-size pixel; libspng's zlib state and scanlines), the metadata the
  // PNG decoder keeps, and the resizer. Estimates are 1.0-1.5x the measured
  // peaks (ImageDecoderTest.ProbePeakBytesBoundMeasuredHeap); a PNG with
  // compressed text or ICC chunks is charged their largest possible
  // inflated size.
  uint64_t peak_bytes = 0;

  // Decode CPU time in "work pixels": one unit is the time to decode one
  // pixel of a full-size baseline 4:2:0 JPEG (2.3-2.7 ns on the 2-vCPU AMD
  // EPYC VM it was measured on). A full-size baseline 4:2:0 JPEG costs its
  // pixel count; DCT-scaled, 4:4:4, progressive and CMYK JPEGs and PNGs are
  // weighted by their measured cost relative to it (a progressive JPEG ~2.2x
  // its pixels, an RGB8 PNG ~6.3x; the figures are in
  // server/internal/jpeg_cost.cc and png_codec.cc). Measured times per work
  // pixel span 2.1-4.0 ns across formats and sizes, 1.1 ns for flat PNGs:
  // use it to compare and budget requests, not to predict latency. Not
  // included: page faults on fresh large buffers, which grow with
  // peak_bytes and cost ~25 us per 4 KiB page on that VM (230 ms for the
  // 36 MB RGB buffer of a full-size 12 MP JPEG, ~8x its decode time).
  uint64_t work_pixels = 0;
};

class ImageDecoder {
 public:
  // INVALID_ARGUMENT naming the field if `options` are unusable.
  static absl::StatusOr<std::unique_ptr<ImageDecoder>> Create(
      ImageDecoderOptions options);

  ImageDecoder(const ImageDecoder&) = delete;
  ImageDecoder& operator=(const ImageDecoder&) = delete;

  // Decodes a JPEG or PNG (recognised by its magic bytes, not by any name)
  // and writes the model input to `out`.
  // REQUIRES: `out` points to 3 * image_size() * image_size() floats.
  // On error `out` may have been partly written.
  absl::StatusOr<DecodeInfo> DecodeEncoded(std::string_view bytes,
                                           float* out) const;

  // What DecodeEncoded(bytes, ...) would cost, from the headers alone: the
  // JPEG markers before the first scan, or the PNG chunk headers (no pixel
  // data is inflated or decoded, no CRC checked). Rejects what DecodeEncoded
  // rejects from the same information (size and pixel limits, unknown
  // format, unreadable header) with the same INVALID_ARGUMENT message; an OK
  // probe does not promise that the decode will succeed.
  absl::StatusOr<DecodeCost> ProbeEncoded(std::string_view bytes) const;

  // Resizes and normalises raw 8-bit RGB, HWC order, of any size.
  // `pixels.size()` must equal width * height * 3.
  // REQUIRES: `out` points to 3 * image_size() * image_size() floats.
  absl::Status FromRgb(std::string_view pixels, int width, int height,
                       float* out) const;

  // Accepts a tensor the client already preprocessed: float32, CHW, already
  // normalised, shape [3, S, S] or [1, 3, S, S], `data` in little-endian
  // bytes. Checked (shape, byte count, every value finite) and copied.
  // REQUIRES: `out` points to 3 * image_size() * image_size() floats.
  absl::Status FromTensor(const std::vector<int64_t>& shape,
                          std::string_view data, float* out) const;

  // S: `out` buffers hold 3 * S * S floats.
  int image_size() const { return options_.image_size; }

 private:
  explicit ImageDecoder(ImageDecoderOptions options);

  // The format of `bytes` by its magic number, after the size checks.
  absl::StatusOr<ImageFormat> CheckEncoded(std::string_view bytes) const;

  // The smallest side a DCT-scaled JPEG decode may produce; 0: no scaling.
  int JpegMinScaledSide() const {
    return options_.jpeg_dct_scaling ? options_.image_size : 0;
  }

  const ImageDecoderOptions options_;
};

}  // namespace edge

#endif  // EDGE_SERVER_IMAGE_DECODER_H_
