// ExpertStore: reads one expert's weights from a model directory.
//
// Each expert lives in its own safetensors file (docs/model-format.md), so it
// can be loaded and dropped alone. Load() maps the expert's file, checks its
// size against the manifest and, the first time the file is loaded (or every
// time with `verify_every_load`), its SHA-256; then returns views of the four
// tensors into the mapping. The mapping lives as long as the returned
// RawExpert, so dropping it returns the memory.
//
// Errors name the file: NOT_FOUND (missing), DATA_LOSS (size or checksum
// mismatch), others for I/O. A failed load is not remembered: a later call
// tries again, so a file repaired on disk is picked up.
//
// Thread-safe.
#ifndef EDGE_CACHE_EXPERT_STORE_H_
#define EDGE_CACHE_EXPERT_STORE_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cache/expert_key.h"
#include "common/mapped_file.h"
#include "common/model_manifest.h"

namespace edge {

struct ExpertStoreOptions {
  // Hash the file on every load, not only the first. Off by default: the
  // first load proves the file is intact, and hashing costs ~5 ms per 8 MB.
  bool verify_every_load = false;
};

// A view of one tensor inside a mapped file.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t size_bytes = 0;
};

// One expert's weights, valid while `file` is held.
struct RawExpert {
  ExpertKey key;
  std::shared_ptr<const MappedFile> file;
  TensorView fc1_weight;  // [F, D]
  TensorView fc1_bias;    // [F]
  TensorView fc2_weight;  // [D, F]
  TensorView fc2_bias;    // [D]
  // int8 experts only: per-output-channel scales ([F] and [D], float32).
  TensorView fc1_weight_scale;
  TensorView fc2_weight_scale;
};

class ExpertStore {
 public:
  // REQUIRES: `manifest` outlives the store.
  static absl::StatusOr<std::unique_ptr<ExpertStore>> Create(
      const ModelManifest* manifest, ExpertStoreOptions options = {});

  // Thread-safe. INVALID_ARGUMENT for a key that names no expert.
  absl::StatusOr<RawExpert> Load(const ExpertKey& key) const;

  // Starts reading the expert's file into the page cache in the background
  // (MappedFile::ReadAhead), so that a Load() soon after finds it there.
  // Thread-safe; best effort; a key that names no expert is ignored.
  void ReadAhead(const ExpertKey& key) const;

  // Bytes of the expert's file on disk (0 for a key that names no expert).
  uint64_t FileBytes(const ExpertKey& key) const;
  // Number of experts in the model (all MoE layers).
  int num_experts_total() const;

 private:
  ExpertStore(const ModelManifest* manifest, ExpertStoreOptions options);
  // The manifest's entry for the expert's file. REQUIRES: `key` names an
  // expert of the model.
  const FileInfo& ExpertFileInfo(const ExpertKey& key) const;

  const ModelManifest* const manifest_;
  const ExpertStoreOptions options_;
  mutable absl::Mutex mu_;
  // Files whose checksum has been verified since start-up.
  mutable std::set<std::string> verified_ ABSL_GUARDED_BY(mu_);
};

}  // namespace edge

#endif  // EDGE_CACHE_EXPERT_STORE_H_
