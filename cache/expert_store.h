// ExpertStore: reads one expert's weights from a model directory.
//
// Each expert lives in its own safetensors file (docs/model-format.md), so it
// can be loaded and dropped alone. Every Load() reads the expert's whole file
// into memory it owns (ModelManifest::ReadFile), checks the size and SHA-256
// of the bytes read against the manifest, and returns views of the tensors
// into that buffer. So an expert is never used in bytes other than the ones
// that were verified: a file rewritten, truncated or replaced on disk after
// an earlier load is refused (or, if its bytes still match, used) at the
// next load, and nothing done to the file can reach a loaded expert. The
// buffer lives as long as the returned RawExpert: the engine drops it once
// the expert is prepared, so each loading thread holds one file's bytes at
// a time, outside the cache's budget (as the mapping it replaced did).
//
// Cost (engine/expert_load_bench on this project's 2-core VM, shared with
// other builds, 2026-12-07; page cache unless said): a vmoe-tiny-224
// expert (1.18 MB, float32) loads in 1.3 ms, ExpertStore::Load 1.1 (read
// 0.2, SHA-256 0.75) plus the engine's prepare 0.17; a vmoe-s32-e32 one
// (8.4 MB) in 16 ms, Load 11 (read 1.0, SHA-256 6.9) plus prepare 4.6.
// Hashing is 40-60% of a load. Against the mapped path this replaced
// (mmap, hashed on the first load only), timed interleaved per expert in
// one process: vmoe-tiny-224 1.7 ms now against 2.0 ms then (faulting in
// the mapping's pages cost what the hash costs now); vmoe-s32-e32 13.7
// against 10.9 ms, from disk 27.9 against 23.8 ms. A cheaper check (a CRC
// remembered from the first verified load) would save most of the hash
// but only catch accidents, not a substituted file: full verification
// stays.
//
// Errors name the file: NOT_FOUND (missing), DATA_LOSS (size or checksum
// mismatch, or the file changed size while being read), others for I/O.
// Each is counted in stats() by reason. A failed load is not remembered: a
// later call tries again, so a file repaired on disk is picked up.
//
// Thread-safe.
#ifndef EDGE_CACHE_EXPERT_STORE_H_
#define EDGE_CACHE_EXPERT_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/expert_key.h"
#include "common/file_buffer.h"
#include "common/model_manifest.h"

namespace edge {

// A view of one tensor inside a file's buffer.
struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t size_bytes = 0;
};

// One expert's weights, valid while `file` is held.
struct RawExpert {
  ExpertKey key;
  std::shared_ptr<const FileBuffer> file;
  TensorView fc1_weight;  // [F, D]
  TensorView fc1_bias;    // [F]
  TensorView fc2_weight;  // [D, F]
  TensorView fc2_bias;    // [D]
  // int8 experts only: per-output-channel scales ([F] and [D], float32).
  TensorView fc1_weight_scale;
  TensorView fc2_weight_scale;
};

// Loads refused because of the expert's file, by reason, since creation.
struct ExpertStoreStats {
  uint64_t missing = 0;              // no such file.
  uint64_t read_errors = 0;          // open or read failed.
  uint64_t size_mismatches = 0;      // wrong size, or resized while read.
  uint64_t checksum_mismatches = 0;  // not the manifest's SHA-256.
};

class ExpertStore {
 public:
  // REQUIRES: `manifest` outlives the store.
  static absl::StatusOr<std::unique_ptr<ExpertStore>> Create(
      const ModelManifest* manifest);

  // Thread-safe. INVALID_ARGUMENT for a key that names no expert.
  absl::StatusOr<RawExpert> Load(const ExpertKey& key) const;

  // Starts reading the expert's file into the page cache in the background
  // (FileBuffer::ReadAhead), so that a Load() soon after finds it there.
  // Thread-safe; best effort; a key that names no expert is ignored.
  void ReadAhead(const ExpertKey& key) const;

  // Bytes of the expert's file on disk (0 for a key that names no expert).
  uint64_t FileBytes(const ExpertKey& key) const;
  // Number of experts in the model (all MoE layers).
  int num_experts_total() const;
  // Thread-safe.
  ExpertStoreStats stats() const;

 private:
  explicit ExpertStore(const ModelManifest* manifest);
  // The manifest's entry for the expert's file. REQUIRES: `key` names an
  // expert of the model.
  const FileInfo& ExpertFileInfo(const ExpertKey& key) const;
  void CountRefusal(WeightFileError error) const;

  const ModelManifest* const manifest_;
  // Refused loads, one counter per WeightFileError value (kNone stays 0).
  mutable std::atomic<uint64_t>
      refused_[static_cast<int>(WeightFileError::kChecksumMismatch) + 1] = {};
};

}  // namespace edge

#endif  // EDGE_CACHE_EXPERT_STORE_H_
