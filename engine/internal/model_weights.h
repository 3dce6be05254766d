// ModelWeights: every non-expert tensor of a model, prepared for oneDNN at
// load (linear weights reordered into the matmul's layout), and
// PreparedExpert, the form in which ExpertCache holds one expert.
//
// Precision: with activations of type `act` (f32, or bf16 for
// compute_dtype bf16), every linear layer that reads activation rows is
// prepared in `act`: patch embedding, qkv, proj, dense MLPs and, with token
// routing, the router. The image router (it reads a pooled f32 row per
// image) and the head are f32 always: they are tiny, and routing decisions
// and logits are what accuracy is judged by. Experts keep the precision they
// are stored in where it is lower (bf16, int8), so the cache holds them at
// that size; float32 experts are converted to `act`.
//
// Thread-safe: immutable after loading.
#ifndef EDGE_ENGINE_INTERNAL_MODEL_WEIGHTS_H_
#define EDGE_ENGINE_INTERNAL_MODEL_WEIGHTS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "cache/expert_cache.h"
#include "cache/expert_store.h"
#include "common/model_manifest.h"
#include "engine/internal/kernels.h"

namespace edge::internal {

struct BlockWeights {
  NormWeights norm1;
  NormWeights norm2;
  LinearWeights qkv;   // D -> 3D
  LinearWeights proj;  // D -> D
  // Dense blocks only.
  LinearWeights fc1;  // D -> F
  LinearWeights fc2;  // F -> D
  // MoE blocks only: D -> E, zero bias (docs/model-spec.md: no router bias).
  LinearWeights router;
};

struct ModelWeights {
  LinearWeights patch_embed;     // 3*P*P -> D; input is a patch in (c, y, x)
  std::vector<float> cls_token;  // [D], empty without a class token.
  std::vector<float> pos_embed;  // [T, D]
  std::vector<BlockWeights> blocks;
  NormWeights norm;
  LinearWeights head;  // D -> C
};

// Reads the files holding non-expert tensors, verifies their size and
// SHA-256 (DATA_LOSS naming the file), and prepares every tensor from the
// bytes verified.
absl::StatusOr<ModelWeights> LoadModelWeights(const ModelManifest& manifest,
                                              Kernels& kernels, DataType act);

// One expert's MLP, as ExpertCache stores it.
class PreparedExpert final : public CachedExpert {
 public:
  PreparedExpert(LinearWeights fc1, LinearWeights fc2)
      : fc1_(std::move(fc1)), fc2_(std::move(fc2)) {}
  uint64_t bytes() const override { return fc1_.bytes() + fc2_.bytes(); }
  const LinearWeights& fc1() const { return fc1_; }
  const LinearWeights& fc2() const { return fc2_; }

 private:
  const LinearWeights fc1_;
  const LinearWeights fc2_;
};

// The type an expert stored as `stored` computes in, with activations `act`.
DataType ExpertComputeType(DType stored, DataType act);

// Prepares `raw` for the cache, in ExpertComputeType(). DATA_LOSS if an
// int8 expert's scales are not positive and finite.
absl::StatusOr<std::shared_ptr<CachedExpert>> PrepareExpert(
    const RawExpert& raw, Kernels& kernels, DataType act);
// Exact bytes PrepareExpert() holds for any expert of `manifest`.
uint64_t PreparedExpertBytes(const ModelManifest& manifest, Kernels& kernels,
                             DataType act);

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_MODEL_WEIGHTS_H_
