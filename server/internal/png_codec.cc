// PNG -> RGB8 with libspng 0.7.
#include <spng.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/internal/image_codecs.h"

namespace edge::decoder_internal {
namespace {

struct SpngCtxDeleter {
  void operator()(spng_ctx* ctx) const { spng_ctx_free(ctx); }
};
using SpngCtx = std::unique_ptr<spng_ctx, SpngCtxDeleter>;

// libspng's own ceiling for width and height (2^31 - 1).
constexpr uint64_t kSpngMaxSide = 0x7fffffff;

// Bounds on ancillary chunks (text, iCCP, eXIf, ...) that libspng buffers
// while looking for the pixels. We never read them, but zTXt/iTXt/iCCP are
// inflated in memory, so without a cap a 16 MiB file could expand to
// gigabytes of "metadata". Real ICC profiles and EXIF blocks are well under
// 1 MiB; 4 MiB per chunk and 8 MiB in total leave room for outliers. The
// pixel data (IDAT) is streamed and is bounded by max_pixels instead.
constexpr size_t kMaxChunkBytes = 4u << 20;
constexpr size_t kMaxChunkCacheBytes = 8u << 20;

absl::Status PngError(int code, const char* stage) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid PNG ", stage, ": ", spng_strerror(code)));
}

absl::StatusOr<SpngCtx> NewLimitedDecoder(std::string_view bytes,
                                          uint64_t max_pixels) {
  SpngCtx ctx(spng_ctx_new(0));
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError("cannot create a PNG decoder");
  }
  // Per-side limits make libspng reject absurd headers itself; the product
  // is checked by CheckDimensions once the header is read.
  const auto side_limit =
      static_cast<uint32_t>(std::min(max_pixels, kSpngMaxSide));
  int code = spng_set_image_limits(ctx.get(), side_limit, side_limit);
  if (code == 0) {
    code =
        spng_set_chunk_limits(ctx.get(), kMaxChunkBytes, kMaxChunkCacheBytes);
  }
  if (code == 0) {
    code = spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
  }
  if (code != 0) return PngError(code, "setup");
  return ctx;
}

}  // namespace

absl::StatusOr<DecodedRgb> DecodePng(std::string_view bytes,
                                     uint64_t max_pixels) {
  ASSIGN_OR_RETURN(SpngCtx ctx, NewLimitedDecoder(bytes, max_pixels));
  spng_ihdr ihdr{};
  if (const int code = spng_get_ihdr(ctx.get(), &ihdr); code != 0) {
    return PngError(code, "header");
  }
  RETURN_IF_ERROR(CheckDimensions(ihdr.width, ihdr.height, max_pixels));
  size_t decoded_bytes = 0;
  if (const int code =
          spng_decoded_image_size(ctx.get(), SPNG_FMT_RGB8, &decoded_bytes);
      code != 0) {
    return PngError(code, "header");
  }
  const size_t expected_bytes =
      static_cast<size_t>(ihdr.width) * ihdr.height * 3;
  if (decoded_bytes != expected_bytes) {
    return absl::InternalError(absl::StrCat("libspng reports ", decoded_bytes,
                                            " bytes for RGB8, expected ",
                                            expected_bytes));
  }
  DecodedRgb image;
  image.source_width = image.width = static_cast<int>(ihdr.width);
  image.source_height = image.height = static_cast<int>(ihdr.height);
  image.pixels.resize(decoded_bytes);
  // No SPNG_DECODE_TRNS and no gamma correction: alpha is dropped, not
  // composited, as PIL's convert("RGB") does in common training loaders.
  if (const int code = spng_decode_image(ctx.get(), image.pixels.data(),
                                         image.pixels.size(), SPNG_FMT_RGB8, 0);
      code != 0) {
    return PngError(code, "data");
  }
  return image;
}

}  // namespace edge::decoder_internal
