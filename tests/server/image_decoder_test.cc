#include "server/image_decoder.h"

#include <malloc.h>
#include <spng.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/internal/image_codecs.h"
#include "tests/testing/heap_peak.h"

namespace edge {
namespace {

using test_support::HeapPeak;
using ::testing::HasSubstr;

constexpr int kSide = 224;
constexpr std::array<float, 3> kImagenetMean{0.485f, 0.456f, 0.406f};
constexpr std::array<float, 3> kImagenetStd{0.229f, 0.224f, 0.225f};

// ---- Test images and encoders (TurboJPEG's and libspng's own). ----

struct Image {
  int width = 0;
  int height = 0;
  int channels = 3;             // 1 grey; 4 is RGBA for PNG, CMYK for JPEG.
  std::vector<uint8_t> pixels;  // HWC.
  std::string_view bytes() const {
    return {reinterpret_cast<const char*>(pixels.data()), pixels.size()};
  }
};

// Smooth in both directions, different in each channel: JPEG keeps it well.
Image Gradient(int width, int height, int channels = 3) {
  Image image{width, height, channels, {}};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const float u = static_cast<float>(x) / std::max(1, width - 1);
      const float v = static_cast<float>(y) / std::max(1, height - 1);
      const float rgba[4] = {255 * u, 255 * v, 255 * (1 - (u + v) / 2), 128};
      for (int c = 0; c < channels; ++c) {
        image.pixels.push_back(static_cast<uint8_t>(std::lround(rgba[c])));
      }
    }
  }
  return image;
}

Image Constant(int width, int height, std::array<uint8_t, 3> rgb) {
  Image image{width, height, 3, {}};
  for (int i = 0; i < width * height; ++i) {
    image.pixels.insert(image.pixels.end(), rgb.begin(), rgb.end());
  }
  return image;
}

Image Random(int width, int height, int channels, uint32_t seed) {
  std::mt19937 rng(seed);
  Image image{width, height, channels, {}};
  image.pixels.resize(static_cast<size_t>(width) * height * channels);
  for (uint8_t& p : image.pixels) p = static_cast<uint8_t>(rng());
  return image;
}

// Keeps channel 0..2 of an image with more channels (drops alpha) or
// replicates a single grey channel.
Image ToRgb(const Image& in) {
  Image out{in.width, in.height, 3, {}};
  for (int i = 0; i < in.width * in.height; ++i) {
    for (int c = 0; c < 3; ++c) {
      out.pixels.push_back(
          in.pixels[i * in.channels + std::min(c, in.channels - 1)]);
    }
  }
  return out;
}

// Channels 4 are CMYK, which TurboJPEG writes as a YCCK JPEG.
std::string EncodeJpeg(const Image& image, int quality = 95,
                       int subsampling = TJSAMP_444, int flags = 0) {
  tjhandle handle = tjInitCompress();
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  const int format = image.channels == 1   ? TJPF_GRAY
                     : image.channels == 4 ? TJPF_CMYK
                                           : TJPF_RGB;
  if (image.channels == 1) subsampling = TJSAMP_GRAY;
  const int rc =
      tjCompress2(handle, image.pixels.data(), image.width, 0, image.height,
                  format, &buffer, &size, subsampling, quality, flags);
  EXPECT_EQ(rc, 0) << tjGetErrorStr2(handle);
  std::string jpeg(reinterpret_cast<char*>(buffer), size);
  tjFree(buffer);
  tjDestroy(handle);
  return jpeg;
}

// A 4-channel image as a JPEG in colour space `space` (JCS_CMYK or
// JCS_YCCK), through libjpeg's own API: TurboJPEG only writes YCCK. libjpeg
// stores the samples as given and adds an Adobe APP14 marker, as Photoshop
// does; the test images hold Adobe-inverted values (255 = no ink).
std::string EncodeCmykJpeg(const Image& cmyk, J_COLOR_SPACE space,
                           int quality = 95) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr error;
  cinfo.err = jpeg_std_error(&error);  // Exits on error: inputs are valid.
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = cmyk.width;
  cinfo.image_height = cmyk.height;
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_colorspace(&cinfo, space);  // YCCK: Y and K at 2x2 sampling.
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(
        &cmyk.pixels[static_cast<size_t>(cinfo.next_scanline) * cmyk.width *
                     4]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::string jpeg(reinterpret_cast<char*>(buffer), size);
  free(buffer);
  return jpeg;
}

int JpegColorspace(const std::string& jpeg) {
  tjhandle handle = tjInitDecompress();
  int width = 0, height = 0, subsampling = 0, colorspace = -1;
  tjDecompressHeader3(handle, reinterpret_cast<const uint8_t*>(jpeg.data()),
                      jpeg.size(), &width, &height, &subsampling, &colorspace);
  tjDestroy(handle);
  return colorspace;
}

// `samples` are in libspng's SPNG_FMT_PNG layout (16-bit: host-endian).
std::string EncodePng(const void* samples, size_t size, int width, int height,
                      uint8_t color_type, uint8_t bit_depth,
                      spng_plte* palette = nullptr, bool interlaced = false) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = width;
  ihdr.height = height;
  ihdr.bit_depth = bit_depth;
  ihdr.color_type = color_type;
  ihdr.interlace_method = interlaced ? SPNG_INTERLACE_ADAM7 : 0;
  spng_set_ihdr(ctx, &ihdr);
  if (palette != nullptr) spng_set_plte(ctx, palette);
  int rc =
      spng_encode_image(ctx, samples, size, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
  EXPECT_EQ(rc, 0) << spng_strerror(rc);
  size_t png_size = 0;
  void* png = spng_get_png_buffer(ctx, &png_size, &rc);
  std::string bytes(static_cast<char*>(png), png_size);
  free(png);
  spng_ctx_free(ctx);
  return bytes;
}

std::string EncodePng(const Image& image, bool interlaced = false) {
  const uint8_t color_type = image.channels == 1 ? SPNG_COLOR_TYPE_GRAYSCALE
                             : image.channels == 4
                                 ? SPNG_COLOR_TYPE_TRUECOLOR_ALPHA
                                 : SPNG_COLOR_TYPE_TRUECOLOR;
  return EncodePng(image.pixels.data(), image.pixels.size(), image.width,
                   image.height, color_type, 8, nullptr, interlaced);
}

// An all-zero RGB8 PNG, encoded a row at a time so that a large one costs
// the test no image-sized buffer.
std::string EncodeBlackPng(int width, int height) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_set_option(ctx, SPNG_FILTER_CHOICE, SPNG_DISABLE_FILTERING);
  spng_ihdr ihdr{};
  ihdr.width = width;
  ihdr.height = height;
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  spng_set_ihdr(ctx, &ihdr);
  int rc = spng_encode_image(ctx, nullptr, 0, SPNG_FMT_PNG,
                             SPNG_ENCODE_PROGRESSIVE | SPNG_ENCODE_FINALIZE);
  const std::vector<uint8_t> row(static_cast<size_t>(width) * 3);
  while (rc == 0) rc = spng_encode_row(ctx, row.data(), row.size());
  EXPECT_EQ(rc, SPNG_EOI) << spng_strerror(rc);
  size_t png_size = 0;
  void* png = spng_get_png_buffer(ctx, &png_size, &rc);
  std::string bytes(static_cast<char*>(png), png_size);
  free(png);
  spng_ctx_free(ctx);
  return bytes;
}

