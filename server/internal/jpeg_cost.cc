// The JPEG cost model (jpeg_cost.h). The memory figures follow
// libjpeg-turbo 2.1's allocation code and are checked against measured
// peaks in tests/server/image_decoder_test.cc
// (ProbePeakBytesBoundMeasuredHeap).
#include "server/internal/jpeg_cost.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace edge::decoder_internal {
namespace {

constexpr int kDctSize = 8;
// A JBLOCK: 64 coefficients of type JCOEF (short).
constexpr uint64_t kBlockBytes = 64 * sizeof(int16_t);

// What every decode allocates whatever the image: TurboJPEG's handle, and
// libjpeg's first memory pools, Huffman, quantisation and IDCT tables, range
// limit and colour tables. Measured at 16 KB for the pools and tables plus
// a few KB for the handle; 64 KiB leaves room for 4-component files and
// allocator rounding.
constexpr uint64_t kFixedBytes = 64 << 10;

constexpr uint64_t CeilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }
constexpr uint64_t RoundUp(uint64_t a, uint64_t b) { return CeilDiv(a, b) * b; }

bool IsSof(uint8_t marker) {
  // SOF0-3, 5-7, 9-11, 13-15; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 &&
         marker != 0xCC;
}

bool IsProgressiveSof(uint8_t marker) {
  return marker == 0xC2 || marker == 0xC6 || marker == 0xCA || marker == 0xCE;
}

// SOF payload: precision, height (2), width (2), Nf, then Nf x (id, H<<4|V,
// table).
bool ParseSof(const uint8_t* segment, size_t length, JpegFrame* frame) {
  if (length < 6) return false;
  const int count = segment[5];
  if (count < 1 || count > JpegFrame::kMaxComponents ||
      length < 6 + 3 * static_cast<size_t>(count)) {
    return false;
  }
  frame->num_components = count;
  for (int c = 0; c < count; ++c) {
    const int h = segment[6 + 3 * c + 1] >> 4;
    const int v = segment[6 + 3 * c + 1] & 15;
    if (h < 1 || h > 4 || v < 1 || v > 4) return false;
    frame->h_samp[c] = h;
    frame->v_samp[c] = v;
    frame->max_h_samp = std::max(frame->max_h_samp, h);
    frame->max_v_samp = std::max(frame->max_v_samp, v);
  }
  return true;
}

// libjpeg-turbo's jdcoefct.c: for a multi-scan file, one in-memory virtual
// array per component of jround_up(width_in_blocks, h) x
// jround_up(height_in_blocks, v) blocks of the full-size image (DCT scaling
// does not shrink it), plus a row pointer per block row. jmemnobs.c has no
// backing store and TurboJPEG 2.1 sets no memory limit, so all of it is
// allocated up front: 6 bytes per pixel for 4:4:4, 3 for 4:2:0.
uint64_t CoefficientBufferBytes(const JpegFrame& frame, JpegSize source) {
  if (!frame.multi_scan) return 0;
  uint64_t total = 0;
  for (int c = 0; c < frame.num_components; ++c) {
    uint64_t blocks_wide, blocks_high;
    if (frame.parsed) {
      const int h = frame.h_samp[c], v = frame.v_samp[c];
      blocks_wide =
          RoundUp(CeilDiv(static_cast<uint64_t>(source.width) * h,
                          static_cast<uint64_t>(frame.max_h_samp) * kDctSize),
                  h);
      blocks_high =
          RoundUp(CeilDiv(static_cast<uint64_t>(source.height) * v,
                          static_cast<uint64_t>(frame.max_v_samp) * kDctSize),
                  v);
    } else {  // Worst case: full resolution, padded to 4-block MCUs.
      blocks_wide = CeilDiv(source.width, kDctSize) + 3;
      blocks_high = CeilDiv(source.height, kDctSize) + 3;
    }
    total +=
        blocks_wide * blocks_high * kBlockBytes + blocks_high * sizeof(void*);
  }
  return total;
}

// Strips of rows in jdmainct.c and jdsample.c. A component's IDCT output
// buffer holds rgroup * (M + 2) rows (M = 8 / denom, the scaled block size;
// the 2 are context rows for fancy upsampling), with rgroup <= max_v, of at
// most the scaled width plus a block of padding per sampling step (libjpeg
// scales subsampled components up in the IDCT where it can, never past the
// output width); the upsampler adds max_v rows of the output width per
// component. Measured at full size: 24 bytes per output column for 4:4:4
// and 35 for 4:2:0; this bound gives 33 and 66.
uint64_t RowBufferBytes(const JpegFrame& frame, JpegSize scaled) {
  const uint64_t max_h = frame.parsed ? frame.max_h_samp : 4;
  const uint64_t max_v = frame.parsed ? frame.max_v_samp : 4;
  const uint64_t block = kDctSize / scaled.denom;
  const uint64_t row = static_cast<uint64_t>(scaled.width) + kDctSize * max_h;
  const uint64_t rows = max_v * (block + 2) + max_v;
  return static_cast<uint64_t>(frame.num_components) * rows * row;
}

}  // namespace

