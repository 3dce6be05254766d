// Synthetic expert access traces of a camera fleet, for cache_sim and its
// tests: what an MoE gateway serving fixed cameras would ask its expert
// cache for, without a trained model or a running gateway.
//
// The model, one step per batch:
//
//   Cameras. C cameras share K scenes whose popularity is Zipf(alpha) over
//   a ranking, each camera offset into the ranking so that it has "its"
//   scenes (ScenePicker, tools/cpp/scene_picker.h: the same model edge-loadtest
//   sends frames by). A camera's next frame keeps its current scene with
//   probability `dwell` (a fixed camera sees the same view for a while) and
//   otherwise draws a scene. Every `drift_batches` the ranking is
//   reshuffled, so the hot scenes change.
//   Batches. A batch holds `batch_frames` frames taken round-robin across
//   the cameras (frames interleaved as a dynamic batcher sees them).
//   Routing, image mode (docs/model-spec.md's image routing). Each scene is
//   routed, in each MoE layer, to top_k experts drawn once from a skewed
//   per-layer expert popularity (Zipf(expert_alpha) over a shuffled expert
//   order: trained routers favour some experts); with probability
//   `routing_noise` per choice an image picks another expert of that
//   distribution instead (images of one scene differ a little).
//   Routing, token mode (per-token routing, approximated). Each of the
//   image's `tokens` tokens picks top_k distinct experts, each choice one
//   of its scene's experts with probability `token_scene_share`, otherwise
//   drawn from the layer's skewed distribution; capacity limits are
//   ignored (they drop tokens, rarely whole experts). A batch then touches
//   most experts of every layer.
//
// A batch emits, for each MoE layer in order, one pass (pass id = batch *
// layers + layer index) accessing the sorted union of its images' experts,
// at time batch * batch_time_us + layer index * batch_time_us / layers.
//
// Deterministic: the trace depends only on the options (seed included).
// Stateless and thread-safe.
#ifndef EDGE_CACHE_SIM_TRACE_GENERATOR_H_
#define EDGE_CACHE_SIM_TRACE_GENERATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cache/access_trace.h"
#include "common/model_manifest.h"

namespace edge {

struct TraceGeneratorOptions {
  // The fleet. 64 scenes and Zipf 1.0 are edge-loadtest's defaults.
  int scenes = 64;          // K, > 0.
  double zipf_alpha = 1.0;  // >= 0; 0 is uniform.
  int cameras = 16;         // C, > 0.
  // P(a camera's next frame shows the scene of its previous frame), in
  // [0, 1]. 0.9: a camera keeps a view for ~10 frames on average; 0 gives
  // i.i.d. frames (the harder reference case).
  double dwell = 0.9;
  int drift_batches = 0;  // Ranking reshuffled every this many; 0 = never.

  // Batching and time. 8 frames: the mean batch edge-loadtest's 16
  // closed-loop clients produced (BENCHMARKS.md, dynamic batching).
  int batch_frames = 8;  // > 0.
  int batches = 2000;    // > 0.
  // Only the trace's time column; the policies in cache_sim do not read it.
  int64_t batch_time_us = 100000;

  // The model's shape; defaults: vmoe-s32-e32 (docs/model-spec.md), whose
  // float32 expert is fc1 [2048, 512] + [2048] and fc2 [512, 2048] + [512]:
  // 4 * (2 * 1048576 + 2560) = 8398848 bytes, also what the engine's
  // PreparedExpertBytes() reports for it with oneDNN 2.6 on AVX-512.
  std::vector<int> moe_layers = {5, 7};  // Non-empty, each >= 0.
  int num_experts = 32;                  // E, > 0.
  int top_k = 2;                         // In [1, E].
  uint64_t expert_bytes = 8398848;       // > 0.
  Routing routing = Routing::kImage;
  int tokens = 49;  // Token mode: tokens per image ((224 / 32)^2), > 0.

  // Skew of the experts' popularity within a layer, >= 0. 0.6 is a guess
  // at a mild skew (load-balancing losses keep trained routers from
  // collapsing onto a few experts); a recorded trace is the real answer.
  double expert_alpha = 0.6;
  double routing_noise = 0.02;     // Image mode, per choice, in [0, 1].
  double token_scene_share = 0.5;  // Token mode, per choice, in [0, 1].
  uint64_t seed = 1;
};

// INVALID_ARGUMENT naming the first option out of range.
absl::Status ValidateTraceGeneratorOptions(const TraceGeneratorOptions& o);

// Sets the model's shape (moe_layers, num_experts, top_k, routing, tokens
// and expert_bytes: the sum of one expert's four tensors, the size the
// engine prepares for float32) from a loaded manifest. INVALID_ARGUMENT if
// the model has no MoE layer.
absl::Status ApplyModelShape(const ModelManifest& manifest,
                             TraceGeneratorOptions* options);

// The trace the options describe; ValidateTraceGeneratorOptions' error if
// they are out of range.
absl::StatusOr<std::vector<ExpertAccess>> GenerateTrace(
    const TraceGeneratorOptions& options);

}  // namespace edge

#endif  // EDGE_CACHE_SIM_TRACE_GENERATOR_H_