uint32_t Crc32(const std::string& bytes, size_t begin, size_t end) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = begin; i < end; ++i) {
    crc ^= static_cast<uint8_t>(bytes[i]);
    for (int k = 0; k < 8; ++k)
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

void PutBigEndian(std::string& bytes, size_t at, uint32_t value, int n) {
  for (int i = 0; i < n; ++i) {
    bytes[at + i] = static_cast<char>(value >> (8 * (n - 1 - i)));
  }
}

// Offsets of the length fields of the chunks of `type`, in file order.
std::vector<size_t> Chunks(const std::string& png, std::string_view type) {
  std::vector<size_t> found;
  for (size_t at = 8; at + 12 <= png.size();) {
    uint32_t length = 0;
    for (int i = 0; i < 4; ++i)
      length = (length << 8) | static_cast<uint8_t>(png[at + i]);
    if (std::string_view(png).substr(at + 4, 4) == type) found.push_back(at);
    at += 12 + static_cast<size_t>(length);
  }
  return found;
}

// `png` with a chunk of `type` and `data` (and a correct CRC) inserted
// before the first chunk of type `before`.
std::string InsertChunk(const std::string& png, std::string_view before,
                        std::string_view type, std::string_view data) {
  std::string chunk(4, '\0');
  PutBigEndian(chunk, 0, static_cast<uint32_t>(data.size()), 4);
  chunk.append(type);
  chunk.append(data);
  chunk.resize(chunk.size() + 4);
  PutBigEndian(chunk, chunk.size() - 4, Crc32(chunk, 4, chunk.size() - 4), 4);
  std::string out = png;
  out.insert(Chunks(png, before).at(0), chunk);
  return out;
}

// zTXt payload: keyword, NUL, method 0, then `text` deflated.
std::string ZtxtData(const std::string& text) {
  uLongf size = compressBound(text.size());
  std::string deflated(size, '\0');
  compress(reinterpret_cast<Bytef*>(deflated.data()), &size,
           reinterpret_cast<const Bytef*>(text.data()), text.size());
  deflated.resize(size);
  return std::string("Comment\0\0", 9) + deflated;
}

// ---- Helpers around the decoder. ----

std::unique_ptr<ImageDecoder> MakeDecoder(ImageDecoderOptions options = {}) {
  if (options.image_size == 0) options.image_size = kSide;
  auto decoder = ImageDecoder::Create(options);
  EXPECT_TRUE(decoder.ok()) << decoder.status();
  return std::move(decoder).value();
}

std::vector<float> Output(const ImageDecoder& decoder) {
  const size_t s = decoder.image_size();
  return std::vector<float>(3 * s * s, std::numeric_limits<float>::quiet_NaN());
}

float Normalised(uint8_t v, int c, const ImageDecoderOptions& o) {
  return (static_cast<float>(v) / 255.0f - o.mean[c]) / o.std[c];
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i)
    worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

double MeanAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += std::abs(a[i] - b[i]);
  return sum / a.size();
}

std::vector<float> ViaRgb(const ImageDecoder& decoder, const Image& image) {
  std::vector<float> out = Output(decoder);
  const Image rgb = image.channels == 3 ? image : ToRgb(image);
  EXPECT_TRUE(
      decoder.FromRgb(rgb.bytes(), rgb.width, rgb.height, out.data()).ok());
  return out;
}

std::vector<float> ViaEncoded(const ImageDecoder& decoder,
                              const std::string& bytes,
                              DecodeInfo* info = nullptr) {
  std::vector<float> out = Output(decoder);
  auto decoded = decoder.DecodeEncoded(bytes, out.data());
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  if (info != nullptr && decoded.ok()) *info = *decoded;
  return out;
}

absl::Status DecodeStatus(const ImageDecoder& decoder,
                          const std::string& bytes) {
  std::vector<float> out = Output(decoder);
  return decoder.DecodeEncoded(bytes, out.data()).status();
}

void ExpectInvalid(const absl::Status& status, const std::string& message) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(message));
}

// ---- Options. ----

TEST(ImageDecoderTest, CreateRejectsBadOptions) {
  ImageDecoderOptions options;
  ExpectInvalid(ImageDecoder::Create(options).status(),
                "image_size must be in");
  options.image_size = 9000;
  ExpectInvalid(ImageDecoder::Create(options).status(), "got 9000");
  options.image_size = kSide;
  options.std[1] = 0;
  ExpectInvalid(ImageDecoder::Create(options).status(),
                "std[1] must be finite");
  options.std[1] = 0.5f;
  options.mean[2] = std::numeric_limits<float>::quiet_NaN();
  ExpectInvalid(ImageDecoder::Create(options).status(),
                "mean[2] must be finite");
  options.mean[2] = 0.5f;
  options.max_pixels = 0;
  ExpectInvalid(ImageDecoder::Create(options).status(), "max_pixels");
}

// ---- Resize and normalisation. ----

// Exact when the bilinear weights are exact in float (S/2 and 2S sides give
// 0.25/0.75 and 0.5); otherwise w0 = 1 - w1 is rounded, v * w0 + v * w1 may
// miss v by an ulp, and PyTorch (whose arithmetic we copy) misses it too.
TEST(ImageDecoderTest, ConstantColourGivesExactConstantPerChannel) {
  ImageDecoderOptions options;
  options.mean = kImagenetMean;
  options.std = kImagenetStd;
  const auto decoder = MakeDecoder(options);
  for (const auto& [w, h, exact] :
       {std::tuple{kSide / 2, kSide * 2, true}, std::tuple{kSide, kSide, true},
        std::tuple{37, 301, false}}) {
    const Image image = Constant(w, h, {10, 128, 250});
    for (const auto& out :
         {ViaRgb(*decoder, image), ViaEncoded(*decoder, EncodePng(image))}) {
      for (int c = 0; c < 3; ++c) {
        const float want = Normalised(image.pixels[c], c, options);
        for (int i = 0; i < kSide * kSide; ++i) {
          const float got = out[c * kSide * kSide + i];
          if (exact) {
            ASSERT_EQ(got, want) << w << "x" << h << " channel " << c;
          }
          ASSERT_NEAR(got, want, 2e-6f) << w << "x" << h << " channel " << c;
        }
      }
    }
  }
}

TEST(ImageDecoderTest, FromRgbAtModelSizeIsIdentityUpToNormalisation) {
  ImageDecoderOptions options;
  options.mean = kImagenetMean;
  options.std = kImagenetStd;
  const auto decoder = MakeDecoder(options);
  const Image image = Random(kSide, kSide, 3, 7);
  const std::vector<float> out = ViaRgb(*decoder, image);
  for (int y = 0; y < kSide; ++y) {
    for (int x = 0; x < kSide; ++x) {
      for (int c = 0; c < 3; ++c) {
        ASSERT_EQ(
            out[(c * kSide + y) * kSide + x],
            Normalised(image.pixels[(y * kSide + x) * 3 + c], c, options));
      }
    }
  }
}

