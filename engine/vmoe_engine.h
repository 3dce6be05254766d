// VmoeEngine: runs a Vision Mixture-of-Experts model (docs/model-spec.md) on a
// batch of normalised images with oneDNN.
//
// Create() loads and verifies the model directory, reorders every
// non-expert weight once into oneDNN's preferred layout and sets up the
// expert cache; experts are loaded on demand through ExpertStore ->
// ExpertCache (byte budget, LRU, pinning). Run() computes a batch:
//
//   patch embedding (patchify + matmul) -> blocks (LayerNorm, attention,
//   dense MLP or MoE) -> final norm -> pool -> head
//
// An MoE layer routes per image or per token (engine/router.h), then runs
// each selected expert ONCE over all tokens of the batch routed to it
// (gather -> fc1+GELU -> fc2 -> weighted scatter-add into the residual), so
// an expert's weights are fetched and streamed once per batch, not per image.
//
// Failure isolation: if an expert cannot be loaded (missing or corrupt file)
// only the images routed to it fail, with a status naming the file; the
// rest of the batch is answered, and later batches that do not need the
// expert are unaffected. oneDNN errors never escape: they become INTERNAL.
//
// Non-finite answers: an image whose logits contain NaN or Inf fails with
// DATA_LOSS naming the experts it used, whatever produced them (weights
// that hash correctly but hold absurd values, arithmetic that overflowed).
// No score computed from such logits means anything, so no caller may
// serve one; the check costs one pass over C floats per image. Every
// integrity event (refused expert files by reason, non-finite answers) is
// counted in integrity_stats().
//
// Precision (EngineOptions::compute_dtype): float32, or bfloat16 for every
// large matmul (patch embedding, qkv, attention, proj, MLPs, experts) with
// float32 accumulation, while the residual stream, LayerNorm statistics,
// softmaxes, the image router and the head stay float32. Experts stored in
// lower precision (bf16, or int8 with per-output-channel scales; see
// docs/model-format.md) are held at that size in the cache and computed in
// it: int8 experts quantise their input rows per call (one scale per
// matrix) and run oneDNN's int8 matmul (VNNI).
//
// Thread-safe: Run() may be called from several threads. Every call (and
// Create()'s weight preparation) computes on the engine's own compute
// thread, one call at a time: oneDNN parallelises each primitive over all
// cores (OpenMP), and a second thread opening OpenMP regions would make
// libgomp throttle its spin-waits (engine/internal/compute_thread.h).
#ifndef EDGE_ENGINE_VMOE_ENGINE_H_
#define EDGE_ENGINE_VMOE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/expert_cache.h"
#include "cache/expert_store.h"
#include "common/model_manifest.h"
#include "engine/router.h"

