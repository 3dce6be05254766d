#include "cache/sim/trace_generator.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "cache/sim/internal/camera_fleet.h"
#include "cache/sim/internal/synthetic_router.h"
#include "tools/cpp/random.h"

namespace edge {
namespace {

// Tags the per-image routing stream (noise, token choices) apart from the
// cameras', the ranking's and the router table's streams.
constexpr uint64_t kImageStream = 0x494d414745532121ull;  // "IMAGES!!"

bool InUnit(double p) { return p >= 0 && p <= 1; }

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("trace generator: ", what));
}

absl::Status ValidateShape(const TraceGeneratorOptions& o) {
  if (o.moe_layers.empty()) return Invalid("no MoE layers");
  for (int layer : o.moe_layers) {
    if (layer < 0) return Invalid(absl::StrCat("MoE layer ", layer, " < 0"));
  }
  if (o.num_experts <= 0) return Invalid("num_experts must be > 0");
  if (o.top_k < 1 || o.top_k > o.num_experts) {
    return Invalid(
        absl::StrCat("top_k ", o.top_k, " outside [1, ", o.num_experts, "]"));
  }
  if (o.expert_bytes == 0) return Invalid("expert_bytes must be > 0");
  if (o.tokens <= 0) return Invalid("tokens must be > 0");
  return absl::OkStatus();
}

// One pass per MoE layer of batch `batch`, appended to `trace`.
void EmitBatch(const TraceGeneratorOptions& o, int batch,
               const std::vector<int>& scenes,
               const internal::SyntheticRouter& router, std::mt19937_64& rng,
               std::vector<ExpertAccess>* trace) {
  const int layers = static_cast<int>(o.moe_layers.size());
  for (int l = 0; l < layers; ++l) {
    std::set<int> experts;  // sorted: the order a pass runs them in.
    for (int scene : scenes) router.Route(scene, l, rng, &experts);
    ExpertAccess access;
    access.time_us = batch * o.batch_time_us + l * o.batch_time_us / layers;
    access.pass = static_cast<int64_t>(batch) * layers + l;
    access.key.layer = o.moe_layers[l];
    access.bytes = o.expert_bytes;
    for (int e : experts) {
      access.key.expert = e;
      trace->push_back(access);
    }
  }
}

}  // namespace

absl::Status ValidateTraceGeneratorOptions(const TraceGeneratorOptions& o) {
  if (o.scenes <= 0) return Invalid("scenes must be > 0");
  if (o.zipf_alpha < 0) return Invalid("zipf_alpha must be >= 0");
  if (o.cameras <= 0) return Invalid("cameras must be > 0");
  if (!InUnit(o.dwell)) return Invalid("dwell outside [0, 1]");
  if (o.drift_batches < 0) return Invalid("drift_batches must be >= 0");
  if (o.batch_frames <= 0) return Invalid("batch_frames must be > 0");
  if (o.batches <= 0) return Invalid("batches must be > 0");
  if (o.batch_time_us <= 0) return Invalid("batch_time_us must be > 0");
  if (o.expert_alpha < 0) return Invalid("expert_alpha must be >= 0");
  if (!InUnit(o.routing_noise)) return Invalid("routing_noise outside [0, 1]");
  if (!InUnit(o.token_scene_share)) {
    return Invalid("token_scene_share outside [0, 1]");
  }
  return ValidateShape(o);
}

absl::Status ApplyModelShape(const ModelManifest& manifest,
                             TraceGeneratorOptions* options) {
  const ModelConfig& c = manifest.config();
  if (c.moe.layers.empty()) {
    return Invalid(absl::StrCat(manifest.model_dir(), " has no MoE layer"));
  }
  uint64_t bytes = 0;
  const std::string prefix = ExpertTensorPrefix(c.moe.layers[0], 0);
  for (const char* name :
       {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
    const TensorInfo* t = manifest.FindTensor(prefix + name);
    // Load() checked that every tensor docs/model-spec.md requires is listed.
    if (t == nullptr) return Invalid(absl::StrCat("no tensor ", prefix, name));
    bytes += t->size_bytes;
  }
  options->moe_layers = c.moe.layers;
  options->num_experts = c.moe.num_experts;
  options->top_k = c.moe.top_k;
  options->routing = c.moe.routing;
  options->tokens = c.num_tokens();
  options->expert_bytes = bytes;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ExpertAccess>> GenerateTrace(
    const TraceGeneratorOptions& options) {
  if (absl::Status s = ValidateTraceGeneratorOptions(options); !s.ok()) {
    return s;
  }
  internal::CameraFleet fleet(options);
  const internal::SyntheticRouter router(options);
  std::mt19937_64 image_rng(SplitMix64(options.seed ^ kImageStream));
  std::vector<ExpertAccess> trace;
  int64_t frame = 0;
  std::vector<int> scenes(options.batch_frames);
  for (int b = 0; b < options.batches; ++b) {
    for (int& scene : scenes) {
      scene = fleet.NextScene(static_cast<int>(frame++ % options.cameras), b);
    }
    EmitBatch(options, b, scenes, router, image_rng, &trace);
  }
  return trace;
}

}  // namespace edge