// Values worked out by hand from PyTorch's rule src = max(0, (dst + 0.5) *
// in / out - 0.5), neighbours clamped at the last pixel.
TEST(ImageDecoderTest, ResizeMatchesHandComputedValues) {
  ImageDecoderOptions options;
  options.mean = {0, 0, 0};
  options.std = {1, 1, 1};
  options.image_size = 4;
  const auto up = MakeDecoder(options);
  // 2x2 -> 4x4: per-axis weights (1,0), (.75,.25), (.25,.75), (0,1).
  Image small{2, 2, 3, {0, 0, 0, 40, 0, 0, 80, 0, 0, 160, 0, 0}};
  const float want_up[16] = {0,  10,    30,     40,  20, 32.5f, 57.5f, 70,
                             60, 77.5f, 112.5f, 130, 80, 100,   140,   160};
  const std::vector<float> got_up = ViaRgb(*up, small);
  for (int i = 0; i < 16; ++i)
    EXPECT_FLOAT_EQ(got_up[i] * 255, want_up[i]) << i;

  // 3 -> 2 along x: taps (.75 a0 + .25 a1) and (.25 a1 + .75 a2); 4 -> 2
  // along y: source rows 0.5 and 2.5, i.e. means of row pairs.
  options.image_size = 2;
  const auto down = MakeDecoder(options);
  Image wide{3, 4, 3, {}};
  const uint8_t rows[4][3] = {
      {0, 100, 200}, {20, 120, 220}, {40, 60, 80}, {0, 0, 0}};
  for (const auto& row : rows)
    for (uint8_t v : row) wide.pixels.insert(wide.pixels.end(), {v, 0, 0});
  const float want_down[4] = {35, 185, 22.5f, 37.5f};
  const std::vector<float> got_down = ViaRgb(*down, wide);
  for (int i = 0; i < 4; ++i)
    EXPECT_FLOAT_EQ(got_down[i] * 255, want_down[i]) << i;
}

// The whole-image resize as it was before the row-streaming resizer (commit
// 3ceeb3f, server/internal/bilinear_resize.cc), kept verbatim as the
// reference the streaming version must match bit for bit.
void ReferenceResize(const uint8_t* rgb, int width, int height, int side,
                     const decoder_internal::Normalization& norm, float* out) {
  struct Tap {
    int64_t index0 = 0, index1 = 0;
    float weight0 = 1.0f, weight1 = 0.0f;
  };
  const auto taps = [](int input_size, int output_size) {
    std::vector<Tap> taps(output_size);
    if (input_size == output_size) {
      for (int i = 0; i < output_size; ++i) taps[i].index0 = taps[i].index1 = i;
      return taps;
    }
    const float scale =
        static_cast<float>(input_size) / static_cast<float>(output_size);
    for (int i = 0; i < output_size; ++i) {
      double source = static_cast<double>(scale) * (i + 0.5) - 0.5;
      if (source < 0.0) source = 0.0;
      Tap& tap = taps[i];
      tap.index0 = static_cast<int64_t>(source);
      tap.index1 = tap.index0 + (tap.index0 < input_size - 1 ? 1 : 0);
      tap.weight1 =
          static_cast<float>(source - static_cast<double>(tap.index0));
      tap.weight0 = 1.0f - tap.weight1;
    }
    return taps;
  };
  const std::vector<Tap> x_taps = taps(width, side);
  const std::vector<Tap> y_taps = taps(height, side);
  const int64_t row_bytes = static_cast<int64_t>(width) * 3;
  const int64_t plane = static_cast<int64_t>(side) * side;
  for (int y = 0; y < side; ++y) {
    const Tap& ty = y_taps[y];
    const uint8_t* row0 = rgb + ty.index0 * row_bytes;
    const uint8_t* row1 = rgb + ty.index1 * row_bytes;
    for (int x = 0; x < side; ++x) {
      const Tap& tx = x_taps[x];
      const int64_t x0 = tx.index0 * 3;
      const int64_t x1 = tx.index1 * 3;
      for (int c = 0; c < 3; ++c) {
        const float top = static_cast<float>(row0[x0 + c]) * tx.weight0 +
                          static_cast<float>(row0[x1 + c]) * tx.weight1;
        const float bottom = static_cast<float>(row1[x0 + c]) * tx.weight0 +
                             static_cast<float>(row1[x1 + c]) * tx.weight1;
        const float value = top * ty.weight0 + bottom * ty.weight1;
        out[c * plane + static_cast<int64_t>(y) * side + x] =
            (value / 255.0f - norm.mean[c]) / norm.std[c];
      }
    }
  }
}

// Up- and downscaling, odd and prime sizes, 1-pixel sides, equal sizes: the
// row-streaming resizer (fed row by row, and through ResizeBilinearToChw)
// writes exactly the floats the whole-image reference writes.
TEST(ImageDecoderTest, RowResizerMatchesWholeImageResizeBitForBit) {
  const decoder_internal::Normalization norm{kImagenetMean, kImagenetStd};
  struct Case {
    int width, height, side;
  };
  uint32_t seed = 100;
  for (const Case& c :
       {Case{640, 480, 224}, Case{97, 61, 224}, Case{224, 224, 224},
        Case{1, 1, 224}, Case{1, 300, 7}, Case{300, 1, 7}, Case{3001, 17, 96},
        Case{13, 2999, 96}, Case{225, 223, 224}, Case{5, 5, 1},
        Case{448, 896, 224}, Case{37, 301, 518}}) {
    const Image image = Random(c.width, c.height, 3, ++seed);
    const size_t count = 3 * static_cast<size_t>(c.side) * c.side;
    std::vector<float> want(count), whole(count, -1), rows(count, -1);
    ReferenceResize(image.pixels.data(), c.width, c.height, c.side, norm,
                    want.data());
    decoder_internal::ResizeBilinearToChw(image.pixels.data(), c.width,
                                          c.height, c.side, norm, whole.data());
    decoder_internal::BilinearRowResizer resizer(c.width, c.height, c.side,
                                                 norm, rows.data());
    for (int y = 0; y < c.height; ++y) {  // All rows, as the PNG path does.
      resizer.PushRow(&image.pixels[static_cast<size_t>(y) * c.width * 3]);
    }
    EXPECT_TRUE(resizer.done());
    const std::string label =
        absl::StrCat(c.width, "x", c.height, "->", c.side);
    EXPECT_EQ(std::memcmp(whole.data(), want.data(), count * 4), 0) << label;
    EXPECT_EQ(std::memcmp(rows.data(), want.data(), count * 4), 0) << label;
  }
}

// ---- JPEG. ----

TEST(ImageDecoderTest, JpegOfSmoothGradientIsCloseToItsSource) {
  const auto decoder = MakeDecoder();
  const std::pair<int, int> sizes[] = {
      {300, 200}, {97, 61}, {224, 224}, {641, 479}};
  for (const auto& [w, h] : sizes) {
    const Image image = Gradient(w, h);
    DecodeInfo info;
    const auto got = ViaEncoded(*decoder, EncodeJpeg(image), &info);
    EXPECT_EQ(info.format, ImageFormat::kJpeg);
    EXPECT_EQ(info.source_width, w);
    EXPECT_EQ(info.source_height, h);
    // At std 0.5 one grey level is 0.0078: q95 4:4:4 JPEG of a gradient is
    // off by about one level on average and by a few at worst.
    const auto want = ViaRgb(*decoder, image);
    EXPECT_LT(MaxAbsDiff(got, want), 0.06f) << w << "x" << h;
    EXPECT_LT(MeanAbsDiff(got, want), 0.01) << w << "x" << h;
  }
}

