#include "server/image_decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "server/internal/image_codecs.h"

// FromTensor copies the wire bytes straight into floats.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "FromTensor assumes a little-endian host");

namespace edge {
namespace decoder_internal {

absl::Status CheckDimensions(int64_t width, int64_t height,
                             uint64_t max_pixels) {
  if (width <= 0 || height <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("image has zero width or height: ", width, "x", height));
  }
  // Both sides fit in 31 bits, so the product cannot overflow.
  const uint64_t pixels =
      static_cast<uint64_t>(width) * static_cast<uint64_t>(height);
  if (pixels > max_pixels) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", width, "x", height, " = ", pixels,
                     " pixels; the limit is ", max_pixels, " (max_pixels)"));
  }
  return absl::OkStatus();
}

}  // namespace decoder_internal

namespace {

// Larger than any ViT input (224-518) by far, and keeps 3 * S * S in an int.
constexpr int kMaxImageSize = 8192;

constexpr unsigned char kJpegMagic[] = {0xFF, 0xD8, 0xFF};
constexpr unsigned char kPngMagic[] = {0x89, 'P',  'N',  'G',
                                       '\r', '\n', 0x1A, '\n'};

template <size_t N>
bool StartsWith(std::string_view bytes, const unsigned char (&magic)[N]) {
  return bytes.size() >= N && std::memcmp(bytes.data(), magic, N) == 0;
}

// "89 50 4e 47" for the first (up to) 8 bytes: enough to tell a GIF, WebP,
// HEIC or a text error page apart in a log line.
std::string HexPrefix(std::string_view bytes) {
  std::string hex;
  const size_t n = std::min<size_t>(bytes.size(), 8);
  for (size_t i = 0; i < n; ++i) {
    absl::StrAppend(
        &hex, i == 0 ? "" : " ",
        absl::Hex(static_cast<unsigned char>(bytes[i]), absl::kZeroPad2));
  }
  return hex;
}

absl::Status ValidateOptions(const ImageDecoderOptions& options) {
  if (options.image_size < 1 || options.image_size > kMaxImageSize) {
    return absl::InvalidArgumentError(absl::StrCat("image_size must be in [1, ",
                                                   kMaxImageSize, "], got ",
                                                   options.image_size));
  }
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite(options.mean[c])) {
      return absl::InvalidArgumentError(
          absl::StrCat("mean[", c, "] must be finite, got ", options.mean[c]));
    }
    if (!std::isfinite(options.std[c]) || options.std[c] == 0.0f) {
      return absl::InvalidArgumentError(absl::StrCat(
          "std[", c, "] must be finite and non-zero, got ", options.std[c]));
    }
  }
  if (options.max_encoded_bytes == 0 || options.max_pixels == 0) {
    return absl::InvalidArgumentError(
        "max_encoded_bytes and max_pixels must be positive");
  }
  return absl::OkStatus();
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

}  // namespace

ImageDecoder::ImageDecoder(ImageDecoderOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ImageDecoder>> ImageDecoder::Create(
    ImageDecoderOptions options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  return std::unique_ptr<ImageDecoder>(new ImageDecoder(std::move(options)));
}

absl::StatusOr<ImageFormat> ImageDecoder::CheckEncoded(
    std::string_view bytes) const {
  if (bytes.empty()) {
    return absl::InvalidArgumentError("image is empty (0 bytes)");
  }
  if (bytes.size() > options_.max_encoded_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image is ", bytes.size(), " bytes; the limit is ",
                     options_.max_encoded_bytes, " (max_encoded_bytes)"));
  }
  if (StartsWith(bytes, kJpegMagic)) return ImageFormat::kJpeg;
  if (StartsWith(bytes, kPngMagic)) return ImageFormat::kPng;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown image format: expected JPEG (ff d8 ff) or PNG (89 50 4e 47 "
      "0d 0a 1a 0a); the first bytes are ",
      HexPrefix(bytes)));
}

