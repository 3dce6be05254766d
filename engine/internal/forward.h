// ForwardPass: one batch through the model (MODEL_SPEC "Forward pass").
// Internal to VmoeEngine; see engine/vmoe_engine.h for the design.
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
#include "engine/internal/expert_predictor.h"
#include "engine/internal/kernels.h"
#include "engine/internal/model_weights.h"
#include "engine/vmoe_engine.h"

namespace edge::internal {

// Activation buffers for batches of up to `batch` images. Reused across
// Run() calls, so the hot path allocates only when a larger batch arrives.
struct Workspace {
  explicit Workspace(const dnnl::engine& engine) : exec(engine) {}
  void Reserve(const ModelConfig& c, int batch);

  ExecContext exec;  // stream and scratchpad of this workspace's caller.
  int batch = 0;
  std::vector<float> patches;     // [B*N, 3*P*P]
  std::vector<float> x;           // [B*T, D] residual stream
  std::vector<float> h;           // [B*T, D] normalised
  std::vector<float> qkv;         // [B*T, 3D]
  std::vector<float> scores;      // [B*H*T*T]
  std::vector<float> context;     // [B*T, D]
  std::vector<float> hidden;      // [B*T, F]
  std::vector<float> gathered;    // [B*T, D] tokens routed to one expert
  std::vector<float> expert_out;  // [B*T, D]
  std::vector<float> gates;       // [B*T, E]
  std::vector<float> pooled;      // [B, D]
  std::vector<float> logits;      // [B, C]
};

struct ForwardContext {
  const ModelConfig* config;
  const ModelWeights* weights;
  Kernels* kernels;
  ExpertCache* cache;
  NextLayerPredictor* predictor;  // null: no next-layer prefetch.
  ExpertFailurePolicy failure_policy;
};

class ForwardPass {
 public:
  ForwardPass(const ForwardContext& ctx, Workspace* ws, int batch);

  // Fills one ImageResult per image; throws dnnl::error on oneDNN failure.
  std::vector<ImageResult> Run(const float* images, RunTiming* timing);

 private:
  // One token row's share of an expert's work.
  struct Assignment {
    int row;  // b * T + t
    float weight;
  };

  void Embed(const float* images);
  void Attention(const BlockWeights& w);
  void Mlp(const BlockWeights& w);
  void Moe(const BlockWeights& w, int block, int moe_index);
  absl::Status AcquireAndRun(int block, int expert,
                             const std::vector<Assignment>& rows, int64_t pass);
  void FailRows(const std::vector<Assignment>& rows,
                const absl::Status& status);
  std::vector<int> ChosenExperts(int moe_index, int row) const;
  void Reroute(int block, int moe_index, int64_t pass,
               const std::vector<std::vector<Assignment>>& per_expert,
               std::map<int, absl::Status> failed);
  void MarkDegraded(const std::vector<Assignment>& rows,
                    const absl::Status& cause, int block, int substitute);
  void PredictNextLayer(int moe_index, const std::vector<int>& used);
  UnitExperts UnitsAt(int moe_index) const;
  // Per expert, the rows routed to it in this layer (and fills routing).
  std::vector<std::vector<Assignment>> Route(const BlockWeights& w,
                                             int moe_index);
  void RunExpert(const CachedExpert& expert,
                 const std::vector<Assignment>& rows);
  void MeanOfPatchTokens(const float* src, float* dst);
  void Head();

  const ForwardContext ctx_;
  const ModelConfig& c_;
  Workspace& ws_;
  const int batch_;
  const int tokens_;
  ExecContext& exec_;
  std::vector<ImageResult> results_;
  int64_t fetch_us_ = 0;
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