TEST(ImageDecoderTest, GreyscaleJpegIsReplicatedToThreeChannels) {
  const auto decoder = MakeDecoder();
  const Image grey = Gradient(150, 260, 1);
  const auto got = ViaEncoded(*decoder, EncodeJpeg(grey));
  const size_t plane = kSide * kSide;
  for (size_t i = 0; i < plane; ++i) {
    ASSERT_EQ(got[i], got[plane + i]);
    ASSERT_EQ(got[i], got[2 * plane + i]);
  }
  EXPECT_LT(MaxAbsDiff(got, ViaRgb(*decoder, grey)), 0.04f);
}

TEST(ImageDecoderTest, DctScalingPicksSmallestScaleStillAtLeastS) {
  const auto scaled = MakeDecoder();
  ImageDecoderOptions full_options;
  full_options.image_size = kSide;
  full_options.jpeg_dct_scaling = false;
  const auto full = MakeDecoder(full_options);
  struct Case {
    int w, h, want_w, want_h;
  };
  for (const Case& c : {Case{1920, 1080, 480, 270}, Case{1000, 700, 500, 350},
                        Case{1792, 1800, 224, 225}, Case{448, 447, 224, 224},
                        Case{446, 600, 446, 600}, Case{100, 100, 100, 100},
                        Case{3001, 2001, 376, 251}}) {
    const std::string jpeg = EncodeJpeg(Gradient(c.w, c.h), 95, TJSAMP_420);
    DecodeInfo info, full_info;
    const auto got = ViaEncoded(*scaled, jpeg, &info);
    EXPECT_EQ(info.decoded_width, c.want_w) << c.w << "x" << c.h;
    EXPECT_EQ(info.decoded_height, c.want_h) << c.w << "x" << c.h;
    const auto want = ViaEncoded(*full, jpeg, &full_info);
    EXPECT_EQ(full_info.decoded_width, c.w);
    EXPECT_EQ(full_info.decoded_height, c.h);
    // DCT scaling averages where bilinear samples: close, not equal.
    EXPECT_LT(MaxAbsDiff(got, want), 0.06f) << c.w << "x" << c.h;
    EXPECT_LT(MeanAbsDiff(got, want), 0.01) << c.w << "x" << c.h;
    std::printf("%dx%d: DCT-scaled vs full decode max %.4f mean %.5f\n", c.w,
                c.h, MaxAbsDiff(got, want), MeanAbsDiff(got, want));
  }
}

TEST(ImageDecoderTest, RejectsTruncatedJpeg) {
  const auto decoder = MakeDecoder();
  const std::string jpeg = EncodeJpeg(Gradient(320, 240));
  const absl::Status truncated =
      DecodeStatus(*decoder, jpeg.substr(0, jpeg.size() / 2));
  ExpectInvalid(truncated, "corrupt JPEG data");
  EXPECT_THAT(std::string(truncated.message()),
              HasSubstr("Premature end of JPEG file"));
  ExpectInvalid(DecodeStatus(*decoder, jpeg.substr(0, 40)), "no image frame");
}

// Adobe-inverted CMYK (255 = no ink) as PIL converts it: R = C * K / 255.
std::array<uint8_t, 3> AdobeCmykToRgb(const uint8_t* cmyk) {
  std::array<uint8_t, 3> rgb;
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<uint8_t>(std::lround(cmyk[c] * cmyk[3] / 255.0));
  }
  return rgb;
}

Image AdobeCmykToRgb(const Image& cmyk) {
  Image rgb{cmyk.width, cmyk.height, 3, {}};
  for (size_t i = 0; i < cmyk.pixels.size(); i += 4) {
    const auto pixel = AdobeCmykToRgb(&cmyk.pixels[i]);
    rgb.pixels.insert(rgb.pixels.end(), pixel.begin(), pixel.end());
  }
  return rgb;
}

// Smooth in every channel, ink and black both varying.
Image CmykGradient(int width, int height) {
  Image image{width, height, 4, {}};
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const float u = static_cast<float>(x) / std::max(1, width - 1);
      const float v = static_cast<float>(y) / std::max(1, height - 1);
      const float cmyk[4] = {255 * u, 255 * v, 255 * (1 - u), 255 - 120 * v};
      for (float value : cmyk)
        image.pixels.push_back(static_cast<uint8_t>(std::lround(value)));
    }
  }
  return image;
}

// The three ways a 4-component JPEG arrives: CMYK and YCCK from libjpeg
// (Photoshop writes both, with the Adobe marker), YCCK from TurboJPEG.
std::vector<std::pair<std::string, std::string>> CmykJpegs(const Image& cmyk) {
  return {{"CMYK", EncodeCmykJpeg(cmyk, JCS_CMYK)},
          {"YCCK", EncodeCmykJpeg(cmyk, JCS_YCCK)},
          {"TurboJPEG YCCK", EncodeJpeg(cmyk)}};
}

TEST(ImageDecoderTest, CmykAndYcckJpegsDecodeAsAdobeInvertedCmyk) {
  // 64-px patches: white, cyan, magenta / yellow, black, a mixed colour
  // (141, 71, 35). Their centres are far from the JPEG ringing at the edges.
  const uint8_t patches[6][4] = {{255, 255, 255, 255}, {0, 255, 255, 255},
                                 {255, 0, 255, 255},   {255, 255, 0, 255},
                                 {255, 255, 255, 0},   {200, 100, 50, 180}};
  Image cmyk{192, 128, 4, {}};
  for (int y = 0; y < cmyk.height; ++y) {
    for (int x = 0; x < cmyk.width; ++x) {
      const uint8_t* patch = patches[(y / 64) * 3 + x / 64];
      cmyk.pixels.insert(cmyk.pixels.end(), patch, patch + 4);
    }
  }
  for (const auto& [name, jpeg] : CmykJpegs(cmyk)) {
    EXPECT_EQ(JpegColorspace(jpeg), name == "CMYK" ? TJCS_CMYK : TJCS_YCCK);
    auto rgb = decoder_internal::DecodeJpeg(jpeg, 1 << 20, 0);
    ASSERT_TRUE(rgb.ok()) << name << ": " << rgb.status();
    ASSERT_EQ(rgb->pixels.size(), 192u * 128 * 3);
    for (int p = 0; p < 6; ++p) {
      const int x = (p % 3) * 64 + 32, y = (p / 3) * 64 + 32;
      const auto want = AdobeCmykToRgb(patches[p]);
      for (int c = 0; c < 3; ++c) {
        EXPECT_NEAR(rgb->pixels[(y * 192 + x) * 3 + c], want[c], 3)
            << name << " patch " << p << " channel " << c;
      }
    }
  }
  // Whole pipeline on a smooth image: as close to the exact conversion as
  // an RGB JPEG is to its source (JpegOfSmoothGradientIsCloseToItsSource).
  const auto decoder = MakeDecoder();
  const Image gradient = CmykGradient(300, 200);
  const auto want = ViaRgb(*decoder, AdobeCmykToRgb(gradient));
  for (const auto& [name, jpeg] : CmykJpegs(gradient)) {
    const auto got = ViaEncoded(*decoder, jpeg);
    EXPECT_LT(MaxAbsDiff(got, want), 0.06f) << name;
    EXPECT_LT(MeanAbsDiff(got, want), 0.01) << name;
  }
}

