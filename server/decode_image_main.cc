// decode_image: runs ImageDecoder on one file and writes the model input as
// float32 [1, 3, S, S] .npy, to inspect preprocessing and to check it
// against PyTorch (tests/server/image_decoder_parity_test.py).
//
//   decode_image --size S [--mean a,b,c --std a,b,c] [--no_dct_scaling]
//                --input FILE [--rgb_width W --rgb_height H] --output X.npy
//
// FILE is a JPEG or PNG, or with --rgb_width/--rgb_height raw 8-bit RGB (HWC).
// What was decoded is printed to stderr. Exit code 1 on any error.
#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/npy.h"
#include "common/status_macros.h"
#include "server/image_decoder.h"

ABSL_FLAG(int, size, 0, "S, the model's input side (required)");
ABSL_FLAG(std::string, mean, "0.5,0.5,0.5", "per-channel mean, R,G,B");
ABSL_FLAG(std::string, std, "0.5,0.5,0.5", "per-channel std, R,G,B");
ABSL_FLAG(bool, no_dct_scaling, false,
          "decode JPEGs at full size (no libjpeg-turbo DCT scaling)");
ABSL_FLAG(std::string, input, "", "JPEG, PNG or raw RGB file");
ABSL_FLAG(int, rgb_width, 0, "width of a raw RGB --input");
ABSL_FLAG(int, rgb_height, 0, "height of a raw RGB --input");
ABSL_FLAG(std::string, output, "", "where to write float32 [1,3,S,S] .npy");

namespace {

absl::StatusOr<std::array<float, 3>> ParseTriple(const std::string& flag,
                                                 const std::string& text) {
  const std::vector<std::string> parts = absl::StrSplit(text, ',');
  std::array<float, 3> values{};
  if (parts.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " needs 3 comma-separated numbers: ", text));
  }
  for (int i = 0; i < 3; ++i) {
    if (!absl::SimpleAtof(parts[i], &values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": not a number: ", parts[i]));
    }
  }
  return values;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

absl::Status Run() {
  edge::ImageDecoderOptions options;
  options.image_size = absl::GetFlag(FLAGS_size);
  ASSIGN_OR_RETURN(options.mean,
                   ParseTriple("mean", absl::GetFlag(FLAGS_mean)));
  ASSIGN_OR_RETURN(options.std, ParseTriple("std", absl::GetFlag(FLAGS_std)));
  options.jpeg_dct_scaling = !absl::GetFlag(FLAGS_no_dct_scaling);
  ASSIGN_OR_RETURN(auto decoder, edge::ImageDecoder::Create(options));
  if (absl::GetFlag(FLAGS_input).empty() || absl::GetFlag(FLAGS_output).empty())
    return absl::InvalidArgumentError("--input and --output are required");
  ASSIGN_OR_RETURN(const std::string bytes,
                   ReadFile(absl::GetFlag(FLAGS_input)));

  const int s = decoder->image_size();
  edge::NpyArray array{{1, 3, s, s}, std::vector<float>(3 * s * s)};
  const int width = absl::GetFlag(FLAGS_rgb_width);
  const int height = absl::GetFlag(FLAGS_rgb_height);
  if (width != 0 || height != 0) {
    RETURN_IF_ERROR(decoder->FromRgb(bytes, width, height, array.data.data()));
    std::fprintf(stderr, "raw RGB %dx%d\n", width, height);
  } else {
    ASSIGN_OR_RETURN(edge::DecodeInfo info,
                     decoder->DecodeEncoded(bytes, array.data.data()));
    std::fprintf(stderr, "%s %dx%d decoded at %dx%d\n",
                 info.format == edge::ImageFormat::kJpeg ? "JPEG" : "PNG",
                 info.source_width, info.source_height, info.decoded_width,
                 info.decoded_height);
  }
  return edge::WriteNpyFloat32(absl::GetFlag(FLAGS_output), array);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = Run();
  if (!status.ok()) {
    std::fprintf(stderr, "decode_image: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
