#include "common/internal/manifest_tensors.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace edge {
namespace internal {
namespace {

namespace pb = ::edge::model::v1;

// docs/model-format.md: one cache line and one AVX-512 vector, so that
// oneDNN can read weights straight from the file's aligned buffer.
constexpr uint64_t kTensorAlignment = 64;

using ExpertId = std::pair<int, int>;  // (layer, expert)
constexpr ExpertId kNotExpert = {-1, -1};

// One row of docs/model-spec.md's weight table, instantiated for an
// architecture.
struct RequiredTensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  ExpertId expert = kNotExpert;  // the expert this tensor belongs to.
};
using RequiredSet = std::map<std::string, RequiredTensor>;

void Add(RequiredSet* set, std::string name, std::vector<int64_t> shape,
         DType dtype = DType::kF32, ExpertId expert = kNotExpert) {
  (*set)[std::move(name)] = RequiredTensor{dtype, std::move(shape), expert};
}

// Reduced precision applies to the expert fc weights only; int8 adds a
// float32 scale per output channel (F outputs for fc1, D for fc2).
void AddExpert(const ModelConfig& c, int layer, int e,
               const std::string& precision, RequiredSet* set) {
  const std::string prefix = ExpertTensorPrefix(layer, e);
  const int64_t d = c.dim, f = c.mlp_dim;
  const DType weight = precision == "bf16"   ? DType::kBF16
                       : precision == "int8" ? DType::kI8
                                             : DType::kF32;
  const ExpertId id = {layer, e};
  Add(set, prefix + "fc1.weight", {f, d}, weight, id);
  Add(set, prefix + "fc1.bias", {f}, DType::kF32, id);
  Add(set, prefix + "fc2.weight", {d, f}, weight, id);
  Add(set, prefix + "fc2.bias", {d}, DType::kF32, id);
  if (precision == "int8") {
    Add(set, prefix + "fc1.weight_scale", {f}, DType::kF32, id);
    Add(set, prefix + "fc2.weight_scale", {d}, DType::kF32, id);
  }
}

void AddBlock(const ModelConfig& c, int i, const std::string& precision,
              RequiredSet* set) {
  const std::string b = absl::StrCat("blocks.", i, ".");
  const int64_t d = c.dim, f = c.mlp_dim;
  for (const char* norm : {"norm1", "norm2"}) {
    Add(set, absl::StrCat(b, norm, ".weight"), {d});
    Add(set, absl::StrCat(b, norm, ".bias"), {d});
  }
  Add(set, b + "attn.qkv.weight", {3 * d, d});
  Add(set, b + "attn.qkv.bias", {3 * d});
  Add(set, b + "attn.proj.weight", {d, d});
  Add(set, b + "attn.proj.bias", {d});
  if (!c.moe.IsMoeLayer(i)) {
    Add(set, b + "mlp.fc1.weight", {f, d});
    Add(set, b + "mlp.fc1.bias", {f});
    Add(set, b + "mlp.fc2.weight", {d, f});
    Add(set, b + "mlp.fc2.bias", {d});
    return;
  }
  Add(set, b + "moe.router.weight", {c.moe.num_experts, d});
  for (int e = 0; e < c.moe.num_experts; ++e) {
    AddExpert(c, i, e, precision, set);
  }
}

RequiredSet RequiredTensors(const ModelConfig& c,
                            const std::string& precision) {
  RequiredSet set;
  const int64_t d = c.dim, p = c.patch_size;
  Add(&set, "patch_embed.proj.weight", {d, 3, p, p});
  Add(&set, "patch_embed.proj.bias", {d});
  if (c.class_token) Add(&set, "cls_token", {1, 1, d});
  Add(&set, "pos_embed", {1, c.num_tokens(), d});
  for (int i = 0; i < c.depth; ++i) AddBlock(c, i, precision, &set);
  Add(&set, "norm.weight", {d});
  Add(&set, "norm.bias", {d});
  Add(&set, "head.weight", {c.num_classes, d});
  Add(&set, "head.bias", {c.num_classes});
  return set;
}

// Relative and without "..": a manifest must not reach outside its model
// directory.
bool IsInsideDirectory(const std::string& path) {
  if (path.empty() || path.front() == '/') return false;
  for (const absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return false;
  }
  return true;
}

bool IsLowercaseSha256(const std::string& hex) {
  if (hex.size() != 64) return false;
  for (const char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<std::vector<FileInfo>> Files(const pb::Manifest& manifest) {
  std::vector<FileInfo> files;
  std::set<std::string> seen;
  for (int i = 0; i < manifest.files_size(); ++i) {
    const pb::FileEntry& file = manifest.files(i);
    if (!IsInsideDirectory(file.path())) {
      return InvalidArgument(
          "files[", i, "].path \"", file.path(),
          "\" must be a relative path inside the model directory");
    }
    if (!seen.insert(file.path()).second) {
      return InvalidArgument("files lists \"", file.path(), "\" twice");
    }
    if (!IsLowercaseSha256(file.sha256())) {
      return InvalidArgument(
          "files[", i, "] (\"", file.path(),
          "\"): sha256 must be 64 lowercase hex digits, got \"", file.sha256(),
          "\"");
    }
    files.push_back({file.path(), file.sha256(), file.size_bytes()});
  }
  return files;
}

absl::StatusOr<DType> ParseDType(const pb::TensorEntry& t) {
  for (const DType dtype : {DType::kF32, DType::kBF16, DType::kI8}) {
    if (t.dtype() == DTypeName(dtype)) return dtype;
  }
  return InvalidArgument("tensor \"", t.name(), "\": unknown dtype \"",
                         t.dtype(), "\" (expected F32, BF16 or I8)");
}

// Dtype, shape and size against `want`.
absl::Status CheckLayout(const pb::TensorEntry& t, DType dtype,
                         const RequiredTensor& want,
                         const std::string& precision) {
  if (dtype != want.dtype) {
    return InvalidArgument(
        "tensor \"", t.name(), "\": dtype ", DTypeName(dtype), ", expected ",
        DTypeName(want.dtype), " for precision \"", precision, "\"");
  }
  if (!std::equal(t.shape().begin(), t.shape().end(), want.shape.begin(),
                  want.shape.end())) {
    return InvalidArgument("tensor \"", t.name(), "\": shape [",
                           absl::StrJoin(t.shape(), ", "), "], expected [",
                           absl::StrJoin(want.shape, ", "), "]");
  }
  // Bounded by the kMax* limits, so the product fits.
  uint64_t elements = 1;
  for (const int64_t dim : want.shape) elements *= static_cast<uint64_t>(dim);
  const uint64_t size = elements * DTypeSize(dtype);
  if (t.size_bytes() != size) {
    return InvalidArgument("tensor \"", t.name(), "\": size_bytes ",
                           t.size_bytes(), ", expected ", size, " (", elements,
                           " x ", DTypeName(dtype), ")");
  }
  return absl::OkStatus();
}

// The byte range [offset, offset + size) inside a listed file.
absl::Status CheckPlacement(const pb::TensorEntry& t,
                            const std::map<std::string, uint64_t>& file_sizes) {
  const auto file = file_sizes.find(t.file());
  if (file == file_sizes.end()) {
    return InvalidArgument("tensor \"", t.name(), "\": file \"", t.file(),
                           "\" is not listed in files");
  }
  if (t.offset_bytes() % kTensorAlignment != 0) {
    return InvalidArgument("tensor \"", t.name(), "\": offset_bytes ",
                           t.offset_bytes(), " is not a multiple of ",
                           kTensorAlignment);
  }
  if (t.offset_bytes() > file->second ||
      t.size_bytes() > file->second - t.offset_bytes()) {
    return InvalidArgument("tensor \"", t.name(), "\": offset_bytes ",
                           t.offset_bytes(), " + size_bytes ", t.size_bytes(),
                           " run past the end of \"", t.file(),
                           "\" (size_bytes ", file->second, ")");
  }
  return absl::OkStatus();
}

std::string OwnerName(ExpertId owner) {
  if (owner == kNotExpert) return "the non-expert model";
  return absl::StrCat("layer ", owner.first, " expert ", owner.second);
}

// Each expert's tensors lie in one file, and that file holds nothing else,
// so the expert cache can map, verify and drop it alone.
absl::Status GroupExperts(
    const std::map<std::string, TensorInfo, std::less<>>& tensors,
    const RequiredSet& required,
    std::map<ExpertId, std::string>* expert_files) {
  std::map<std::string, ExpertId> file_owner;
  for (const auto& [name, info] : tensors) {
    const ExpertId owner = required.at(name).expert;
    const auto [file, first] = file_owner.emplace(info.file, owner);
    if (!first && file->second != owner) {
      return InvalidArgument(
          "file \"", info.file, "\" holds tensors of ", OwnerName(file->second),
          " and of ", OwnerName(owner), " (\"", name,
          "\"); an expert's file must hold that ", "expert only");
    }
    if (owner == kNotExpert) continue;
    const auto [expert, added] = expert_files->emplace(owner, info.file);
    if (!added && expert->second != info.file) {
      return InvalidArgument("the tensors of ", OwnerName(owner),
                             " are split between files \"", expert->second,
                             "\" and \"", info.file,
                             "\"; an expert needs one file of its own");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TensorIndex> BuildTensorIndex(const pb::Manifest& manifest,
                                             const ModelConfig& config,
                                             const std::string& precision) {
  TensorIndex index;
  ASSIGN_OR_RETURN(index.files, Files(manifest));
  std::map<std::string, uint64_t> file_sizes;
  for (const FileInfo& file : index.files) {
    file_sizes[file.path] = file.size_bytes;
  }
  const RequiredSet required = RequiredTensors(config, precision);
  for (const pb::TensorEntry& t : manifest.tensors()) {
    const auto want = required.find(t.name());
    if (want == required.end()) {
      return InvalidArgument("tensor \"", t.name(), "\" is not part of this ",
                             "architecture at precision \"", precision, "\"");
    }
    if (index.tensors.count(t.name()) != 0) {
      return InvalidArgument("tensor \"", t.name(), "\" is listed twice");
    }
    ASSIGN_OR_RETURN(const DType dtype, ParseDType(t));
    RETURN_IF_ERROR(CheckLayout(t, dtype, want->second, precision));
    RETURN_IF_ERROR(CheckPlacement(t, file_sizes));
    index.tensors[t.name()] = TensorInfo{t.name(),           dtype,
                                         want->second.shape, t.file(),
                                         t.offset_bytes(),   t.size_bytes()};
  }
  for (const auto& [name, want] : required) {
    if (index.tensors.count(name) == 0) {
      return InvalidArgument("tensor \"", name,
                             "\" is missing; the architecture requires it");
    }
  }
  RETURN_IF_ERROR(GroupExperts(index.tensors, required, &index.expert_files));
  return index;
}

}  // namespace internal
}  // namespace edge