TEST(ImageDecoderTest, CmykJpegsUseDctScaling) {
  const auto scaled = MakeDecoder();
  ImageDecoderOptions full_options;
  full_options.jpeg_dct_scaling = false;
  const auto full = MakeDecoder(full_options);
  for (const auto& [name, jpeg] : CmykJpegs(CmykGradient(1000, 700))) {
    DecodeInfo info;
    const auto got = ViaEncoded(*scaled, jpeg, &info);
    EXPECT_EQ(info.decoded_width, 500) << name;
    EXPECT_EQ(info.decoded_height, 350) << name;
    const auto want = ViaEncoded(*full, jpeg);
    EXPECT_LT(MaxAbsDiff(got, want), 0.06f) << name;
    EXPECT_LT(MeanAbsDiff(got, want), 0.01) << name;
  }
}

// Some cameras append data (thumbnails, vendor blocks) after the EOI marker;
// libjpeg stops at EOI, so this is not a warning and must decode.
TEST(ImageDecoderTest, AcceptsBytesAfterJpegEnd) {
  const auto decoder = MakeDecoder();
  const std::string jpeg = EncodeJpeg(Gradient(320, 240));
  EXPECT_EQ(ViaEncoded(*decoder, jpeg + std::string(500, '\x5a')),
            ViaEncoded(*decoder, jpeg));
}

// A real header claiming 65000x65000: rejected from the header alone.
TEST(ImageDecoderTest, RejectsHugeJpegBeforeAllocating) {
  const auto decoder = MakeDecoder();
  std::string jpeg = EncodeJpeg(Gradient(64, 48));
  const size_t sof = jpeg.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  PutBigEndian(jpeg, sof + 5, 65000, 2);  // Height.
  PutBigEndian(jpeg, sof + 7, 65000, 2);  // Width.
  ExpectInvalid(DecodeStatus(*decoder, jpeg),
                "image is 65000x65000 = 4225000000 pixels; the limit is "
                "40000000 (max_pixels)");
  PutBigEndian(jpeg, sof + 5, 0, 2);
  EXPECT_EQ(DecodeStatus(*decoder, jpeg).code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- PNG. ----

TEST(ImageDecoderTest, PngVariantsDecodeToTheirRgbPixels) {
  const auto decoder = MakeDecoder();
  const Image rgb = Random(123, 45, 3, 1), rgba = Random(64, 300, 4, 2),
              grey = Random(200, 201, 1, 3);
  for (const Image* image : {&rgb, &rgba, &grey}) {
    DecodeInfo info;
    const auto got = ViaEncoded(*decoder, EncodePng(*image), &info);
    EXPECT_EQ(info.format, ImageFormat::kPng);
    EXPECT_EQ(info.decoded_width, image->width);
    EXPECT_EQ(MaxAbsDiff(got, ViaRgb(*decoder, *image)), 0) << image->channels;
  }
  // 16-bit: v * 257 reduces to v whatever the rounding rule.
  std::vector<uint16_t> deep;
  for (uint8_t v : rgb.pixels) deep.push_back(static_cast<uint16_t>(v * 257));
  const auto got16 = ViaEncoded(
      *decoder, EncodePng(deep.data(), deep.size() * 2, rgb.width, rgb.height,
                          SPNG_COLOR_TYPE_TRUECOLOR, 16));
  EXPECT_EQ(MaxAbsDiff(got16, ViaRgb(*decoder, rgb)), 0);
  // Palette: four colours, indices 0..3.
  spng_plte palette{};
  palette.n_entries = 4;
  const uint8_t colours[4][3] = {
      {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 99, 199}};
  Image expanded{50, 70, 3, {}};
  std::vector<uint8_t> indices;
  for (int i = 0; i < 4; ++i)
    palette.entries[i] = {colours[i][0], colours[i][1], colours[i][2], 255};
  for (int i = 0; i < 50 * 70; ++i) {
    indices.push_back(static_cast<uint8_t>((i / 7 + i / 50) % 4));
    expanded.pixels.insert(expanded.pixels.end(), colours[indices.back()],
                           colours[indices.back()] + 3);
  }
  const auto got_plte =
      ViaEncoded(*decoder, EncodePng(indices.data(), indices.size(), 50, 70,
                                     SPNG_COLOR_TYPE_INDEXED, 8, &palette));
  EXPECT_EQ(MaxAbsDiff(got_plte, ViaRgb(*decoder, expanded)), 0);
}

TEST(ImageDecoderTest, RejectsTruncatedAndCorruptPng) {
  const auto decoder = MakeDecoder();
  const std::string png = EncodePng(Random(100, 80, 3, 4));
  ExpectInvalid(DecodeStatus(*decoder, png.substr(0, png.size() / 2)),
                "invalid PNG data");
  ExpectInvalid(DecodeStatus(*decoder, png.substr(0, 20)),
                "invalid PNG header");
  std::string flipped = png;
  flipped[png.find("IDAT") + 40] ^= 0x10;  // Inside the data: CRC mismatch.
  const absl::Status crc = DecodeStatus(*decoder, flipped);
  ExpectInvalid(crc, "invalid PNG");
  EXPECT_THAT(std::string(crc.message()), HasSubstr("checksum"));
}

// IHDR rewritten to 100000x100000 with a valid CRC, so only our limit stops it.
TEST(ImageDecoderTest, RejectsHugePngBeforeAllocating) {
  const auto decoder = MakeDecoder();
  std::string png = EncodePng(Random(16, 16, 3, 5));
  PutBigEndian(png, 16, 100000, 4);
  PutBigEndian(png, 20, 100000, 4);
  PutBigEndian(png, 29, Crc32(png, 12, 29), 4);
  ExpectInvalid(DecodeStatus(*decoder, png),
                "image is 100000x100000 = 10000000000 pixels; the limit is "
                "40000000 (max_pixels)");
}

// Adam7 PNGs take the whole-image path, the others stream row by row: same
// pixels, same floats.
TEST(ImageDecoderTest, InterlacedAndStreamedPngsDecodeIdentically) {
  const auto decoder = MakeDecoder();
  for (const Image& image :
       {Random(123, 45, 3, 11), Random(64, 300, 4, 12), Random(200, 201, 1, 13),
        Random(1, 1, 3, 14), Random(7, 3, 3, 15)}) {
    const auto streamed = ViaEncoded(*decoder, EncodePng(image));
    const auto interlaced = ViaEncoded(*decoder, EncodePng(image, true));
    EXPECT_EQ(streamed, interlaced) << image.width << "x" << image.height;
    EXPECT_EQ(MaxAbsDiff(streamed, ViaRgb(*decoder, image)), 0);
  }
}

// Every chunk's CRC is checked, up to IEND: critical and ancillary, before
// and after the image data. libspng alone would discard an ancillary chunk
// with a bad CRC and would stop reading once the last row was decoded.
TEST(ImageDecoderTest, RejectsPngCrcErrorsNamingTheChunk) {
  const auto decoder = MakeDecoder();
  std::string png = EncodePng(Random(100, 80, 3, 4));  // Three IDATs.
  png = InsertChunk(png, "IDAT", "tEXt", std::string("Title\0camera 7", 14));
  png = InsertChunk(png, "IDAT", "zTXt", ZtxtData("exposure 1/250"));
  png = InsertChunk(png, "IEND", "tEXt", std::string("Comment\0late", 12));
  ASSERT_TRUE(DecodeStatus(*decoder, png).ok());
  ASSERT_TRUE(DecodeStatus(*decoder, png + "trailing bytes").ok());
  const std::vector<size_t> idat = Chunks(png, "IDAT");
  const std::vector<size_t> text = Chunks(png, "tEXt");
  ASSERT_EQ(idat.size(), 3u);
  ASSERT_EQ(text.size(), 2u);
  ASSERT_GT(text[1], idat.back());
  const size_t iend = Chunks(png, "IEND").at(0);
  const std::pair<std::string, size_t> chunks[] = {
      {"IHDR", 8},
      {"tEXt", text[0]},
      {"zTXt", Chunks(png, "zTXt").at(0)},
      {"IDAT", idat[0]},
      {"IDAT", idat.back()},
      {"tEXt", text[1]},  // After the image data.
      {"IEND", iend}};
  for (const auto& [type, at] : chunks) {
    uint32_t length = 0;
    for (int i = 0; i < 4; ++i)
      length = (length << 8) | static_cast<uint8_t>(png[at + i]);
    std::string damaged = png;
    damaged[at + 8 + length + 3] ^= 0x01;  // The CRC's last byte.
    ExpectInvalid(DecodeStatus(*decoder, damaged),
                  absl::StrCat("the ", type, " chunk at byte ", at,
                               " fails its CRC checksum (stored "));
  }
  ExpectInvalid(DecodeStatus(*decoder, png.substr(0, iend)),
                "without an IEND chunk");
}

// 36 MP of black compress to 35 KB; decoded whole they would be a 108 MB
// RGB buffer. Streamed, the decode holds a row or two.
TEST(ImageDecoderTest, LargePngDecodesInMemoryProportionalToItsWidth) {
  if (!HeapPeak::available()) GTEST_SKIP() << "no heap measurement here";
  const std::string png = EncodeBlackPng(6000, 6000);
  ImageDecoderOptions options;
  options.mean = kImagenetMean;
  options.std = kImagenetStd;
  const auto decoder = MakeDecoder(options);
  std::vector<float> out = Output(*decoder);
  int64_t peak = 0;
  {
    HeapPeak heap;
    ASSERT_TRUE(decoder->DecodeEncoded(png, out.data()).ok());
    peak = heap.bytes();
  }
  std::printf("6000x6000 PNG (%zu bytes): decode heap peak %lld bytes\n",
              png.size(), static_cast<long long>(peak));
  // An 18 KB RGB row, libspng's two 18 KB scanlines, ~45 KB of libspng and
  // zlib state, ~16 KB of resizer.
  EXPECT_LT(peak, 256 << 10);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(out[c * kSide * kSide + 1234], Normalised(0, c, options));
  }
  const auto cost = decoder->ProbeEncoded(png);
  ASSERT_TRUE(cost.ok()) << cost.status();
  EXPECT_GE(cost->peak_bytes, static_cast<uint64_t>(peak));
}

// ---- Rejections common to all inputs. ----

TEST(ImageDecoderTest, RejectsBadEncodedInputsWithPreciseMessages) {
  ImageDecoderOptions options;
  options.max_encoded_bytes = 1000;
  options.max_pixels = 1000;
  const auto decoder = MakeDecoder(options);
  ExpectInvalid(DecodeStatus(*decoder, ""), "image is empty");
  const std::string gif("GIF89a\x01\x00\x01\x00 rest", 14);
  ExpectInvalid(DecodeStatus(*decoder, gif), "unknown image format");
  ExpectInvalid(DecodeStatus(*decoder, gif),
                "first bytes are 47 49 46 38 39 61 01 00");
  ExpectInvalid(DecodeStatus(*decoder, std::string(1001, 'x')),
                "image is 1001 bytes; the limit is 1000 (max_encoded_bytes)");
  const Image image = Constant(40, 30, {1, 2, 3});
  const std::string limit =
      "image is 40x30 = 1200 pixels; the limit is 1000 (max_pixels)";
  ExpectInvalid(DecodeStatus(*decoder, EncodeJpeg(image)), limit);
  ExpectInvalid(DecodeStatus(*decoder, EncodePng(image)), limit);
  std::vector<float> out = Output(*decoder);
  ExpectInvalid(decoder->FromRgb(image.bytes(), 40, 30, out.data()), limit);
}

TEST(ImageDecoderTest, FromRgbRejectsBadDimensionsAndSizes) {
  const auto decoder = MakeDecoder();
  std::vector<float> out = Output(*decoder);
  ExpectInvalid(decoder->FromRgb("", 0, 5, out.data()),
                "zero width or height: 0x5");
  ExpectInvalid(decoder->FromRgb("abc", 1, -1, out.data()),
                "zero width or height");
  ExpectInvalid(decoder->FromRgb(std::string(10, 'a'), 2, 2, out.data()),
                "RGB buffer is 10 bytes; 2x2 RGB needs 2*2*3 = 12");
}

TEST(ImageDecoderTest, FromTensorChecksShapeBytesAndValues) {
  ImageDecoderOptions options;
  options.image_size = 8;
  const auto decoder = MakeDecoder(options);
  std::vector<float> values(3 * 8 * 8);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.01f * i - 1;
  const std::string data(reinterpret_cast<const char*>(values.data()),
                         values.size() * 4);
  std::vector<float> out = Output(*decoder);
  ASSERT_TRUE(decoder->FromTensor({3, 8, 8}, data, out.data()).ok());
  EXPECT_EQ(out, values);
  ASSERT_TRUE(decoder->FromTensor({1, 3, 8, 8}, data, out.data()).ok());
  ExpectInvalid(decoder->FromTensor({1, 3, 8}, data, out.data()),
                "tensor shape [1,3,8] does not match the model's [3,8,8]");
  ExpectInvalid(decoder->FromTensor({2, 3, 8, 8}, data, out.data()),
                "[2,3,8,8]");
  ExpectInvalid(decoder->FromTensor({3, 8, 8}, data.substr(4), out.data()),
                "tensor data is 764 bytes; float32 [3,8,8] needs 768");
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity()}) {
    std::vector<float> poisoned = values;
    poisoned[2 * 64 + 3 * 8 + 5] = bad;
    const std::string bytes(reinterpret_cast<const char*>(poisoned.data()),
                            poisoned.size() * 4);
    ExpectInvalid(decoder->FromTensor({3, 8, 8}, bytes, out.data()),
                  "at channel 2, row 3, column 5 is not finite");
  }
}

