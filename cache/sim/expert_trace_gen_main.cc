// expert_trace_gen: writes a synthetic camera-fleet expert access trace
// (cache/sim/trace_generator.h explains the model; cache/access_trace.h the
// format) for cache_sim.
//
//   expert_trace_gen --out trace.csv [--model_dir DIR] [--zipf_alpha 1.2]
//       [--dwell 0.9] [--drift_batches 250] [--routing token] [--seed 2]
//
// The model's shape comes from --model_dir, or from --layers, --experts,
// --top_k, --expert_bytes and --tokens; left unset (0 or empty), each takes
// the model's value, or without a model vmoe-s32-e32's. Exit code 0 on
// success, 1 if the trace cannot be written, 2 for a bad command line.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cache/sim/trace_generator.h"

ABSL_FLAG(std::string, out, "", "trace file to write (required)");
ABSL_FLAG(std::string, model_dir, "",
          "take layers, experts, top_k, routing, tokens and expert bytes "
          "from this model's manifest");
ABSL_FLAG(int, scenes, 64, "scenes K");
ABSL_FLAG(double, zipf_alpha, 1.0, "Zipf exponent of scene popularity");
ABSL_FLAG(int, cameras, 16, "cameras C");
ABSL_FLAG(double, dwell, 0.9,
          "probability that a camera's next frame keeps its scene");
ABSL_FLAG(int, drift_batches, 0,
          "reshuffle the popularity ranking every N batches (0 = never)");
ABSL_FLAG(int, batch, 8, "frames per batch");
ABSL_FLAG(int, batches, 2000, "batches in the trace");
ABSL_FLAG(int64_t, batch_time_us, 100000, "trace time per batch");
ABSL_FLAG(std::string, layers, "", "MoE block indices, e.g. 5,7");
ABSL_FLAG(int, experts, 0, "experts per MoE layer");
ABSL_FLAG(int, top_k, 0, "experts per image (or per token)");
ABSL_FLAG(uint64_t, expert_bytes, 0, "bytes of one expert");
ABSL_FLAG(std::string, routing, "", "image or token");
ABSL_FLAG(int, tokens, 0, "token routing: tokens per image");
ABSL_FLAG(double, expert_alpha, 0.6,
          "Zipf exponent of expert popularity within a layer");
ABSL_FLAG(double, noise, 0.02,
          "image routing: probability that a choice is another expert");
ABSL_FLAG(double, token_scene_share, 0.5,
          "token routing: probability that a choice is one of the scene's");
ABSL_FLAG(uint64_t, seed, 1, "seed of every random draw");

namespace edge {
namespace {

absl::Status ApplyShapeFlags(TraceGeneratorOptions* o) {
  if (const std::string dir = absl::GetFlag(FLAGS_model_dir); !dir.empty()) {
    absl::StatusOr<ModelManifest> manifest = ModelManifest::Load(dir);
    if (!manifest.ok()) return manifest.status();
    if (absl::Status s = ApplyModelShape(*manifest, o); !s.ok()) return s;
  }
  if (const std::string layers = absl::GetFlag(FLAGS_layers); !layers.empty()) {
    o->moe_layers.clear();
    for (absl::string_view field : absl::StrSplit(layers, ',')) {
      int layer = 0;
      if (!absl::SimpleAtoi(field, &layer)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--layers: not an integer: ", field));
      }
      o->moe_layers.push_back(layer);
    }
  }
  if (int v = absl::GetFlag(FLAGS_experts); v != 0) o->num_experts = v;
  if (int v = absl::GetFlag(FLAGS_top_k); v != 0) o->top_k = v;
  if (uint64_t v = absl::GetFlag(FLAGS_expert_bytes); v != 0) {
    o->expert_bytes = v;
  }
  if (int v = absl::GetFlag(FLAGS_tokens); v != 0) o->tokens = v;
  const std::string routing = absl::GetFlag(FLAGS_routing);
  if (routing == "image" || routing == "token") {
    o->routing = routing == "image" ? Routing::kImage : Routing::kToken;
  } else if (!routing.empty()) {
    return absl::InvalidArgumentError("--routing must be image or token");
  }
  return absl::OkStatus();
}

absl::StatusOr<TraceGeneratorOptions> OptionsFromFlags() {
  TraceGeneratorOptions o;
  o.scenes = absl::GetFlag(FLAGS_scenes);
  o.zipf_alpha = absl::GetFlag(FLAGS_zipf_alpha);
  o.cameras = absl::GetFlag(FLAGS_cameras);
  o.dwell = absl::GetFlag(FLAGS_dwell);
  o.drift_batches = absl::GetFlag(FLAGS_drift_batches);
  o.batch_frames = absl::GetFlag(FLAGS_batch);
  o.batches = absl::GetFlag(FLAGS_batches);
  o.batch_time_us = absl::GetFlag(FLAGS_batch_time_us);
  o.expert_alpha = absl::GetFlag(FLAGS_expert_alpha);
  o.routing_noise = absl::GetFlag(FLAGS_noise);
  o.token_scene_share = absl::GetFlag(FLAGS_token_scene_share);
  o.seed = absl::GetFlag(FLAGS_seed);
  if (absl::Status s = ApplyShapeFlags(&o); !s.ok()) return s;
  if (absl::Status s = ValidateTraceGeneratorOptions(o); !s.ok()) return s;
  return o;
}

int Main() {
  const std::string out = absl::GetFlag(FLAGS_out);
  absl::StatusOr<TraceGeneratorOptions> options = OptionsFromFlags();
  if (out.empty() || !options.ok()) {
    std::fprintf(stderr, "expert_trace_gen: %s\n",
                 out.empty() ? "--out is required"
                             : options.status().ToString().c_str());
    return 2;
  }
  absl::StatusOr<std::vector<ExpertAccess>> trace = GenerateTrace(*options);
  absl::Status s = trace.ok() ? WriteAccessTrace(out, *trace) : trace.status();
  if (!s.ok()) {
    std::fprintf(stderr, "expert_trace_gen: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("expert_trace_gen: wrote %zu accesses (%d batches) to %s\n",
              trace->size(), options->batches, out.c_str());
  return 0;
}

}  // namespace
}  // namespace edge

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "expert_trace_gen --out FILE [--model_dir DIR] [--zipf_alpha A] "
      "[--dwell P] [--drift_batches N] [--routing image|token] [--seed S]");
  absl::ParseCommandLine(argc, argv);
  return edge::Main();
}
