#include "loadtest/frame_set.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/image_files.h"
#include "loadtest/synthetic_scene.h"

namespace edge::loadtest {
namespace {

// The files of `dir` that edge-client's stream command would send, in the
// same order; the errors name --frames_dir.
absl::StatusOr<std::vector<Frame>> LoadFrameFiles(const std::string& dir) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) {
    return absl::NotFoundError(
        absl::StrCat("--frames_dir '", dir, "' is not a directory"));
  }
  absl::StatusOr<std::vector<std::string>> paths = client::ListImageFiles(dir);
  if (!paths.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--frames_dir '", dir, "' has no readable .jpg/.jpeg/.png files"));
  }
  std::vector<Frame> frames;
  for (const std::string& path : *paths) {
    absl::StatusOr<std::string> bytes = client::ReadFileBytes(path);
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
    }
    Frame frame;
    frame.name = std::filesystem::path(path).filename().string();
    frame.image.set_encoded(*std::move(bytes));
    frames.push_back(std::move(frame));
  }
  return frames;
}

absl::StatusOr<std::vector<Frame>> MakeSyntheticFrames(
    const LoadTestOptions& options, int model_image_size) {
  std::vector<Frame> frames(options.scenes);
  for (int i = 0; i < options.scenes; ++i) {
    const SceneStyle style = DrawSceneStyle(options.seed, i);
    frames[i].name = absl::StrCat("scene-", i);
    if (options.tensor) {
      gateway::v1::Tensor* tensor = frames[i].image.mutable_tensor();
      tensor->add_shape(3);
      tensor->add_shape(model_image_size);
      tensor->add_shape(model_image_size);
      tensor->set_data(RenderSceneTensor(style, model_image_size));
      continue;
    }
    absl::StatusOr<std::string> jpeg =
        EncodeJpeg(RenderScene(style, options.width, options.height),
                   options.width, options.height, options.jpeg_quality);
    if (!jpeg.ok()) return jpeg.status();
    frames[i].image.set_encoded(*std::move(jpeg));
  }
  return frames;
}

}  // namespace

absl::StatusOr<std::vector<Frame>> BuildFrameSet(const LoadTestOptions& options,
                                                 int model_image_size) {
  if (!options.frames_dir.empty()) return LoadFrameFiles(options.frames_dir);
  if (options.tensor && model_image_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tensor needs the model's image_size; GetModelInfo "
                     "reported ",
                     model_image_size));
  }
  return MakeSyntheticFrames(options, model_image_size);
}

double MeanFrameBytes(const std::vector<Frame>& frames) {
  if (frames.empty()) return 0;
  double total = 0;
  for (const Frame& frame : frames) {
    total += frame.image.has_tensor() ? frame.image.tensor().data().size()
                                      : frame.image.encoded().size();
  }
  return total / frames.size();
}

}  // namespace edge::loadtest