// ---- Cost probe. ----

// Encoded images of every kind the probe models, with a label.
std::vector<std::pair<std::string, std::string>> ProbeCorpus() {
  std::vector<uint16_t> deep(300 * 200 * 3);
  for (size_t i = 0; i < deep.size(); ++i) deep[i] = (i * 2654435761u) >> 16;
  std::string with_text = EncodePng(Random(300, 200, 3, 22));
  with_text = InsertChunk(with_text, "IDAT", "tEXt",
                          std::string("Title\0camera 7", 14));
  with_text =
      InsertChunk(with_text, "IDAT", "zTXt", ZtxtData(std::string(50000, 'x')));
  return {
      {"JPEG 4:2:0 1920x1080",
       EncodeJpeg(Gradient(1920, 1080), 90, TJSAMP_420)},
      {"JPEG 4:4:4 641x479", EncodeJpeg(Gradient(641, 479))},
      {"JPEG grey 150x260", EncodeJpeg(Gradient(150, 260, 1))},
      {"JPEG progressive 4:4:4 1000x700",
       EncodeJpeg(Gradient(1000, 700), 90, TJSAMP_444, TJFLAG_PROGRESSIVE)},
      {"JPEG progressive 4:2:0 3001x2001",
       EncodeJpeg(Gradient(3001, 2001), 90, TJSAMP_420, TJFLAG_PROGRESSIVE)},
      {"JPEG CMYK 300x200", EncodeCmykJpeg(CmykGradient(300, 200), JCS_CMYK)},
      {"JPEG YCCK 1000x700", EncodeJpeg(CmykGradient(1000, 700))},
      {"PNG RGB8 300x200", EncodePng(Random(300, 200, 3, 20))},
      {"PNG RGBA8 64x300", EncodePng(Random(64, 300, 4, 21))},
      {"PNG RGB16 300x200", EncodePng(deep.data(), deep.size() * 2, 300, 200,
                                      SPNG_COLOR_TYPE_TRUECOLOR, 16)},
      {"PNG grey8 2000x50", EncodePng(Random(2000, 50, 1, 23))},
      {"PNG interlaced RGB8 300x200", EncodePng(Random(300, 200, 3, 24), true)},
      {"PNG RGB8 + tEXt + zTXt", with_text},
      {"PNG black 3000x2000", EncodeBlackPng(3000, 2000)},
  };
}

