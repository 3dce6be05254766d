// ModelConfig from a manifest's architecture object: docs/model-spec.md's
// defaults applied and docs/model-format.md's architecture rules checked.
// Internal to ModelManifest; no state, thread-safe.
#ifndef EDGE_COMMON_INTERNAL_MODEL_CONFIG_H_
#define EDGE_COMMON_INTERNAL_MODEL_CONFIG_H_

#include "absl/status/statusor.h"
#include "common/model_manifest.h"
#include "proto/model_manifest.pb.h"

namespace edge {
namespace internal {

// INVALID_ARGUMENT naming the field at fault unless the architecture is
// present and consistent: sizes in [1, kMax*], image_size % patch_size == 0,
// dim % heads == 0, at most kMaxTokens tokens, MoE layers unique and inside
// [0, depth), 1 <= top_k <= num_experts, known routing and pooling, positive
// norm_eps and capacity_factor.
absl::StatusOr<ModelConfig> BuildModelConfig(
    const model::v1::Manifest& manifest);

}  // namespace internal
}  // namespace edge

#endif  // EDGE_COMMON_INTERNAL_MODEL_CONFIG_H_