JpegFrame ParseJpegFrame(std::string_view bytes, int fallback_components) {
  JpegFrame fallback;
  fallback.num_components = fallback_components;
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  JpegFrame frame;
  bool progressive = false, have_sof = false;
  size_t at = 2;  // After SOI.
  while (at < n) {
    // libjpeg warns about bytes between segments, so such a file fails to
    // decode anyway; no need to follow it.
    if (p[at] != 0xFF) return fallback;
    while (at < n && p[at] == 0xFF) ++at;  // Fill bytes.
    if (at >= n) return fallback;
    const uint8_t marker = p[at++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;
    if (marker == 0x00 || marker == 0xD9) return fallback;
    if (at + 2 > n) return fallback;
    const size_t length = (static_cast<size_t>(p[at]) << 8) | p[at + 1];
    if (length < 2 || length > n - at) return fallback;
    const uint8_t* segment = p + at + 2;
    if (IsSof(marker)) {
      if (have_sof || !ParseSof(segment, length - 2, &frame)) return fallback;
      have_sof = true;
      progressive = IsProgressiveSof(marker);
    } else if (marker == 0xDA) {  // SOS: its first byte counts components.
      if (!have_sof || length < 3) return fallback;
      frame.multi_scan = progressive || segment[0] < frame.num_components;
      frame.parsed = true;
      return frame;
    }
    at += length;
  }
  return fallback;
}

uint64_t JpegDecodeHeapBytes(const JpegFrame& frame, JpegSize source,
                             JpegSize scaled, bool cmyk) {
  const uint64_t pixels = static_cast<uint64_t>(scaled.width) * scaled.height;
  const uint64_t output = pixels * (cmyk ? 4 : 3);
  // tjDecompress2 allocates a row pointer per output row.
  const uint64_t row_pointers = static_cast<uint64_t>(scaled.height) * 8;
  return kFixedBytes + output + row_pointers + RowBufferBytes(frame, scaled) +
         CoefficientBufferBytes(frame, source);
}

// CPU model. DecodeEncoded() times in ns per source pixel, from
// ImageDecoderTest.DISABLED_DecodeSpeedPerPixel (PhotoLike images, q90,
// S = 224, best of 5 runs and of 3 invocations, on a 2-vCPU AMD EPYC VM
// shared with other builds; +-20% from one invocation to the next):
//
//                          1280x720     1920x1080     4000x3000
//                         1/1   1/2    1/1   1/4     1/1   1/8
//   baseline 4:2:0       2.68  1.86   2.44  1.40    2.26  1.19
//   baseline 4:4:4       3.80  2.91   3.82  2.98    3.32  1.90
//   baseline grey        2.52  2.01   3.04  1.71    2.19  1.35
//   progressive 4:2:0    5.58  4.71   6.38  5.65    5.55  4.58
//   progressive 4:4:4    8.24  7.17  10.14  9.44    9.00  8.14
//   YCCK 4:4:4:4         8.22  5.23  10.84  4.71    8.11  3.39
//
// Entropy decoding does not shrink with DCT scaling; the IDCT, upsampling
// and colour conversion shrink with the output (1 / denom^2 of the pixels).
// Progressive scans cost about 3x baseline entropy decoding. The cost grows
// with the samples per pixel (1 grey, 1.5 for 4:2:0, 3 for 4:4:4, 4 for
// this YCCK), less than in proportion. Four-component files carry more bits,
// and their output goes through YCCK->CMYK and CMYK->RGB. In units of a
// full-size baseline 4:2:0 pixel:
//   work = pixels * (0.625 + samples / 4) * (entropy + output / denom^2)
// with entropy 0.55 (baseline) or 1.7 (multi-scan) and output 0.45, times
// 1.5 and 3 respectively for CMYK/YCCK. Divided by it, the table gives
// 2.1-4.0 ns per work pixel.
uint64_t JpegDecodeWorkPixels(const JpegFrame& frame, JpegSize source,
                              JpegSize scaled, bool cmyk) {
  double samples = frame.num_components;  // Unparsed: all at full size.
  if (frame.parsed) {
    samples = 0;
    for (int c = 0; c < frame.num_components; ++c) {
      samples += static_cast<double>(frame.h_samp[c] * frame.v_samp[c]) /
                 (frame.max_h_samp * frame.max_v_samp);
    }
  }
  const double entropy = (frame.multi_scan ? 1.7 : 0.55) * (cmyk ? 1.5 : 1);
  const double output = 0.45 * (cmyk ? 3 : 1) / (scaled.denom * scaled.denom);
  const double pixels = static_cast<double>(source.width) * source.height;
  const double work = pixels * (0.625 + samples / 4) * (entropy + output);
  return static_cast<uint64_t>(std::llround(work));
}

}  // namespace edge::decoder_internal
