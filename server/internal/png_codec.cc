// PNG -> RGB8 with libspng 0.7, streamed into the resizer, and the header
// probe that predicts what such a decode costs.
//
// Memory: a non-interlaced PNG is decoded a row at a time (libspng's
// progressive API) into a BilinearRowResizer, so a decode holds one RGB row,
// libspng's two scanlines and its zlib state, not the image: a 6000x6000 PNG
// needs ~110 KB instead of a 108 MB RGB buffer. An interlaced (Adam7) PNG
// revisits every row in seven passes and is decoded whole first.
//
// Integrity: every chunk up to IEND is read and its CRC checked, ancillary
// chunks included (libspng's defaults would discard an ancillary chunk with a
// bad CRC, and stop reading once the pixels are complete, never checking the
// last IDAT's CRC or IEND). A bad CRC means the file was damaged on its way
// here; the pixels may be too, so it is refused, naming the chunk.
#include <spng.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
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

constexpr size_t kSignatureBytes = 8;

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
    code = spng_set_crc_action(ctx.get(), SPNG_CRC_ERROR, SPNG_CRC_ERROR);
  }
  if (code == 0) {
    code = spng_set_png_buffer(ctx.get(), bytes.data(), bytes.size());
  }
  if (code != 0) return PngError(code, "setup");
  return ctx;
}

// Reads and vets the IHDR: nothing is allocated for pixels before this
// returns OK.
absl::StatusOr<spng_ihdr> ReadHeader(spng_ctx* ctx, uint64_t max_pixels) {
  spng_ihdr ihdr{};
  if (const int code = spng_get_ihdr(ctx, &ihdr); code != 0) {
    return PngError(code, "header");
  }
  RETURN_IF_ERROR(CheckDimensions(ihdr.width, ihdr.height, max_pixels));
  return ihdr;
}

// One chunk of a PNG held in memory.
struct PngChunk {
  size_t offset = 0;  // Of its length field, from the start of the file.
  std::string_view type;
  std::string_view data;
  uint32_t stored_crc = 0;
};

// Visits the chunks after the signature in file order, up to and including
// IEND; stops early at a chunk that does not fit in the file.
class PngChunkWalker {
 public:
  explicit PngChunkWalker(std::string_view png) : png_(png) {}

  bool Next(PngChunk* chunk) {
    if (done_ || png_.size() - at_ < 12) return false;
    const uint32_t length = ReadU32(at_);
    if (length > png_.size() - at_ - 12) return false;
    chunk->offset = at_;
    chunk->type = png_.substr(at_ + 4, 4);
    chunk->data = png_.substr(at_ + 8, length);
    chunk->stored_crc = ReadU32(at_ + 8 + length);
    at_ += 12 + static_cast<size_t>(length);
    done_ = chunk->type == "IEND";
    return true;
  }

 private:
  uint32_t ReadU32(size_t at) const {
    const auto* p = reinterpret_cast<const uint8_t*>(png_.data() + at);
    return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
           (uint32_t{p[2]} << 8) | p[3];
  }

  const std::string_view png_;
  size_t at_ = kSignatureBytes;
  bool done_ = false;
};

uint32_t ChunkCrc(const PngChunk& chunk) {
  // The CRC covers the type and the data (PNG spec 5.3).
  const auto bytes = [](std::string_view s) {
    return reinterpret_cast<const Bytef*>(s.data());
  };
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, bytes(chunk.type), 4);
  crc = crc32(crc, bytes(chunk.data), static_cast<uInt>(chunk.data.size()));
  return static_cast<uint32_t>(crc);
}

// A chunk type for a message: four letters in a valid file, escaped if not.
std::string PrintableType(std::string_view type) {
  bool letters = true;
  for (char c : type) letters = letters && absl::ascii_isalpha(c);
  if (letters) return std::string(type);
  return absl::StrCat("0x", absl::BytesToHexString(
                                absl::string_view(type.data(), type.size())));
}

// libspng said "invalid chunk checksum" without saying where; find the first
// chunk whose CRC does not match (only on this error path: it reads the
// whole file again).
absl::Status ChunkCrcError(std::string_view png, const char* stage) {
  PngChunkWalker walker(png);
  PngChunk chunk;
  while (walker.Next(&chunk)) {
    const uint32_t computed = ChunkCrc(chunk);
    if (computed != chunk.stored_crc) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid PNG ", stage, ": the ", PrintableType(chunk.type),
          " chunk at byte ", chunk.offset, " fails its CRC checksum (stored ",
          absl::Hex(chunk.stored_crc, absl::kZeroPad8), ", computed ",
          absl::Hex(computed, absl::kZeroPad8),
          "): the file was damaged in transit or storage"));
    }
  }
  return PngError(SPNG_ECHUNK_CRC, stage);
}

