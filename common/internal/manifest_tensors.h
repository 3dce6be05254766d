// The tensor and file lists of a manifest, checked against the tensors
// docs/model-spec.md ("Weights") requires of its architecture
// (docs/model-format.md, "What the loader checks"). Internal to
// ModelManifest; no state, thread-safe.
#ifndef EDGE_COMMON_INTERNAL_MANIFEST_TENSORS_H_
#define EDGE_COMMON_INTERNAL_MANIFEST_TENSORS_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_manifest.h"
#include "proto/model_manifest.pb.h"

namespace edge {
namespace internal {

struct TensorIndex {
  std::vector<FileInfo> files;  // in manifest order.
  std::map<std::string, TensorInfo, std::less<>> tensors;
  // (layer, expert) -> the file holding that expert and nothing else.
  std::map<std::pair<int, int>, std::string> expert_files;
};

// INVALID_ARGUMENT naming the tensor or file at fault unless every tensor
// `config` requires (with `precision`'s dtypes) is listed exactly once with
// its shape, dtype and size, inside a listed file at a 64-byte aligned
// offset, no other tensor is listed, and each expert's tensors fill a file
// of their own.
absl::StatusOr<TensorIndex> BuildTensorIndex(
    const model::v1::Manifest& manifest, const ModelConfig& config,
    const std::string& precision);

}  // namespace internal
}  // namespace edge

#endif  // EDGE_COMMON_INTERNAL_MANIFEST_TENSORS_H_