absl::StatusOr<DecodeInfo> ImageDecoder::DecodeEncoded(std::string_view bytes,
                                                       float* out) const {
  ASSIGN_OR_RETURN(const ImageFormat format, CheckEncoded(bytes));
  const decoder_internal::Normalization norm{options_.mean, options_.std};
  DecodeInfo info;
  info.format = format;
  if (format == ImageFormat::kPng) {
    ASSIGN_OR_RETURN(
        const decoder_internal::DecodedSize size,
        decoder_internal::DecodePngToChw(bytes, options_.max_pixels,
                                         options_.image_size, norm, out));
    info.source_width = info.decoded_width = size.width;
    info.source_height = info.decoded_height = size.height;
    return info;
  }
  ASSIGN_OR_RETURN(const decoder_internal::DecodedRgb rgb,
                   decoder_internal::DecodeJpeg(bytes, options_.max_pixels,
                                                JpegMinScaledSide()));
  info.source_width = rgb.source_width;
  info.source_height = rgb.source_height;
  info.decoded_width = rgb.width;
  info.decoded_height = rgb.height;
  decoder_internal::ResizeBilinearToChw(
      rgb.pixels.data(), rgb.width, rgb.height, options_.image_size, norm, out);
  return info;
}

absl::StatusOr<DecodeCost> ImageDecoder::ProbeEncoded(
    std::string_view bytes) const {
  ASSIGN_OR_RETURN(const ImageFormat format, CheckEncoded(bytes));
  decoder_internal::CodecCost codec;
  if (format == ImageFormat::kPng) {
    ASSIGN_OR_RETURN(codec,
                     decoder_internal::ProbePng(bytes, options_.max_pixels));
  } else {
    ASSIGN_OR_RETURN(codec,
                     decoder_internal::ProbeJpeg(bytes, options_.max_pixels,
                                                 JpegMinScaledSide()));
  }
  DecodeCost cost;
  cost.info.format = format;
  cost.info.source_width = codec.size.source_width;
  cost.info.source_height = codec.size.source_height;
  cost.info.decoded_width = codec.size.width;
  cost.info.decoded_height = codec.size.height;
  cost.peak_bytes =
      codec.heap_bytes +
      decoder_internal::BilinearRowResizer::HeapBytes(options_.image_size);
  cost.work_pixels = codec.work_pixels;
  return cost;
}

absl::Status ImageDecoder::FromRgb(std::string_view pixels, int width,
                                   int height, float* out) const {
  RETURN_IF_ERROR(
      decoder_internal::CheckDimensions(width, height, options_.max_pixels));
  const uint64_t expected = static_cast<uint64_t>(width) * height * 3;
  if (pixels.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RGB buffer is ", pixels.size(), " bytes; ", width, "x", height,
        " RGB needs ", width, "*", height, "*3 = ", expected));
  }
  decoder_internal::ResizeBilinearToChw(
      reinterpret_cast<const uint8_t*>(pixels.data()), width, height,
      options_.image_size, {options_.mean, options_.std}, out);
  return absl::OkStatus();
}

absl::Status ImageDecoder::FromTensor(const std::vector<int64_t>& shape,
                                      std::string_view data, float* out) const {
  const int64_t s = options_.image_size;
  const std::vector<int64_t> chw = {3, s, s};
  const std::vector<int64_t> nchw = {1, 3, s, s};
  if (shape != chw && shape != nchw) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor shape ", ShapeString(shape), " does not match the model's ",
        ShapeString(chw), " (or ", ShapeString(nchw), ")"));
  }
  const size_t count = static_cast<size_t>(3 * s * s);
  if (data.size() != count * sizeof(float)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor data is ", data.size(), " bytes; float32 ",
                     ShapeString(shape), " needs ", count * sizeof(float)));
  }
  std::memcpy(out, data.data(), data.size());
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(out[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor value ", out[i], " at channel ", i / (s * s), ", row ",
          (i / s) % s, ", column ", i % s, " is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace edge