absl::Status DecodeError(int code, std::string_view png, const char* stage) {
  if (code == SPNG_ECHUNK_CRC) return ChunkCrcError(png, stage);
  return PngError(code, stage);
}

// Non-interlaced: one row at a time through the resizer.
absl::Status DecodeRows(spng_ctx* ctx, std::string_view png,
                        const spng_ihdr& ihdr, BilinearRowResizer& resizer) {
  // No SPNG_DECODE_TRNS and no gamma correction: alpha is dropped, not
  // composited, as PIL's convert("RGB") does in common training loaders.
  if (const int code = spng_decode_image(ctx, nullptr, 0, SPNG_FMT_RGB8,
                                         SPNG_DECODE_PROGRESSIVE);
      code != 0) {
    return DecodeError(code, png, "data");
  }
  std::vector<uint8_t> row(static_cast<size_t>(ihdr.width) * 3);
  for (uint32_t y = 0; y < ihdr.height; ++y) {
    // SPNG_EOI comes with the last row.
    const int code = spng_decode_row(ctx, row.data(), row.size());
    const bool last = y + 1 == ihdr.height;
    if (code != 0 && !(code == SPNG_EOI && last)) {
      return DecodeError(code, png, "data");
    }
    resizer.PushRow(row.data());
  }
  return absl::OkStatus();
}

// Interlaced: the whole image, then the resize.
absl::Status DecodeWhole(spng_ctx* ctx, std::string_view png,
                         const spng_ihdr& ihdr, int side,
                         const Normalization& norm, float* out) {
  std::vector<uint8_t> pixels(static_cast<size_t>(ihdr.width) * ihdr.height *
                              3);
  if (const int code = spng_decode_image(ctx, pixels.data(), pixels.size(),
                                         SPNG_FMT_RGB8, 0);
      code != 0) {
    return DecodeError(code, png, "data");
  }
  ResizeBilinearToChw(pixels.data(), static_cast<int>(ihdr.width),
                      static_cast<int>(ihdr.height), side, norm, out);
  return absl::OkStatus();
}

// Reads the chunks after the image data through IEND, checking their CRCs.
absl::Status ReadTrailingChunks(spng_ctx* ctx, std::string_view png) {
  const int code = spng_decode_chunks(ctx);
  if (code == SPNG_IO_EOF || code == SPNG_IO_ERROR) {
    return absl::InvalidArgumentError(
        "invalid PNG: the file ends after the image data without an IEND "
        "chunk (truncated)");
  }
  if (code != 0) return DecodeError(code, png, "chunks after the image data");
  return absl::OkStatus();
}

// ---- Cost model for ProbePng. ----

// libspng's heap apart from metadata, measured with a counting allocator
// (spng_ctx_new2) at 44.6 KB: its 4.4 KB context and zlib's inflate state
// with its 32 KB window. Plus scanline buffers, below.
constexpr uint64_t kSpngFixedBytes = 64 << 10;

// Deflate's best case: a 258-byte match in ~2 bits, about 1032:1
// (zlib's FAQ), so a compressed chunk inflates to at most this many times
// its size.
constexpr uint64_t kMaxInflateRatio = 1032;

// Per text or sPLT entry: libspng's list entry (struct spng_text2 is ~140
// bytes) and the up-to-256 bytes of keyword it copies.
constexpr uint64_t kMetadataEntryBytes = 512;

uint64_t BitsPerPixel(const spng_ihdr& ihdr) {
  uint64_t channels = 1;  // Greyscale, palette.
  if (ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR) channels = 3;
  if (ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA) channels = 2;
  if (ihdr.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA) channels = 4;
  return channels * ihdr.bit_depth;
}

// One raw scanline: the filter byte and the packed samples.
uint64_t ScanlineBytes(const spng_ihdr& ihdr) {
  return (uint64_t{ihdr.width} * BitsPerPixel(ihdr) + 7) / 8 + 1;
}

