// The cost model behind ProbeJpeg (image_codecs.h): how much heap
// libjpeg-turbo 2.1 allocates, and how much CPU it spends, to decode a JPEG
// through tjDecompress2, predicted from the markers before the first scan.
// Internal to jpeg_codec.cc and its tests.
//
// Thread-safety: pure functions.
#ifndef EDGE_SERVER_INTERNAL_JPEG_COST_H_
#define EDGE_SERVER_INTERNAL_JPEG_COST_H_

#include <cstdint>
#include <string_view>

namespace edge::decoder_internal {

// An image size, and the DCT scale (1 / denom) that produced it.
struct JpegSize {
  int width = 0;
  int height = 0;
  int denom = 1;
};

// What the frame header (SOF) and the first scan header (SOS) say about the
// buffers libjpeg will need. libjpeg keeps only 8x8 blocks of coefficients in
// flight for a single-scan file, but a whole-image coefficient buffer when
// the image arrives in several scans: progressive files, and sequential ones
// whose first scan does not interleave every component
// (jdinput.c: has_multiple_scans).
struct JpegFrame {
  static constexpr int kMaxComponents = 10;  // libjpeg's MAX_COMPONENTS.

  // False when the markers could not be followed to the first SOS; the cost
  // functions then assume the worst case for `num_components` components.
  bool parsed = false;
  bool multi_scan = true;
  int num_components = 0;
  int h_samp[kMaxComponents] = {};  // Sampling factors, 1..4.
  int v_samp[kMaxComponents] = {};
  int max_h_samp = 1;
  int max_v_samp = 1;
};

// Walks the markers of `bytes` (a JPEG that tjDecompressHeader3 accepted)
// up to the first SOS. On anything it does not follow, returns
// {parsed = false, num_components = fallback_components}.
JpegFrame ParseJpegFrame(std::string_view bytes, int fallback_components);

// Upper estimate of the heap tjDecompress2 plus DecodeJpeg's output buffer
// use at their peak, decoding `source` at `scaled` into RGB (or into CMYK
// first, 4 bytes per pixel, when `cmyk`).
uint64_t JpegDecodeHeapBytes(const JpegFrame& frame, JpegSize source,
                             JpegSize scaled, bool cmyk);

// Decode CPU time in work pixels (CodecCost::work_pixels).
uint64_t JpegDecodeWorkPixels(const JpegFrame& frame, JpegSize source,
                              JpegSize scaled, bool cmyk);

}  // namespace edge::decoder_internal

#endif  // EDGE_SERVER_INTERNAL_JPEG_COST_H_