namespace edge {

// What an MoE layer does when an expert it routed to cannot be loaded
// (file missing, checksum mismatch, I/O error).
enum class ExpertFailurePolicy {
  // The images routed to it fail with the load's status (NOT_FOUND,
  // DATA_LOSS, ...) naming the file; the rest of the batch is served.
  kFail,
  // Each such image uses its next-best expert by gate value that loads,
  // with the gate weights of the experts it does use; the image's result
  // is marked degraded (ImageResult::degraded). If no expert loads, the
  // image fails as with kFail. Non-finite logits fail as with kFail too:
  // they name no expert to replace (any weight, or the arithmetic, may be
  // at fault), so there is nothing to reroute to.
  kReroute,
};

// Arithmetic of the engine's large matmuls.
enum class ComputeDtype {
  kFloat32,   // docs/model-spec.md's reference arithmetic.
  kBfloat16,  // bf16 inputs, f32 accumulation (needs AVX512-BF16 for speed).
};

// "f32"/"float32" or "bf16"/"bfloat16"; INVALID_ARGUMENT otherwise.
absl::StatusOr<ComputeDtype> ParseComputeDtype(absl::string_view name);
const char* ComputeDtypeName(ComputeDtype dtype);  // "f32" or "bf16"

// The largest batch an engine accepts by default, and the largest
// max_batch_size the gateway may be configured with: an engine made
// without a configuration (tools, tests) runs every batch a served one
// could. 64 is four times the served default of 16: on two cores a batch
// of 16 computes only 5-9% more images/s than a batch of 1 (BENCHMARKS.md),
// so larger batches would add latency and workspace memory for next to no
// throughput.
inline constexpr int kMaxBatchSize = 64;

struct EngineOptions {
  // Largest batch Run() accepts; workspaces are sized for it on demand.
  // The gateway sets it to its own max_batch_size.
  int max_batch_size = kMaxBatchSize;
  ComputeDtype compute_dtype = ComputeDtype::kFloat32;
  // OpenMP threads each Run() computes with; 0 keeps OpenMP's default
  // (OMP_NUM_THREADS, else one per CPU the process may run on). Set it to
  // the cores the engine really gets (a container's CPU limit): threads
  // beyond them wait at every barrier for a descheduled peer.
  int num_threads = 0;
  ExpertCacheOptions cache;
  ExpertFailurePolicy expert_failure_policy = ExpertFailurePolicy::kFail;
  // Prefetch the predicted experts of the next MoE layer (co-activation
  // statistics learned online) while the current one computes. Needs
  // cache.prefetch_threads > 0.
  bool prefetch_next_layer = true;
};

// The routing of one image in one MoE layer.
struct LayerRouting {
  int layer = 0;  // block index.
  // Image routing: the k experts, gate order. Empty with token routing.
  std::vector<ExpertChoice> image_choices;
  // Token routing: T * k assignments, token-major, and whether each kept
  // its slot. Empty with image routing.
  std::vector<ExpertChoice> token_choices;
  std::vector<uint8_t> token_kept;
};

struct ImageResult {
  // Not OK if an expert this image was routed to could not be loaded, or
  // DATA_LOSS if its logits were not all finite; then `logits` is empty.
  // `routing` is filled either way.
  absl::Status status;
  std::vector<float> logits;          // num_classes values.
  std::vector<LayerRouting> routing;  // one per MoE layer, in block order.
  // Served with a substitute expert (ExpertFailurePolicy::kReroute);
  // `degraded_reason` names the expert(s) that failed and why.
  bool degraded = false;
  std::string degraded_reason;
};

// Where the time of one Run() went, in microseconds. The stages add up to
// about total_us: oneDNN's CPU primitives have finished when execute()
// returns, so a clock read between stages is exact without extra waits.
struct RunTiming {
  int64_t total_us = 0;
  int64_t expert_fetch_us = 0;  // waiting in ExpertCache::Acquire().
  int64_t embed_us = 0;         // patchify, patch matmul, position add.
  int64_t attention_us = 0;     // every block: LN1, qkv, attention, proj.
  int64_t mlp_us = 0;           // dense blocks: LN2, fc1+GELU, fc2.
  int64_t moe_us = 0;           // MoE blocks: LN2, routing, experts, fetch.
  int64_t head_us = 0;          // final norm, pooling, head.
};

class VmoeEngine {
 public:
  // Loads `model_dir`. Errors: the manifest's (INVALID_ARGUMENT naming the
  // field), a missing weight file (NOT_FOUND) or a corrupt one (DATA_LOSS),
  // each naming the file.
  static absl::StatusOr<std::unique_ptr<VmoeEngine>> Create(
      const std::string& model_dir, EngineOptions options = {});
  // The same for a manifest the caller has loaded (ModelManifest::Load),
  // so that start-up reads it once.
  static absl::StatusOr<std::unique_ptr<VmoeEngine>> Create(
      ModelManifest manifest, EngineOptions options = {});
  ~VmoeEngine();

  const ModelManifest& manifest() const;
  const ModelConfig& config() const;
  // What the engine computes in: the compute dtype ("float32" or "bf16"),
  // followed by "/bf16-experts" or "/int8-experts" when the experts are
  // stored, and computed, in another precision. "float32" by default.
  const std::string& precision() const;

  // Runs `batch_size` images, `images` being [batch_size, 3, S, S] float32
  // normalised per the manifest's preprocessing. Returns one result per
  // image. INVALID_ARGUMENT if batch_size is outside [1, max_batch_size].
  absl::StatusOr<std::vector<ImageResult>> Run(const float* images,
                                               int batch_size,
                                               RunTiming* timing = nullptr);

  ExpertCacheStats cache_stats() const;
  // The cache itself, for warm-up and usage profiles.
  ExpertCache* cache();
  // Next-layer prefetch predictions so far: guesses issued, and how many
  // of them the next layer did use (precision = used / issued); recall =
  // used / experts the next layers used.
  struct PrefetchPredictionStats {
    uint64_t guesses = 0;
    uint64_t guesses_used = 0;
    uint64_t next_layer_experts = 0;
  };
  PrefetchPredictionStats prediction_stats() const;
  // What the engine refused since Create(): expert loads, by why the file
  // was refused (each attempt counts, so a broken file counts once per
  // batch that needs it), and images whose logits were not finite.
  struct IntegrityStats {
    ExpertStoreStats expert_files;
    uint64_t non_finite_results = 0;
  };
  IntegrityStats integrity_stats() const;

 private:
  struct State;
  explicit VmoeEngine(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace edge

#endif  // EDGE_ENGINE_VMOE_ENGINE_H_
