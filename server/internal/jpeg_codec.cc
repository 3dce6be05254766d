// JPEG -> RGB8 with the TurboJPEG API of libjpeg-turbo 2.1, and the header
// probe that predicts what such a decode costs (its memory model and its CPU
// figures are in jpeg_cost.cc).
//
// CMYK and YCCK JPEGs (4 components; libjpeg turns YCCK into CMYK itself) are
// decoded to CMYK and converted here, because TurboJPEG 2.1 will not convert
// them to RGB. libjpeg hands back the values as stored, and nearly every CMYK
// JPEG in the wild comes from Photoshop, which stores them inverted (255 =
// no ink) and marks the file with an Adobe APP14 segment. The conversion
// therefore assumes inverted values: R = C * K / 255, G = M * K / 255,
// B = Y * K / 255, rounded. It is what PIL does (JpegImagePlugin decodes
// every CMYK JPEG with rawmode "CMYK;I", "assume adobe conventions", whether
// or not the marker is present, and Image.convert("RGB") then computes
// exactly these values), so the pixels match PIL/torchvision training
// loaders; it is also libjpeg-turbo's own cmyk_to_rgb() (cmyk.h) and what
// browsers do for Adobe files. Like the rest of the decoder it ignores any
// embedded ICC profile, so colours are approximate for print profiles.
#include <turbojpeg.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/internal/image_codecs.h"
#include "server/internal/jpeg_cost.h"

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

absl::StatusOr<TjHandle> NewDecompressor() {
  TjHandle handle(tjInitDecompress());
  if (handle == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot create a JPEG decoder: ", tjGetErrorStr2(nullptr)));
  }
  return handle;
}

// The header as TurboJPEG reads it, and the output size chosen for it.
struct JpegHeader {
  JpegSize source;
  JpegSize scaled;    // After DCT scaling.
  bool cmyk = false;  // CMYK or YCCK: decoded to CMYK, then converted.
};

// The smallest power-of-two DCT scale (1/1 .. 1/8) whose output keeps both
// sides >= min_side; 1/1 when the image is already smaller than that.
JpegSize ChooseDctScale(JpegSize full, int min_side) {
  JpegSize best = full;
  if (min_side <= 0) return best;
  int count = 0;
  const tjscalingfactor* factors = tjGetScalingFactors(&count);
  for (int i = 0; factors != nullptr && i < count; ++i) {
    const tjscalingfactor f = factors[i];
    const bool power_of_two =
        f.num == 1 && (f.denom == 2 || f.denom == 4 || f.denom == 8);
    if (!power_of_two) continue;
    const JpegSize scaled{TJSCALED(full.width, f), TJSCALED(full.height, f),
                          f.denom};
    if (scaled.width >= min_side && scaled.height >= min_side &&
        static_cast<int64_t>(scaled.width) * scaled.height <
            static_cast<int64_t>(best.width) * best.height) {
      best = scaled;
    }
  }
  return best;
}

// Reads and vets the header: nothing is allocated for pixels before this
// returns OK.
absl::StatusOr<JpegHeader> ReadHeader(tjhandle handle, std::string_view bytes,
                                      uint64_t max_pixels,
                                      int min_scaled_side) {
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
  JpegHeader header;
  header.source = {width, height, 1};
  header.scaled = ChooseDctScale(header.source, min_scaled_side);
  header.cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
  return header;
}

// Adobe (inverted) CMYK to RGB in place: `pixels` holds `count` CMYK pixels
// and on return starts with `count` RGB pixels. Pixel i's RGB (bytes 3i..3i+2)
// never overlaps a later pixel's CMYK (bytes 4j.., j > i), and each pixel is
// read before it is written. (x + 127) / 255 rounds x / 255 to nearest: the
// fraction of x / 255 is never exactly one half.
void AdobeCmykToRgb(uint8_t* pixels, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* cmyk = pixels + 4 * i;
    const int c = cmyk[0], m = cmyk[1], y = cmyk[2], k = cmyk[3];
    uint8_t* rgb = pixels + 3 * i;
    rgb[0] = static_cast<uint8_t>((c * k + 127) / 255);
    rgb[1] = static_cast<uint8_t>((m * k + 127) / 255);
    rgb[2] = static_cast<uint8_t>((y * k + 127) / 255);
  }
}

}  // namespace

absl::StatusOr<DecodedRgb> DecodeJpeg(std::string_view bytes,
                                      uint64_t max_pixels,
                                      int min_scaled_side) {
  ASSIGN_OR_RETURN(TjHandle handle, NewDecompressor());
  ASSIGN_OR_RETURN(
      const JpegHeader header,
      ReadHeader(handle.get(), bytes, max_pixels, min_scaled_side));
  const JpegSize scaled = header.scaled;
  DecodedRgb image;
  image.source_width = header.source.width;
  image.source_height = header.source.height;
  image.width = scaled.width;
  image.height = scaled.height;
  const size_t pixel_count = static_cast<size_t>(scaled.width) * scaled.height;
  const int channels = header.cmyk ? 4 : 3;
  image.pixels.resize(pixel_count * channels);
  // Greyscale JPEGs are expanded to RGB by libjpeg-turbo itself.
  if (tjDecompress2(
          handle.get(), reinterpret_cast<const unsigned char*>(bytes.data()),
          static_cast<unsigned long>(bytes.size()), image.pixels.data(),
          scaled.width, scaled.width * channels, scaled.height,
          header.cmyk ? TJPF_CMYK : TJPF_RGB, kDecompressFlags) != 0) {
    return JpegError(handle.get(), "data");
  }
  if (header.cmyk) {
    AdobeCmykToRgb(image.pixels.data(), pixel_count);
    image.pixels.resize(pixel_count * 3);  // Keeps the capacity: no copy.
  }
  return image;
}

absl::StatusOr<CodecCost> ProbeJpeg(std::string_view bytes, uint64_t max_pixels,
                                    int min_scaled_side) {
  ASSIGN_OR_RETURN(TjHandle handle, NewDecompressor());
  ASSIGN_OR_RETURN(
      const JpegHeader header,
      ReadHeader(handle.get(), bytes, max_pixels, min_scaled_side));
  const JpegFrame frame = ParseJpegFrame(bytes, header.cmyk ? 4 : 3);
  CodecCost cost;
  cost.size = {header.source.width, header.source.height, header.scaled.width,
               header.scaled.height};
  cost.heap_bytes =
      JpegDecodeHeapBytes(frame, header.source, header.scaled, header.cmyk);
  cost.work_pixels =
      JpegDecodeWorkPixels(frame, header.source, header.scaled, header.cmyk);
  return cost;
}

}  // namespace edge::decoder_internal
