#include "cache/expert_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace edge {
namespace {

bool NamesExpert(const ModelConfig& config, const ExpertKey& key) {
  return config.moe.IsMoeLayer(key.layer) && key.expert >= 0 &&
         key.expert < config.moe.num_experts;
}

// The manifest checked that the tensor exists and lies inside the file, and
// Load() checked the file's size, so the view is in bounds.
TensorView View(const ModelManifest& manifest, const MappedFile& file,
                const std::string& name) {
  const TensorInfo* tensor = manifest.FindTensor(name);
  TensorView view;
  view.data = file.data() + tensor->offset_bytes;
  view.dtype = tensor->dtype;
  view.shape = tensor->shape;
  view.size_bytes = tensor->size_bytes;
  return view;
}

RawExpert ViewExpert(const ModelManifest& manifest, const ExpertKey& key,
                     std::shared_ptr<const MappedFile> file) {
  const std::string prefix = ExpertTensorPrefix(key.layer, key.expert);
  RawExpert expert;
  expert.key = key;
  expert.fc1_weight = View(manifest, *file, prefix + "fc1.weight");
  expert.fc1_bias = View(manifest, *file, prefix + "fc1.bias");
  expert.fc2_weight = View(manifest, *file, prefix + "fc2.weight");
  expert.fc2_bias = View(manifest, *file, prefix + "fc2.bias");
  if (manifest.precision() == "int8") {
    expert.fc1_weight_scale =
        View(manifest, *file, prefix + "fc1.weight_scale");
    expert.fc2_weight_scale =
        View(manifest, *file, prefix + "fc2.weight_scale");
  }
  expert.file = std::move(file);
  return expert;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ExpertStore>> ExpertStore::Create(
    const ModelManifest* manifest, ExpertStoreOptions options) {
  if (manifest == nullptr) {
    return absl::InvalidArgumentError("ExpertStore needs a manifest");
  }
  return std::unique_ptr<ExpertStore>(new ExpertStore(manifest, options));
}

ExpertStore::ExpertStore(const ModelManifest* manifest,
                         ExpertStoreOptions options)
    : manifest_(manifest), options_(options) {}

absl::StatusOr<RawExpert> ExpertStore::Load(const ExpertKey& key) const {
  if (!NamesExpert(manifest_->config(), key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model \"", manifest_->name(), "\" has no ", key.ToString()));
  }
  const FileInfo& info = ExpertFileInfo(key);
  bool verified;
  {
    absl::MutexLock lock(&mu_);
    verified = verified_.count(info.path) != 0;
  }
  // Hashing takes milliseconds, so it runs unlocked; two first loads of one
  // file may both hash it, which is harmless.
  const bool verify = !verified || options_.verify_every_load;
  ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file,
                   manifest_->MapFile(info, verify));
  if (verify) {
    absl::MutexLock lock(&mu_);
    verified_.insert(info.path);
  }
  return ViewExpert(*manifest_, key, std::move(file));
}

void ExpertStore::ReadAhead(const ExpertKey& key) const {
  if (!NamesExpert(manifest_->config(), key)) return;
  MappedFile::ReadAhead(manifest_->PathOf(ExpertFileInfo(key).path));
}

uint64_t ExpertStore::FileBytes(const ExpertKey& key) const {
  if (!NamesExpert(manifest_->config(), key)) return 0;
  return ExpertFileInfo(key).size_bytes;
}

// The manifest's parser checked that every expert has a listed file.
const FileInfo& ExpertStore::ExpertFileInfo(const ExpertKey& key) const {
  return *manifest_->FindFile(manifest_->ExpertFile(key.layer, key.expert));
}

int ExpertStore::num_experts_total() const {
  const MoeSpec& moe = manifest_->config().moe;
  return static_cast<int>(moe.layers.size()) * moe.num_experts;
}

}  // namespace edge
