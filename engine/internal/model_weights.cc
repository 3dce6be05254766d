#include "engine/internal/model_weights.h"

#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace edge::internal {
namespace {

// Resolves tensor names to float pointers in verified, mapped files.
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
    ASSIGN_OR_RETURN(const MappedFile* file, Map(info->file));
    return reinterpret_cast<const float*>(file->data() + info->offset_bytes);
  }

 private:
  absl::StatusOr<const MappedFile*> Map(const std::string& relative) {
    auto it = files_.find(relative);
    if (it != files_.end()) return it->second.get();
    const FileInfo* info = manifest_.FindFile(relative);
    const std::string path = manifest_.PathOf(relative);
    ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
    if (info == nullptr || file->size() != info->size_bytes) {
      return absl::DataLossError(absl::StrCat(path, " has ", file->size(),
                                              " bytes; the manifest says ",
                                              info ? info->size_bytes : 0));
    }
    const std::string digest = Sha256Hex(file->data(), file->size());
    if (digest != info->sha256) {
      return absl::DataLossError(absl::StrCat("checksum mismatch in ", path,
                                              ": expected ", info->sha256,
                                              ", got ", digest));
    }
    return files_.emplace(relative, std::move(file)).first->second.get();
  }

  const ModelManifest& manifest_;
  std::map<std::string, std::unique_ptr<MappedFile>> files_;
};

absl::StatusOr<LinearWeights> Linear(TensorSource& src, Kernels& kernels,
                                     const std::string& prefix, int in,
                                     int out) {
  ASSIGN_OR_RETURN(const float* w, src.Get(prefix + ".weight"));
  ASSIGN_OR_RETURN(const float* b, src.Get(prefix + ".bias"));
  return kernels.PrepareLinear(w, b, in, out);
}

absl::StatusOr<NormWeights> Norm(TensorSource& src, Kernels& kernels,
                                 const std::string& prefix, int dim) {
  ASSIGN_OR_RETURN(const float* w, src.Get(prefix + ".weight"));
  ASSIGN_OR_RETURN(const float* b, src.Get(prefix + ".bias"));
  return kernels.PrepareNorm(w, b, dim);
}

absl::StatusOr<BlockWeights> LoadBlock(TensorSource& src, Kernels& kernels,
                                       const ModelConfig& c, int i) {
  const std::string p = absl::StrCat("blocks.", i, ".");
  const int d = c.dim;
  BlockWeights b;
  ASSIGN_OR_RETURN(b.norm1, Norm(src, kernels, p + "norm1", d));
  ASSIGN_OR_RETURN(b.norm2, Norm(src, kernels, p + "norm2", d));
  ASSIGN_OR_RETURN(b.qkv, Linear(src, kernels, p + "attn.qkv", d, 3 * d));
  ASSIGN_OR_RETURN(b.proj, Linear(src, kernels, p + "attn.proj", d, d));
  if (!c.moe.IsMoeLayer(i)) {
    ASSIGN_OR_RETURN(b.fc1, Linear(src, kernels, p + "mlp.fc1", d, c.mlp_dim));
    ASSIGN_OR_RETURN(b.fc2, Linear(src, kernels, p + "mlp.fc2", c.mlp_dim, d));
    return b;
  }
  ASSIGN_OR_RETURN(const float* router, src.Get(p + "moe.router.weight"));
  const std::vector<float> zero_bias(c.moe.num_experts, 0.0f);
  b.router =
      kernels.PrepareLinear(router, zero_bias.data(), d, c.moe.num_experts);
  return b;
}

absl::StatusOr<std::vector<float>> Copy(TensorSource& src,
                                        const std::string& name, size_t n) {
  ASSIGN_OR_RETURN(const float* p, src.Get(name));
  return std::vector<float>(p, p + n);
}

}  // namespace

absl::StatusOr<ModelWeights> LoadModelWeights(const ModelManifest& manifest,
                                              Kernels& kernels) {
  const ModelConfig& c = manifest.config();
  TensorSource src(manifest);
  ModelWeights w;
  const int patch_in = 3 * c.patch_size * c.patch_size;
  // [D, 3, P, P] row-major is already [D, 3*P*P] with (c, y, x) patches.
  ASSIGN_OR_RETURN(w.patch_embed,
                   Linear(src, kernels, "patch_embed.proj", patch_in, c.dim));
  if (c.class_token) {
    ASSIGN_OR_RETURN(w.cls_token, Copy(src, "cls_token", c.dim));
  }
  ASSIGN_OR_RETURN(
      w.pos_embed,
      Copy(src, "pos_embed", static_cast<size_t>(c.num_tokens()) * c.dim));
  for (int i = 0; i < c.depth; ++i) {
    ASSIGN_OR_RETURN(BlockWeights block, LoadBlock(src, kernels, c, i));
    w.blocks.push_back(std::move(block));
  }
  ASSIGN_OR_RETURN(w.norm, Norm(src, kernels, "norm", c.dim));
  ASSIGN_OR_RETURN(w.head, Linear(src, kernels, "head", c.dim, c.num_classes));
  return w;
}

absl::StatusOr<std::shared_ptr<CachedExpert>> PrepareExpert(
    const RawExpert& raw, Kernels& kernels) {
  for (const TensorView* t :
       {&raw.fc1_weight, &raw.fc1_bias, &raw.fc2_weight, &raw.fc2_bias}) {
    if (t->dtype != DType::kF32) {
      return absl::UnimplementedError(
          absl::StrCat(raw.key.ToString(), ": ", DTypeName(t->dtype),
                       " experts are not supported by this engine build"));
    }
  }
  const int f = static_cast<int>(raw.fc1_weight.shape[0]);
  const int d = static_cast<int>(raw.fc1_weight.shape[1]);
  auto as_f32 = [](const TensorView& t) {
    return static_cast<const float*>(t.data);
  };
  return std::make_shared<PreparedExpert>(
      kernels.PrepareLinear(as_f32(raw.fc1_weight), as_f32(raw.fc1_bias), d, f),
      kernels.PrepareLinear(as_f32(raw.fc2_weight), as_f32(raw.fc2_bias), f,
                            d));
}

uint64_t PreparedExpertBytes(const ModelConfig& config, Kernels& kernels) {
  return kernels.LinearBytes(config.dim, config.mlp_dim) +
         kernels.LinearBytes(config.mlp_dim, config.dim);
}

}  // namespace edge::internal
