#include "common/model_manifest.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_buffer.h"
#include "common/internal/manifest_tensors.h"
#include "common/internal/model_config.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace edge {
namespace {

namespace pb = ::edge::model::v1;

// Three per-channel values; 0.5 each when absent (timm's ViT normalisation).
absl::StatusOr<std::array<float, 3>> Channels(
    const google::protobuf::RepeatedField<float>& values, const char* field,
    bool must_be_positive) {
  std::array<float, 3> out = {0.5f, 0.5f, 0.5f};
  if (values.empty()) return out;
  if (values.size() != 3) {
    return InvalidArgument("preprocessing.", field, " has ", values.size(),
                           " values, expected 3");
  }
  for (int i = 0; i < 3; ++i) {
    const float v = values[i];
    if (!std::isfinite(v) || (must_be_positive && v <= 0)) {
      return InvalidArgument(
          "preprocessing.", field, "[", i, "] is ", v,
          must_be_positive ? "; it must be positive" : "; it must be finite");
    }
    out[i] = v;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> Labels(const pb::Manifest& manifest,
                                                int num_classes) {
  std::vector<std::string> labels(manifest.labels().begin(),
                                  manifest.labels().end());
  if (labels.empty()) {
    for (int i = 0; i < num_classes; ++i) {
      labels.push_back(absl::StrCat("class_", i));
    }
  } else if (static_cast<int>(labels.size()) != num_classes) {
    return InvalidArgument("labels has ", labels.size(),
                           " entries but architecture.num_classes is ",
                           num_classes);
  }
  for (int s = 0; s < manifest.superclasses_size(); ++s) {
    for (const int c : manifest.superclasses(s).classes()) {
      if (c < 0 || c >= num_classes) {
        return InvalidArgument("superclasses[", s, "] (\"",
                               manifest.superclasses(s).name(),
                               "\") lists class ", c,
                               ", outside [0, num_classes ", num_classes, ")");
      }
    }
  }
  return labels;
}

absl::StatusOr<std::string> Precision(const pb::Manifest& manifest) {
  const std::string precision =
      manifest.has_precision() ? manifest.precision() : "float32";
  if (precision != "float32" && precision != "bf16" && precision != "int8") {
    return InvalidArgument("precision \"", precision,
                           "\" must be \"float32\", \"bf16\" or \"int8\"");
  }
  return precision;
}

absl::Status CheckHeader(const pb::Manifest& manifest) {
  if (manifest.format_version() != 1) {
    return InvalidArgument("format_version must be 1, got ",
                           manifest.format_version());
  }
  if (manifest.name().empty()) return InvalidArgument("name is required");
  return absl::OkStatus();
}

std::string JoinPath(const std::string& dir, std::string_view relative) {
  std::string path = dir;
  if (!path.empty() && path.back() != '/') path += '/';
  path.append(relative.data(), relative.size());
  return path;
}

}  // namespace

int DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
      return 2;
    case DType::kI8:
      return 1;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kI8:
      return "I8";
  }
  return "?";
}

std::string ExpertTensorPrefix(int layer, int expert) {
  return absl::StrCat("blocks.", layer, ".moe.experts.", expert, ".");
}

absl::StatusOr<ModelManifest> ModelManifest::Load(
    const std::string& model_dir) {
  const std::string path = JoinPath(model_dir, "manifest.json");
  ASSIGN_OR_RETURN(std::unique_ptr<FileBuffer> file, FileBuffer::Read(path));
  absl::StatusOr<ModelManifest> manifest =
      Parse(std::string_view(reinterpret_cast<const char*>(file->data()),
                             file->size()),
            model_dir);
  if (!manifest.ok()) {
    return absl::Status(manifest.status().code(),
                        absl::StrCat(path, ": ", manifest.status().message()));
  }
  return manifest;
}

absl::StatusOr<ModelManifest> ModelManifest::Parse(
    std::string_view json, const std::string& model_dir) {
  ModelManifest m;
  m.model_dir_ = model_dir;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // a typo must stop the load
  const auto parsed =
      google::protobuf::util::JsonStringToMessage(json, &m.proto_, options);
  if (!parsed.ok()) {
    return InvalidArgument("manifest is not a valid edge.model.v1.Manifest: ",
                           parsed.message().as_string());
  }
  RETURN_IF_ERROR(CheckHeader(m.proto_));
  ASSIGN_OR_RETURN(m.config_, internal::BuildModelConfig(m.proto_));
  ASSIGN_OR_RETURN(m.labels_, Labels(m.proto_, m.config_.num_classes));
  const pb::Preprocessing& pre = m.proto_.preprocessing();
  ASSIGN_OR_RETURN(m.mean_, Channels(pre.mean(), "mean", false));
  ASSIGN_OR_RETURN(m.std_, Channels(pre.std(), "std", true));
  ASSIGN_OR_RETURN(m.precision_, Precision(m.proto_));
  ASSIGN_OR_RETURN(
      internal::TensorIndex index,
      internal::BuildTensorIndex(m.proto_, m.config_, m.precision_));
  m.files_ = std::move(index.files);
  m.tensors_ = std::move(index.tensors);
  m.expert_files_ = std::move(index.expert_files);
  return m;
}

const TensorInfo* ModelManifest::FindTensor(std::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const FileInfo* ModelManifest::FindFile(std::string_view path) const {
  for (const FileInfo& file : files_) {
    if (file.path == path) return &file;
  }
  return nullptr;
}

const std::string& ModelManifest::ExpertFile(int layer, int expert) const {
  return expert_files_.at({layer, expert});
}

std::string ModelManifest::PathOf(std::string_view relative_path) const {
  return JoinPath(model_dir_, relative_path);
}

absl::StatusOr<std::unique_ptr<FileBuffer>> ModelManifest::ReadFile(
    const FileInfo& file, WeightFileError* error) const {
  WeightFileError ignored;
  WeightFileError& why = error != nullptr ? *error : ignored;
  why = WeightFileError::kNone;
  absl::StatusOr<std::unique_ptr<FileBuffer>> read =
      FileBuffer::Read(PathOf(file.path), file.size_bytes);
  if (!read.ok()) {
    // FileBuffer::Read's only DATA_LOSS is a wrong size.
    switch (read.status().code()) {
      case absl::StatusCode::kNotFound:
        why = WeightFileError::kMissing;
        break;
      case absl::StatusCode::kDataLoss:
        why = WeightFileError::kSizeMismatch;
        break;
      default:
        why = WeightFileError::kReadError;
    }
    return read.status();
  }
  const FileBuffer& bytes = **read;
  const std::string actual = Sha256Hex(bytes.data(), bytes.size());
  if (actual != file.sha256) {
    why = WeightFileError::kChecksumMismatch;
    return absl::DataLossError(absl::StrCat("checksum mismatch in ",
                                            bytes.path(), ": expected ",
                                            file.sha256, ", got ", actual));
  }
  return read;
}

}  // namespace edge
