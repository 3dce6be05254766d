#include "cache/expert_store.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace edge {
namespace {

bool NamesExpert(const ModelConfig& config, const ExpertKey& key) {
  return config.moe.IsMoeLayer(key.layer) && key.expert >= 0 &&
         key.expert < config.moe.num_experts;
}

// The manifest checked that the tensor exists and lies inside the file, and
// Load() checked the size of the bytes read, so the view is in bounds.
TensorView View(const ModelManifest& manifest, const FileBuffer& file,
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
                     std::shared_ptr<const FileBuffer> file) {
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
    const ModelManifest* manifest) {
  if (manifest == nullptr) {
    return absl::InvalidArgumentError("ExpertStore needs a manifest");
  }
  return std::unique_ptr<ExpertStore>(new ExpertStore(manifest));
}

ExpertStore::ExpertStore(const ModelManifest* manifest) : manifest_(manifest) {}

absl::StatusOr<RawExpert> ExpertStore::Load(const ExpertKey& key) const {
  if (!NamesExpert(manifest_->config(), key)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model \"", manifest_->name(), "\" has no ", key.ToString()));
  }
  WeightFileError error = WeightFileError::kNone;
  absl::StatusOr<std::unique_ptr<FileBuffer>> file =
      manifest_->ReadFile(ExpertFileInfo(key), &error);
  if (!file.ok()) {
    CountRefusal(error);
    return file.status();
  }
  return ViewExpert(*manifest_, key, *std::move(file));
}

void ExpertStore::CountRefusal(WeightFileError error) const {
  refused_[static_cast<int>(error)].fetch_add(1, std::memory_order_relaxed);
}

ExpertStoreStats ExpertStore::stats() const {
  auto count = [this](WeightFileError error) {
    return refused_[static_cast<int>(error)].load(std::memory_order_relaxed);
  };
  ExpertStoreStats stats;
  stats.missing = count(WeightFileError::kMissing);
  stats.read_errors = count(WeightFileError::kReadError);
  stats.size_mismatches = count(WeightFileError::kSizeMismatch);
  stats.checksum_mismatches = count(WeightFileError::kChecksumMismatch);
  return stats;
}

void ExpertStore::ReadAhead(const ExpertKey& key) const {
  if (!NamesExpert(manifest_->config(), key)) return;
  FileBuffer::ReadAhead(manifest_->PathOf(ExpertFileInfo(key).path));
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
