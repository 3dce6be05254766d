// Image files for tests that send frames to the gateway. Header-only.
#ifndef EDGE_TESTS_TESTING_TEST_IMAGES_H_
#define EDGE_TESTS_TESTING_TEST_IMAGES_H_

#include <spng.h>

#include <cstdlib>
#include <string>

namespace edge {
namespace test_support {

// 8-bit RGB PNG of `rgb` (w * h * 3 bytes, HWC), default compression.
inline std::string EncodePng(const std::string& rgb, int w, int h) {
  spng_ctx* ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
  spng_ihdr ihdr{};
  ihdr.width = w;
  ihdr.height = h;
  ihdr.bit_depth = 8;
  ihdr.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
  spng_set_ihdr(ctx, &ihdr);
  spng_encode_image(ctx, rgb.data(), rgb.size(), SPNG_FMT_PNG,
                    SPNG_ENCODE_FINALIZE);
  size_t size = 0;
  int error = 0;
  void* png = spng_get_png_buffer(ctx, &size, &error);
  std::string out(static_cast<char*>(png), size);
  std::free(png);
  spng_ctx_free(ctx);
  return out;
}

}  // namespace test_support
}  // namespace edge

#endif  // EDGE_TESTS_TESTING_TEST_IMAGES_H_
