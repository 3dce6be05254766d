// ForwardPass: one batch through the model (docs/model-spec.md, "Forward
// pass"). Internal to VmoeEngine; see engine/vmoe_engine.h for the design.
//
// Precision: the residual stream x, LayerNorm statistics, softmaxes, the
// router and the head are float32 always. The activations that feed the big
// matmuls (normalised rows, qkv, attention context, MLP hidden) have the
// engine's activation type: f32, or bf16 with compute_dtype bf16. Experts
// compute in the type they were prepared in (model_weights.h): f32/bf16
// experts read those rows directly (converted while gathering if needed),
// int8 experts read them quantised per call to u8 with one scale and zero
// point per matrix (asymmetric: the post-GELU hidden is mostly >= 0, where
// a symmetric s8 code would waste its negative half).
//
// Not thread-safe: one ForwardPass per Run() call, each with its own
// Workspace (buffers, stream, scratchpad). The shared parts (weights, kernels,
// cache) are.
#ifndef EDGE_ENGINE_INTERNAL_FORWARD_H_
#define EDGE_ENGINE_INTERNAL_FORWARD_H_

#include <map>
#include <vector>

#include "cache/expert_cache.h"
#include "common/model_manifest.h"
#include "engine/internal/aligned_buffer.h"
#include "engine/internal/expert_predictor.h"
#include "engine/internal/kernels.h"
#include "engine/internal/model_weights.h"
#include "engine/vmoe_engine.h"

namespace edge::internal {

// Activation buffers for batches of up to `batch` images, sized for float32
// so that one Workspace serves every precision. Reused across Run() calls,
// so the hot path allocates only when a larger batch arrives.
struct Workspace {
  explicit Workspace(const dnnl::engine& engine) : exec(engine) {}
  void Reserve(const ModelConfig& c, int batch);

  ExecContext exec;  // streams and scratchpads of this workspace's caller.
  int batch = 0;
  AlignedBuffer patches;   // [B*N, 3*P*P]
  AlignedBuffer x;         // [B*T, D] residual stream, f32
  AlignedBuffer h;         // [B*T, D] normalised
  AlignedBuffer qkv;       // [B*T, 3D]
  AlignedBuffer context;   // [B*T, D]
  AlignedBuffer hidden;    // [B*T, F]
  AlignedBuffer hidden_q;  // [B*T, F] int8 experts: hidden, quantised (u8)
  AlignedBuffer gathered;  // [B*T, D] tokens routed to one expert
  AlignedBuffer rows_f32;  // [B*T, D] f32: patch embeddings, expert output,
                           // final norm
  AlignedBuffer gates;     // [B*T, E] f32
  AlignedBuffer pooled;    // [B, D] f32
  AlignedBuffer logits;    // [B, C] f32
  // Per expert of the current MoE layer, the token rows routed to it.
  std::vector<std::vector<RowWeight>> routed;
};

struct ForwardContext {
  const ModelConfig* config;
  const ModelWeights* weights;
  Kernels* kernels;
  ExpertCache* cache;
  NextLayerPredictor* predictor;  // null: no next-layer prefetch.
  ExpertFailurePolicy failure_policy;
  DataType activations;  // f32 or bf16
};

class ForwardPass {
 public:
  ForwardPass(const ForwardContext& ctx, Workspace* ws, int batch);

  // Fills one ImageResult per image; throws dnnl::error on oneDNN failure.
  std::vector<ImageResult> Run(const float* images, RunTiming* timing);
  // Images of the batch failed for non-finite logits (after Run()).
  int non_finite_results() const { return non_finite_results_; }

 private:
  void Embed(const float* images);
  void Attention(const BlockWeights& w);
  void Mlp(const BlockWeights& w);
  void Moe(const BlockWeights& w, int block, int moe_index);
  absl::Status AcquireAndRun(int block, int expert,
                             const std::vector<RowWeight>& rows, int64_t pass);
  void FailRows(const std::vector<RowWeight>& rows, const absl::Status& status);
  std::vector<int> ChosenExperts(int moe_index, int row) const;
  void Reroute(int block, int moe_index, int64_t pass,
               const std::vector<std::vector<RowWeight>>& per_expert,
               std::map<int, absl::Status> failed);
  void MarkDegraded(const std::vector<RowWeight>& rows,
                    const absl::Status& cause, int block, int substitute);
  void PredictNextLayer(int moe_index, const std::vector<int>& used);
  UnitExperts UnitsAt(int moe_index) const;
  // Per expert, the rows routed to it in this layer (and fills routing);
  // valid until the next call.
  const std::vector<std::vector<RowWeight>>& Route(const BlockWeights& w,
                                                   int moe_index);
  const std::vector<std::vector<RowWeight>>& RouteTokens(const BlockWeights& w,
                                                         int moe_index);
  // ws_.routed with one empty list per expert.
  std::vector<std::vector<RowWeight>>& ClearedRouting();
  void RunExpert(const CachedExpert& expert,
                 const std::vector<RowWeight>& rows);
  void Head();

  // A buffer as an activation (engine type) or f32 matrix.
  MatrixRef Act(const AlignedBuffer& b) const { return {b.data(), act_}; }
  static MatrixRef F32(const AlignedBuffer& b) {
    return {b.data(), DataType::f32};
  }
  int64_t rows() const { return static_cast<int64_t>(batch_) * tokens_; }

  const ForwardContext ctx_;
  const ModelConfig& c_;
  Workspace& ws_;
  const int batch_;
  const int tokens_;
  const int first_patch_;  // 1 with a class token, else 0.
  const DataType act_;
  ExecContext& exec_;
  std::vector<ImageResult> results_;
  int64_t fetch_us_ = 0;
  int non_finite_results_ = 0;
  // Next-layer prediction state of this batch.
  UnitExperts previous_units_;
  std::vector<int> guesses_;
  // Prefetch an expert of the next layer only if the batch needs it with
  // at least this probability: a wrong guess costs a load and may evict a
  // useful expert, a right one saves a load on the critical path, so
  // guess only when more likely right than wrong.
  static constexpr double kMinPrefetchProbability = 0.5;
};

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_FORWARD_H_
