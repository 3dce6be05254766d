// The frames a run sends: built once, before the clock starts, so neither
// disk nor JPEG encoding can delay a due frame. Either the scenes of
// synthetic_scene.h (JPEG or tensor) or the image files of a directory.
// Scene i of the popularity model is frames[i].
//
// Immutable once built; safe to read from every camera thread.
#ifndef EDGE_LOADTEST_FRAME_SET_H_
#define EDGE_LOADTEST_FRAME_SET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loadtest/load_options.h"
#include "proto/gateway.pb.h"

namespace edge::loadtest {

struct Frame {
  std::string name;  // "scene-7" or the file name; used in request ids.
  // The frame as it goes on the wire: `image.encoded` or `image.tensor`
  // is set, the rest of the request is filled per send.
  gateway::v1::ClassifyRequest image;
};

// From `options`: the files of frames_dir (sorted by name), or `scenes`
// synthetic scenes as JPEG, or with `tensor` as float32 [3,S,S] with
// S = `model_image_size`. NOT_FOUND / INVALID_ARGUMENT naming the directory
// if it is missing or has no images, INTERNAL if JPEG encoding fails.
absl::StatusOr<std::vector<Frame>> BuildFrameSet(const LoadTestOptions& options,
                                                 int model_image_size);

// Mean bytes on the wire per frame (the image field only), for the report.
double MeanFrameBytes(const std::vector<Frame>& frames);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_FRAME_SET_H_
