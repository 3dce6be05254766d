// ModelManifest: a validated model directory (docs/model-format.md).
//
// Load() parses manifest.json with protobuf's JSON parser (unknown fields are
// errors naming the field), applies docs/model-spec.md's defaults, and checks
// that the architecture is consistent and that every tensor docs/model-spec.md
// requires is listed once with the right shape, a known dtype, a listed file,
// a 64-byte aligned offset and a range inside that file. It does not open the
// weight files: ExpertStore and the engine read them through ReadFile(),
// which verifies their size and checksum.
//
// Thread-safe: immutable after Load().
#ifndef EDGE_COMMON_MODEL_MANIFEST_H_
#define EDGE_COMMON_MODEL_MANIFEST_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/file_buffer.h"
#include "proto/model_manifest.pb.h"

namespace edge {

// Limits that keep a hostile or mistaken manifest from asking for absurd
// allocations. They are far above every reference configuration (largest:
// image 224, dim 512, mlp 2048, 32 experts, 1000 classes).
inline constexpr int kMaxImageSize = 4096;
inline constexpr int kMaxDim = 16384;
inline constexpr int kMaxDepth = 256;
inline constexpr int kMaxExperts = 1024;
inline constexpr int kMaxClasses = 1000000;
inline constexpr int kMaxTokens = 65536;

enum class DType { kF32, kBF16, kI8 };
enum class Routing { kImage, kToken };
enum class Pooling { kAvg, kToken };

// Element size in bytes.
int DTypeSize(DType dtype);
// "F32", "BF16", "I8".
const char* DTypeName(DType dtype);

struct MoeSpec {
  std::vector<int> layers;  // sorted, unique, each in [0, depth).
  int num_experts = 0;      // E; > 0 iff layers is non-empty.
  int top_k = 0;            // k in [1, E].
  Routing routing = Routing::kImage;
  bool renormalize = true;
  float capacity_factor = 1.0f;
  bool batch_priority = true;

  bool IsMoeLayer(int block) const;
};

// docs/model-spec.md's architecture with every default applied.
struct ModelConfig {
  int image_size = 0;   // S
  int patch_size = 0;   // P
  int dim = 0;          // D
  int depth = 0;        // L
  int heads = 0;        // H
  int mlp_dim = 0;      // F
  int num_classes = 0;  // C
  float norm_eps = 1e-6f;
  bool class_token = false;
  Pooling global_pool = Pooling::kAvg;
  MoeSpec moe;

  int grid() const { return image_size / patch_size; }
  int num_patches() const { return grid() * grid(); }                       // N
  int num_tokens() const { return num_patches() + (class_token ? 1 : 0); }  // T
  int head_dim() const { return dim / heads; }
  // Token routing: ceil(k * T * capacity_factor / E), computed exactly on
  // the decimal the manifest wrote (1.1, not float 1.10000002), and capped at
  // T, which routes the same: an expert gets at most one slot per token.
  int expert_capacity() const;
  // The routing as the gateway reports it (GetModelInfo, the
  // edge_gateway_model_info metric): "image" or "token" as the manifest
  // spells it, or "dense" for a model without MoE layers, whose moe.routing
  // routes nothing.
  const char* routing_name() const;
};

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string file;           // relative to the model directory.
  uint64_t offset_bytes = 0;  // from the start of the file; multiple of 64.
  uint64_t size_bytes = 0;    // == product(shape) * DTypeSize(dtype).
};

struct FileInfo {
  std::string path;  // relative to the model directory.
  std::string sha256;
  uint64_t size_bytes = 0;
};

// Why ModelManifest::ReadFile() refused a weight file.
enum class WeightFileError {
  kNone,
  kMissing,           // NOT_FOUND: no such file.
  kReadError,         // open, stat or read failed (the errno's code).
  kSizeMismatch,      // DATA_LOSS: not the manifest's size, or its size
                      // changed while it was read.
  kChecksumMismatch,  // DATA_LOSS: not the manifest's SHA-256.
};

class ModelManifest {
 public:
  // Reads `model_dir`/manifest.json.
  static absl::StatusOr<ModelManifest> Load(const std::string& model_dir);
  // Parses manifest text; `model_dir` is only remembered for path joins.
  static absl::StatusOr<ModelManifest> Parse(std::string_view json,
                                             const std::string& model_dir);

  const std::string& model_dir() const { return model_dir_; }
  const std::string& name() const { return proto_.name(); }
  const ModelConfig& config() const { return config_; }
  const edge::model::v1::Manifest& proto() const { return proto_; }
  // num_classes labels; "class_<i>" where the manifest lists none.
  const std::vector<std::string>& labels() const { return labels_; }
  const std::array<float, 3>& mean() const { return mean_; }
  const std::array<float, 3>& stddev() const { return std_; }
  // "float32" (default), "bf16" or "int8".
  const std::string& precision() const { return precision_; }

  // nullptr if absent.
  const TensorInfo* FindTensor(std::string_view name) const;
  // Reads `file` (one of files()) into memory (FileBuffer::Read) and
  // checks the bytes read against the manifest: DATA_LOSS naming the path
  // if their size or SHA-256 differ; FileBuffer::Read's error if the file
  // cannot be read. The bytes returned are exactly the bytes hashed.
  // `error`, if not null, is set to why the file was refused (kNone if it
  // was not).
  absl::StatusOr<std::unique_ptr<FileBuffer>> ReadFile(
      const FileInfo& file, WeightFileError* error = nullptr) const;
  const FileInfo* FindFile(std::string_view path) const;
  const std::vector<FileInfo>& files() const { return files_; }
  // The file holding every tensor of expert `expert` of block `layer`.
  // REQUIRES: config().moe.IsMoeLayer(layer) && 0 <= expert < E.
  const std::string& ExpertFile(int layer, int expert) const;
  // model_dir()/relative_path.
  std::string PathOf(std::string_view relative_path) const;

 private:
  std::string model_dir_;
  edge::model::v1::Manifest proto_;
  ModelConfig config_;
  std::vector<std::string> labels_;
  std::array<float, 3> mean_{};
  std::array<float, 3> std_{};
  std::string precision_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
  std::vector<FileInfo> files_;
  std::map<std::pair<int, int>, std::string> expert_files_;
};

// docs/model-spec.md's tensor names for one expert:
// "blocks.{layer}.moe.experts.{e}."
std::string ExpertTensorPrefix(int layer, int expert);

}  // namespace edge

#endif  // EDGE_COMMON_MODEL_MANIFEST_H_