// CPU model. DecodeEncoded() times in ns per pixel, measured as for JPEG
// (jpeg_cost.cc), where a full-size baseline 4:2:0 JPEG took 2.3-2.7:
//
//                          1280x720  1920x1080  4000x3000
//   RGB8 photo-like          14.3      15.6       14.0
//   RGBA8 photo-like         19.9      23.8       20.4
//   grey8 photo-like          9.2       9.2        9.6
//   RGB8 photo-like, Adam7   16.1      17.6       17.0
//   RGB8 black                7.3       7.8        7.1
//
// Inflating and unfiltering scale with the raw bytes per pixel, and Adam7
// costs ~15% more. In units of a baseline JPEG pixel:
//   work = pixels * (1.5 + 1.6 * raw bytes per pixel) * (1.2 if Adam7),
// 6.3 for RGB8 and 3.1 for grey8: 2.1-3.1 ns per work pixel in the table,
// except flat content (black: 1.1-1.2), which the model overestimates, on
// the safe side.
uint64_t PngDecodeWorkPixels(const spng_ihdr& ihdr) {
  const double bytes_per_pixel = BitsPerPixel(ihdr) / 8.0;
  const double interlace = ihdr.interlace_method != 0 ? 1.2 : 1.0;
  const double pixels = static_cast<double>(ihdr.width) * ihdr.height;
  return static_cast<uint64_t>(
      std::llround(pixels * (1.5 + 1.6 * bytes_per_pixel) * interlace));
}

// What libspng keeps of the ancillary chunks it parses (text, iCCP, eXIf,
// sPLT; it drops unknown ones), from the chunk headers alone. Compressed
// chunks count at their largest inflated size, and the largest once more for
// the buffer libspng grows by doubling while inflating.
uint64_t MetadataBytes(std::string_view png) {
  uint64_t stored = 0, largest_inflate = 0;
  PngChunkWalker walker(png);
  PngChunk chunk;
  while (walker.Next(&chunk)) {
    const uint64_t length = chunk.data.size();
    if (chunk.type == "zTXt" || chunk.type == "iTXt" || chunk.type == "iCCP") {
      const uint64_t inflated = std::min<uint64_t>(
          kMaxChunkBytes, length * kMaxInflateRatio + (8 << 10));
      stored += inflated + kMetadataEntryBytes;
      largest_inflate = std::max(largest_inflate, inflated);
    } else if (chunk.type == "tEXt") {
      stored += length + kMetadataEntryBytes;
    } else if (chunk.type == "eXIf") {
      stored += length;
    } else if (chunk.type == "sPLT") {
      // Palette entries grow from 6 (or 10) bytes to 10 when parsed.
      stored += 2 * length + kMetadataEntryBytes;
    }
  }
  return std::min<uint64_t>(stored, kMaxChunkCacheBytes) + largest_inflate;
}

}  // namespace

absl::StatusOr<DecodedSize> DecodePngToChw(std::string_view bytes,
                                           uint64_t max_pixels, int side,
                                           const Normalization& norm,
                                           float* out) {
  ASSIGN_OR_RETURN(SpngCtx ctx, NewLimitedDecoder(bytes, max_pixels));
  ASSIGN_OR_RETURN(const spng_ihdr ihdr, ReadHeader(ctx.get(), max_pixels));
  const int width = static_cast<int>(ihdr.width);
  const int height = static_cast<int>(ihdr.height);
  if (ihdr.interlace_method == SPNG_INTERLACE_NONE) {
    BilinearRowResizer resizer(width, height, side, norm, out);
    RETURN_IF_ERROR(DecodeRows(ctx.get(), bytes, ihdr, resizer));
  } else {
    RETURN_IF_ERROR(DecodeWhole(ctx.get(), bytes, ihdr, side, norm, out));
  }
  RETURN_IF_ERROR(ReadTrailingChunks(ctx.get(), bytes));
  return DecodedSize{width, height, width, height};
}

absl::StatusOr<CodecCost> ProbePng(std::string_view bytes,
                                   uint64_t max_pixels) {
  ASSIGN_OR_RETURN(SpngCtx ctx, NewLimitedDecoder(bytes, max_pixels));
  ASSIGN_OR_RETURN(const spng_ihdr ihdr, ReadHeader(ctx.get(), max_pixels));
  const int width = static_cast<int>(ihdr.width);
  const int height = static_cast<int>(ihdr.height);
  const uint64_t pixels = uint64_t{ihdr.width} * ihdr.height;
  const bool interlaced = ihdr.interlace_method != SPNG_INTERLACE_NONE;
  CodecCost cost;
  cost.size = {width, height, width, height};
  // Our RGB row or image; libspng's scanline and previous scanline, plus a
  // row buffer when interlaced.
  cost.heap_bytes = (interlaced ? pixels : uint64_t{ihdr.width}) * 3 +
                    kSpngFixedBytes + 3 * ScanlineBytes(ihdr) +
                    MetadataBytes(bytes);
  cost.work_pixels = PngDecodeWorkPixels(ihdr);
  return cost;
}

}  // namespace edge::decoder_internal
