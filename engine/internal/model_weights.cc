#include "engine/internal/model_weights.h"

#include <cmath>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_buffer.h"
#include "common/status_macros.h"

namespace edge::internal {
namespace {

// Resolves tensor names to float pointers into weight files read into
// memory and verified (ModelManifest::ReadFile): the weights are prepared
// from exactly the bytes that were hashed, and a file truncated or
// rewritten meanwhile cannot reach them. Each file is read once and held
// until the source dies, at the end of LoadModelWeights().
class TensorSource {
 public:
  explicit TensorSource(const ModelManifest& manifest) : manifest_(manifest) {}

  // REQUIRES: the manifest lists `name` as F32 (ModelManifest validated it).
  absl::StatusOr<const float*> Get(const std::string& name) {
    const TensorInfo* info = manifest_.FindTensor(name);
    if (info == nullptr) return absl::NotFoundError("no tensor " + name);
    if (info->dtype != DType::kF32) {
      return absl::UnimplementedError(
          absl::StrCat(name, " is ", DTypeName(info->dtype), "; expected F32"));
    }
    ASSIGN_OR_RETURN(const FileBuffer* file, Read(info->file));
    return reinterpret_cast<const float*>(file->data() + info->offset_bytes);
  }

 private:
  absl::StatusOr<const FileBuffer*> Read(const std::string& relative) {
    auto it = files_.find(relative);
    if (it != files_.end()) return it->second.get();
    const FileInfo* info = manifest_.FindFile(relative);
    if (info == nullptr) {  // the manifest's parser checks this already
      return absl::DataLossError(absl::StrCat(
          manifest_.PathOf(relative), " is not among the manifest's files"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<FileBuffer> file,
                     manifest_.ReadFile(*info));
    return files_.emplace(relative, std::move(file)).first->second.get();
  }

  const ModelManifest& manifest_;
  std::map<std::string, std::unique_ptr<FileBuffer>> files_;
};

absl::StatusOr<LinearWeights> Linear(TensorSource& src, Kernels& kernels,
                                     const std::string& prefix, int in, int out,
                                     DataType target) {
  ASSIGN_OR_RETURN(const float* w, src.Get(prefix + ".weight"));
  ASSIGN_OR_RETURN(const float* b, src.Get(prefix + ".bias"));
  return kernels.PrepareLinear({w, DataType::f32}, b, in, out, target);
}

absl::StatusOr<NormWeights> Norm(TensorSource& src, const std::string& prefix,
                                 int dim) {
  ASSIGN_OR_RETURN(const float* w, src.Get(prefix + ".weight"));
  ASSIGN_OR_RETURN(const float* b, src.Get(prefix + ".bias"));
  return NormWeights{std::vector<float>(w, w + dim),
                     std::vector<float>(b, b + dim)};
}

absl::StatusOr<BlockWeights> LoadBlock(TensorSource& src, Kernels& kernels,
                                       const ModelConfig& c, int i,
                                       DataType act) {
  const std::string p = absl::StrCat("blocks.", i, ".");
  const int d = c.dim, f = c.mlp_dim;
  BlockWeights b;
  ASSIGN_OR_RETURN(b.norm1, Norm(src, p + "norm1", d));
  ASSIGN_OR_RETURN(b.norm2, Norm(src, p + "norm2", d));
  ASSIGN_OR_RETURN(b.qkv, Linear(src, kernels, p + "attn.qkv", d, 3 * d, act));
  ASSIGN_OR_RETURN(b.proj, Linear(src, kernels, p + "attn.proj", d, d, act));
  if (!c.moe.IsMoeLayer(i)) {
    ASSIGN_OR_RETURN(b.fc1, Linear(src, kernels, p + "mlp.fc1", d, f, act));
    ASSIGN_OR_RETURN(b.fc2, Linear(src, kernels, p + "mlp.fc2", f, d, act));
    return b;
  }
  ASSIGN_OR_RETURN(const float* router, src.Get(p + "moe.router.weight"));
  const std::vector<float> zero_bias(c.moe.num_experts, 0.0f);
  const DataType router_type =
      c.moe.routing == Routing::kToken ? act : DataType::f32;
  b.router = kernels.PrepareLinear({router, DataType::f32}, zero_bias.data(), d,
                                   c.moe.num_experts, router_type);
  return b;
}

absl::StatusOr<std::vector<float>> Copy(TensorSource& src,
                                        const std::string& name, size_t n) {
  ASSIGN_OR_RETURN(const float* p, src.Get(name));
  return std::vector<float>(p, p + n);
}

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const ModelManifest& manifest,
                                              Kernels& kernels, DataType act) {
  const ModelConfig& c = manifest.config();
  TensorSource src(manifest);
  ModelWeights w;
  const int patch_in = 3 * c.patch_size * c.patch_size;
  // [D, 3, P, P] row-major is already [D, 3*P*P] with (c, y, x) patches.
  ASSIGN_OR_RETURN(w.patch_embed, Linear(src, kernels, "patch_embed.proj",
                                         patch_in, c.dim, act));
  if (c.class_token) {
    ASSIGN_OR_RETURN(w.cls_token, Copy(src, "cls_token", c.dim));
  }
  ASSIGN_OR_RETURN(
      w.pos_embed,
      Copy(src, "pos_embed", static_cast<size_t>(c.num_tokens()) * c.dim));
  for (int i = 0; i < c.depth; ++i) {
    ASSIGN_OR_RETURN(BlockWeights block, LoadBlock(src, kernels, c, i, act));
    w.blocks.push_back(std::move(block));
  }
  ASSIGN_OR_RETURN(w.norm, Norm(src, "norm", c.dim));
  ASSIGN_OR_RETURN(w.head, Linear(src, kernels, "head", c.dim, c.num_classes,
                                  DataType::f32));
  return w;
}

DataType ExpertComputeType(DType stored, DataType act) {
  switch (stored) {
    case DType::kI8:
      return DataType::s8;
    case DType::kBF16:
      return DataType::bf16;
    case DType::kF32:
      break;
  }
  return act;
}

absl::StatusOr<std::shared_ptr<CachedExpert>> PrepareExpert(
    const RawExpert& raw, Kernels& kernels, DataType act) {
  const int f = static_cast<int>(raw.fc1_weight.shape[0]);
  const int d = static_cast<int>(raw.fc1_weight.shape[1]);
  const DataType target = ExpertComputeType(raw.fc1_weight.dtype, act);
  // The manifest fixed every dtype (ModelManifest validated it): weights in
  // the model's precision, biases and scales f32.
  auto source = [&](const TensorView& w,
                    const TensorView& scale) -> absl::StatusOr<WeightSource> {
    const DataType stored = ExpertComputeType(w.dtype, DataType::f32);
    const float* scales = static_cast<const float*>(scale.data);
    if (stored == DataType::s8) {
      for (int64_t i = 0; i < w.shape[0]; ++i) {
        if (!(scales[i] > 0.f) || !std::isfinite(scales[i])) {
          return absl::DataLossError(
              absl::StrCat(raw.key.ToString(), ": weight scale ", i, " is ",
                           scales[i], "; scales must be positive"));
        }
      }
    }
    return WeightSource{w.data, stored, scales};
  };
  ASSIGN_OR_RETURN(WeightSource fc1,
                   source(raw.fc1_weight, raw.fc1_weight_scale));
  ASSIGN_OR_RETURN(WeightSource fc2,
                   source(raw.fc2_weight, raw.fc2_weight_scale));
  auto bias = [](const TensorView& t) {
    return static_cast<const float*>(t.data);
  };
  return std::make_shared<PreparedExpert>(
      kernels.PrepareLinear(fc1, bias(raw.fc1_bias), d, f, target),
      kernels.PrepareLinear(fc2, bias(raw.fc2_bias), f, d, target));
}

uint64_t PreparedExpertBytes(const ModelManifest& manifest, Kernels& kernels,
                             DataType act) {
  const ModelConfig& c = manifest.config();
  if (c.moe.layers.empty()) return 0;
  const TensorInfo* any_weight = manifest.FindTensor(
      ExpertTensorPrefix(c.moe.layers.front(), 0) + "fc1.weight");
  const DataType target = ExpertComputeType(any_weight->dtype, act);
  return kernels.LinearBytes(c.dim, c.mlp_dim, target) +
         kernels.LinearBytes(c.mlp_dim, c.dim, target);
}

}  // namespace edge::internal