TEST(ImageDecoderTest, ProbeReportsTheSizesDecodeReports) {
  ImageDecoderOptions unscaled_options;
  unscaled_options.jpeg_dct_scaling = false;
  for (const auto& decoder : {MakeDecoder(), MakeDecoder(unscaled_options)}) {
    for (const auto& [label, bytes] : ProbeCorpus()) {
      DecodeInfo info;
      ViaEncoded(*decoder, bytes, &info);
      const auto cost = decoder->ProbeEncoded(bytes);
      ASSERT_TRUE(cost.ok()) << label << ": " << cost.status();
      EXPECT_EQ(cost->info.format, info.format) << label;
      EXPECT_EQ(cost->info.source_width, info.source_width) << label;
      EXPECT_EQ(cost->info.source_height, info.source_height) << label;
      EXPECT_EQ(cost->info.decoded_width, info.decoded_width) << label;
      EXPECT_EQ(cost->info.decoded_height, info.decoded_height) << label;
    }
  }
}

// The probe's estimate against the heap a decode really takes (HeapPeak
// counts every allocation, libjpeg-turbo's and libspng's included).
TEST(ImageDecoderTest, ProbePeakBytesBoundMeasuredHeap) {
  if (!HeapPeak::available()) GTEST_SKIP() << "no heap measurement here";
  ImageDecoderOptions unscaled_options;
  unscaled_options.jpeg_dct_scaling = false;
  for (const auto& decoder : {MakeDecoder(), MakeDecoder(unscaled_options)}) {
    std::vector<float> out = Output(*decoder);
    for (const auto& [label, bytes] : ProbeCorpus()) {
      const auto cost = decoder->ProbeEncoded(bytes);
      ASSERT_TRUE(cost.ok()) << label << ": " << cost.status();
      int64_t measured = 0;
      {
        HeapPeak heap;
        ASSERT_TRUE(decoder->DecodeEncoded(bytes, out.data()).ok()) << label;
        measured = heap.bytes();
      }
      const auto estimate = static_cast<int64_t>(cost->peak_bytes);
      std::printf("%-34s %4dx%-4d heap %9lld  estimate %9lld (%.2fx)\n",
                  label.c_str(), cost->info.decoded_width,
                  cost->info.decoded_height, static_cast<long long>(measured),
                  static_cast<long long>(estimate),
                  static_cast<double>(estimate) / measured);
      EXPECT_GE(estimate, measured) << label;
      // Honest, not merely safe: within 3x (plus the fixed allowances for
      // codec state, which dominate small images).
      EXPECT_LE(estimate, 3 * measured + (160 << 10)) << label;
    }
  }
}

TEST(ImageDecoderTest, ProbeWorkOrdersDecodes) {
  const auto scaled = MakeDecoder();
  ImageDecoderOptions unscaled_options;
  unscaled_options.jpeg_dct_scaling = false;
  const auto unscaled = MakeDecoder(unscaled_options);
  const auto work = [](const ImageDecoder& decoder, const std::string& bytes) {
    const auto cost = decoder.ProbeEncoded(bytes);
    EXPECT_TRUE(cost.ok()) << cost.status();
    return cost.ok() ? cost->work_pixels : 0;
  };
  const Image image = Gradient(1920, 1080);
  const std::string baseline = EncodeJpeg(image, 90, TJSAMP_420);
  // The unit: a full-size baseline 4:2:0 JPEG costs its pixel count.
  EXPECT_EQ(work(*unscaled, baseline), 1920u * 1080);
  EXPECT_LT(work(*scaled, baseline), work(*unscaled, baseline));
  EXPECT_LT(work(*unscaled, EncodeJpeg(Gradient(1280, 720), 90, TJSAMP_420)),
            work(*unscaled, baseline));
  EXPECT_GT(work(*unscaled, EncodeJpeg(image, 90, TJSAMP_444)),
            work(*unscaled, baseline));
  EXPECT_GT(
      work(*unscaled, EncodeJpeg(image, 90, TJSAMP_420, TJFLAG_PROGRESSIVE)),
      work(*unscaled, baseline));
  EXPECT_GT(work(*unscaled, EncodePng(Random(1920, 1080, 3, 5))),
            work(*unscaled, baseline));
}

// Same checks, same words: a scheduler that probes first tells the client
// exactly what the decode would have.
TEST(ImageDecoderTest, ProbeRejectsWhatDecodeRejectsWithTheSameMessage) {
  ImageDecoderOptions options;
  options.max_encoded_bytes = 100000;
  options.max_pixels = 100000;
  const auto decoder = MakeDecoder(options);
  const std::string jpeg = EncodeJpeg(Gradient(64, 48));
  std::string huge_jpeg = jpeg;
  const size_t sof = huge_jpeg.find("\xFF\xC0");
  PutBigEndian(huge_jpeg, sof + 5, 65000, 2);
  PutBigEndian(huge_jpeg, sof + 7, 65000, 2);
  std::string huge_png = EncodePng(Random(16, 16, 3, 5));
  PutBigEndian(huge_png, 16, 100000, 4);
  PutBigEndian(huge_png, 20, 100000, 4);
  PutBigEndian(huge_png, 29, Crc32(huge_png, 12, 29), 4);
  const std::string rejected[] = {"",
                                  std::string("GIF89a\x01\x00\x01\x00", 10),
                                  std::string(100001, 'x'),
                                  jpeg.substr(0, 40),
                                  jpeg.substr(0, 3),
                                  huge_jpeg,
                                  EncodeJpeg(Gradient(400, 300)),
                                  EncodePng(Random(400, 300, 1, 3)),
                                  EncodePng(Random(16, 16, 3, 5)).substr(0, 20),
                                  huge_png};
  for (const std::string& bytes : rejected) {
    const absl::Status decoded = DecodeStatus(*decoder, bytes);
    ASSERT_EQ(decoded.code(), absl::StatusCode::kInvalidArgument) << decoded;
    EXPECT_EQ(decoder->ProbeEncoded(bytes).status(), decoded);
  }
}

