// JPEG -> RGB8 with the TurboJPEG API of libjpeg-turbo 2.1.
#include <turbojpeg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/internal/image_codecs.h"

namespace edge::decoder_internal {
namespace {

struct TjHandleDeleter {
  void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjHandleDeleter>;

// Accurate (islow) IDCT: the libjpeg default PIL and torchvision decode with,
// so the pixels match what the model was trained on. STOPONWARNING because a
// warning is rejected anyway (see DecodeJpeg), so finishing the decode would
// be wasted work; LIMITSCANS rejects progressive files with hundreds of scans
// crafted to burn CPU (libjpeg-turbo's "two issues with the JPEG standard").
constexpr int kDecompressFlags =
    TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;

absl::Status JpegError(tjhandle handle, const char* stage) {
  // tjGetErrorStr2 returns a per-handle message, so concurrent decodes do
  // not see each other's errors.
  const bool warning = tjGetErrorCode(handle) == TJERR_WARNING;
  return absl::InvalidArgumentError(
      absl::StrCat(warning ? "corrupt JPEG " : "invalid JPEG ", stage, ": ",
                   tjGetErrorStr2(handle)));
}

struct JpegSize {
  int width;
  int height;
};

// The smallest power-of-two DCT scale (1/1 .. 1/8) whose output keeps both
// sides >= min_side; 1/1 when the image is already smaller than that.
JpegSize ChooseDctScale(int width, int height, int min_side) {
  JpegSize best{width, height};
  if (min_side <= 0) return best;
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  for (int i = 0; factors != nullptr && i < count; ++i) {
    const tjscalingfactor f = factors[i];
    const bool power_of_two =
        f.num == 1 && (f.denom == 2 || f.denom == 4 || f.denom == 8);
    if (!power_of_two) continue;
    const int w = TJSCALED(width, f);
    const int h = TJSCALED(height, f);
    if (w >= min_side && h >= min_side &&
        static_cast<int64_t>(w) * h <
            static_cast<int64_t>(best.width) * best.height) {
      best = {w, h};
    }
  }
  return best;
}

// Reads and vets the header: nothing is allocated for pixels before this
// returns OK.
absl::StatusOr<JpegSize> ReadHeader(tjhandle handle, std::string_view bytes,
                                    uint64_t max_pixels) {
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(handle,
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<unsigned long>(bytes.size()), &width,
                          &height, &subsampling, &colorspace) != 0) {
    return JpegError(handle, "header");
  }
  if (width <= 0 || height <= 0) {
    // libjpeg-turbo treats running out of data before the frame header as
    // "tables only" and reports 0x0 rather than an error.
    return absl::InvalidArgumentError(absl::StrCat(
        "JPEG has no image frame (", width, "x", height,
        "): truncated before its SOF header, or a tables-only stream"));
  }
  RETURN_IF_ERROR(CheckDimensions(width, height, max_pixels));
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK) {
    // TurboJPEG 2.1 cannot convert these to RGB; say so instead of its
    // generic "Unsupported color conversion request".
    return absl::InvalidArgumentError(
        "CMYK/YCCK JPEGs are not supported; send RGB or greyscale");
  }
  return JpegSize{width, height};
}

}  // namespace

absl::StatusOr<DecodedRgb> DecodeJpeg(std::string_view bytes,
                                      uint64_t max_pixels,
                                      int min_scaled_side) {
  TjHandle handle(tjInitDecompress());
  if (handle == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot create a JPEG decoder: ", tjGetErrorStr2(nullptr)));
  }
  ASSIGN_OR_RETURN(const JpegSize source,
                   ReadHeader(handle.get(), bytes, max_pixels));
  const JpegSize scaled =
      ChooseDctScale(source.width, source.height, min_scaled_side);
  DecodedRgb image;
  image.source_width = source.width;
  image.source_height = source.height;
  image.width = scaled.width;
  image.height = scaled.height;
  image.pixels.resize(static_cast<size_t>(scaled.width) * scaled.height * 3);
  // Greyscale JPEGs are expanded to RGB by libjpeg-turbo itself.
  if (tjDecompress2(handle.get(),
                    reinterpret_cast<const unsigned char*>(bytes.data()),
                    static_cast<unsigned long>(bytes.size()),
                    image.pixels.data(), scaled.width, scaled.width * 3,
                    scaled.height, TJPF_RGB, kDecompressFlags) != 0) {
    return JpegError(handle.get(), "data");
  }
  return image;
}

}  // namespace edge::decoder_internal