// Smooth shading, a few edges and fine texture: JPEG q90 4:2:0 gives ~2
// bits per pixel, as camera frames do.
Image PhotoLike(int width, int height, int channels = 3) {
  Image image{width, height, channels, {}};
  image.pixels.resize(static_cast<size_t>(width) * height * channels);
  std::mt19937 rng(7);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const bool object = (x / 97 + y / 61) % 5 == 0;
      for (int c = 0; c < channels; ++c) {
        const double v = 128 + 60 * std::sin(x * 0.004 * (c + 1)) +
                         40 * std::cos(y * 0.006) + (object ? 30 : 0) +
                         static_cast<int>(rng() % 9) - 4;
        image.pixels[(static_cast<size_t>(y) * width + x) * channels + c] =
            static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return image;
}

// Not a test: the figures behind the work-pixel model. Run with
//   image_decoder_test --gtest_also_run_disabled_tests
//                      --gtest_filter='*DecodeSpeed*'
// Prints the best of 5 DecodeEncoded() times per source pixel and per work
// pixel; a good model keeps the last column near the baseline 4:2:0 figure.
// glibc is told to keep freed memory, so that the times are CPU, not the
// page faults of a fresh mmap per large buffer (which cost ~25 us per 4 KiB
// page in the sandbox these figures come from: 230 ms for 36 MB).
TEST(ImageDecoderTest, DISABLED_DecodeSpeedPerPixel) {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  ImageDecoderOptions options;
  options.max_encoded_bytes = 64 << 20;
  const auto scaled = MakeDecoder(options);
  options.jpeg_dct_scaling = false;
  const auto unscaled = MakeDecoder(options);
  std::vector<float> out = Output(*scaled);
  for (const auto& [w, h] :
       {std::pair{1280, 720}, std::pair{1920, 1080}, std::pair{4000, 3000}}) {
    const Image photo = PhotoLike(w, h);
    const std::pair<std::string, std::string> images[] = {
        {"JPEG 4:2:0", EncodeJpeg(photo, 90, TJSAMP_420)},
        {"JPEG 4:4:4", EncodeJpeg(photo, 90, TJSAMP_444)},
        {"JPEG grey", EncodeJpeg(PhotoLike(w, h, 1), 90)},
        {"JPEG progressive 4:2:0",
         EncodeJpeg(photo, 90, TJSAMP_420, TJFLAG_PROGRESSIVE)},
        {"JPEG progressive 4:4:4",
         EncodeJpeg(photo, 90, TJSAMP_444, TJFLAG_PROGRESSIVE)},
        {"JPEG YCCK", EncodeJpeg(PhotoLike(w, h, 4), 90)},
        {"PNG RGB8", EncodePng(photo)},
        {"PNG RGBA8", EncodePng(PhotoLike(w, h, 4))},
        {"PNG grey8", EncodePng(PhotoLike(w, h, 1))},
        {"PNG RGB8 interlaced", EncodePng(photo, true)},
        {"PNG RGB8 black", EncodeBlackPng(w, h)}};
    for (const auto& [label, bytes] : images) {
      for (const ImageDecoder* decoder : {unscaled.get(), scaled.get()}) {
        const auto cost = decoder->ProbeEncoded(bytes);
        ASSERT_TRUE(cost.ok()) << cost.status();
        if (decoder == scaled.get() &&
            cost->info.decoded_width == cost->info.source_width) {
          continue;  // Not DCT-scaled: the same decode as unscaled.
        }
        double best_ns = 1e30;
        for (int run = 0; run < 5; ++run) {
          const auto start = std::chrono::steady_clock::now();
          ASSERT_TRUE(decoder->DecodeEncoded(bytes, out.data()).ok());
          best_ns =
              std::min(best_ns, std::chrono::duration<double, std::nano>(
                                    std::chrono::steady_clock::now() - start)
                                    .count());
        }
        std::printf(
            "%4dx%-4d %-23s 1/%d %5.2f bits/px  %6.2f ns/px  %6.2f "
            "ns/work px\n",
            w, h, label.c_str(),
            cost->info.source_width / std::max(1, cost->info.decoded_width),
            8.0 * bytes.size() / (static_cast<double>(w) * h),
            best_ns / (static_cast<double>(w) * h),
            best_ns / static_cast<double>(cost->work_pixels));
      }
    }
  }
}

// ---- Robustness. ----

// Garbage, truncations and bit flips of valid files: each must come back OK
// or INVALID_ARGUMENT, never crash (run under ASan to make this stronger).
TEST(ImageDecoderTest, MutatedInputsNeverCrash) {
  ImageDecoderOptions options;
  options.image_size = 32;
  const auto decoder = MakeDecoder(options);
  const std::string seeds[] = {
      EncodeJpeg(Gradient(90, 70)),
      EncodeJpeg(Gradient(40, 50, 1)),
      EncodeJpeg(Gradient(300, 200), 80, TJSAMP_420),
      EncodeJpeg(Gradient(60, 50), 90, TJSAMP_420, TJFLAG_PROGRESSIVE),
      EncodeCmykJpeg(CmykGradient(40, 30), JCS_CMYK),
      EncodeJpeg(CmykGradient(30, 40)),
      EncodePng(Random(33, 21, 3, 6)),
      EncodePng(Random(20, 20, 4, 7)),
      EncodePng(Random(9, 40, 1, 8)),
      EncodePng(Random(17, 19, 3, 9), true)};
  std::mt19937 rng(42);
  int ok = 0, rejected = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string bytes = seeds[i % std::size(seeds)];
    switch (i % 4) {
      case 0:  // Flip a few random bits.
        for (int k = 1 + rng() % 8; k > 0; --k)
          bytes[rng() % bytes.size()] ^= 1 << (rng() % 8);
        break;
      case 1:  // Truncate anywhere.
        bytes.resize(rng() % bytes.size());
        break;
      case 2:  // Overwrite a run of bytes with garbage.
        for (size_t at = rng() % bytes.size(), n = 1 + rng() % 64;
             n > 0 && at < bytes.size(); --n, ++at)
          bytes[at] = static_cast<char>(rng());
        break;
      default:  // Pure garbage behind a valid magic number.
        bytes.resize(std::min<size_t>(bytes.size(), 8));
        for (int n = rng() % 2000; n > 0; --n)
          bytes.push_back(static_cast<char>(rng()));
    }
    const absl::Status status = DecodeStatus(*decoder, bytes);
    ASSERT_TRUE(status.ok() ||
                status.code() == absl::StatusCode::kInvalidArgument)
        << status;
    const absl::Status probed = decoder->ProbeEncoded(bytes).status();
    ASSERT_TRUE(probed.ok() ||
                probed.code() == absl::StatusCode::kInvalidArgument)
        << probed;
    (status.ok() ? ok : rejected)++;
  }
  EXPECT_GT(rejected, 0);
  std::printf("mutations: %d decoded, %d rejected\n", ok, rejected);
}

TEST(ImageDecoderTest, ConcurrentDecodesAgree) {
  const auto decoder = MakeDecoder();
  const std::string jpeg = EncodeJpeg(Gradient(640, 480));
  const std::string png = EncodePng(Random(300, 200, 3, 9));
  const auto want_jpeg = ViaEncoded(*decoder, jpeg);
  const auto want_png = ViaEncoded(*decoder, png);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(ViaEncoded(*decoder, (t + i) % 2 ? jpeg : png),
                  (t + i) % 2 ? want_jpeg : want_png);
      }
    });
  }
  for (auto& thread : threads) thread.join();
}

}  // namespace
}  // namespace edge
