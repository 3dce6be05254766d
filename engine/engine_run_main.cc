// engine_run: runs a model on a .npy batch of normalised images and writes
// the logits (.npy) and, optionally, the chosen experts (JSON). The offline
// check behind the parity tests.
//
//   engine_run --model DIR --input X.npy --output Y.npy [--experts E.json]
//              [--dtype f32|bf16] [--batch N]
//
// X is float32 [B, 3, S, S]; Y is float32 [B, C]. Exit code 1 on any error,
// including an image whose expert could not be loaded (named on stderr).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/npy.h"
#include "engine/vmoe_engine.h"

ABSL_FLAG(std::string, model, "", "model directory (docs/model-format.md)");
ABSL_FLAG(std::string, input, "",
          "float32 [B,3,S,S] .npy of normalised images");
ABSL_FLAG(std::string, output, "",
          "where to write float32 [B,C] logits (.npy)");
ABSL_FLAG(std::string, experts, "",
          "optional: write the chosen experts as JSON");
ABSL_FLAG(uint64_t, cache_budget_bytes, 0,
          "expert cache budget in bytes; 0 = unbounded");
ABSL_FLAG(int, batch, 0,
          "images per engine call; 0 = the whole input in one call");
ABSL_FLAG(std::string, dtype, "f32",
          "compute dtype of the large matmuls: f32 or bf16");
ABSL_FLAG(int, threads, 0, "OpenMP threads; 0 = OpenMP's default");

namespace {

std::string ChoicesJson(const std::vector<edge::ExpertChoice>& choices,
                        size_t begin, size_t end, bool weights) {
  std::vector<std::string> items;
  for (size_t i = begin; i < end; ++i) {
    items.push_back(weights ? absl::StrCat(choices[i].weight)
                            : absl::StrCat(choices[i].expert));
  }
  return "[" + absl::StrJoin(items, ", ") + "]";
}

std::string LayerJson(const edge::LayerRouting& r, int k) {
  if (!r.image_choices.empty()) {
    const auto& c = r.image_choices;
    return absl::StrCat("{\"layer\": ", r.layer,
                        ", \"experts\": ", ChoicesJson(c, 0, c.size(), false),
                        ", \"weights\": ", ChoicesJson(c, 0, c.size(), true),
                        "}");
  }
  std::vector<std::string> experts, weights, kept;
  for (size_t t = 0; t * k < r.token_choices.size(); ++t) {
    experts.push_back(ChoicesJson(r.token_choices, t * k, t * k + k, false));
    weights.push_back(ChoicesJson(r.token_choices, t * k, t * k + k, true));
    std::vector<std::string> flags;
    for (int j = 0; j < k; ++j) {
      flags.push_back(r.token_kept[t * k + j] ? "true" : "false");
    }
    kept.push_back("[" + absl::StrJoin(flags, ", ") + "]");
  }
  return absl::StrCat("{\"layer\": ", r.layer, ", \"token_experts\": [",
                      absl::StrJoin(experts, ", "), "], \"token_weights\": [",
                      absl::StrJoin(weights, ", "), "], \"token_kept\": [",
                      absl::StrJoin(kept, ", "), "]}");
}

bool WriteExpertsJson(const std::string& path,
                      const std::vector<edge::ImageResult>& results, int k) {
  std::vector<std::string> images;
  for (const edge::ImageResult& r : results) {
    std::vector<std::string> layers;
    for (const edge::LayerRouting& l : r.routing)
      layers.push_back(LayerJson(l, k));
    images.push_back("{\"layers\": [" + absl::StrJoin(layers, ", ") + "]}");
  }
  std::ofstream out(path);
  out << "{\"images\": [" << absl::StrJoin(images, ",\n") << "]}\n";
  return static_cast<bool>(out);
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "engine_run: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "engine_run --model DIR --input X.npy --output Y.npy [--experts E.json]");
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model);
  const std::string input = absl::GetFlag(FLAGS_input);
  const std::string output = absl::GetFlag(FLAGS_output);
  if (model.empty() || input.empty() || output.empty()) {
    return Fail("--model, --input and --output are required (see --help)");
  }
  auto x = edge::ReadNpyFloat32(input);
  if (!x.ok()) return Fail(x.status().ToString());
  edge::EngineOptions options;
  options.cache.budget_bytes = absl::GetFlag(FLAGS_cache_budget_bytes);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  auto dtype = edge::ParseComputeDtype(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) return Fail(dtype.status().ToString());
  options.compute_dtype = *dtype;
  const int64_t images = x->shape.empty() ? 0 : x->shape[0];
  const int64_t batch =
      absl::GetFlag(FLAGS_batch) > 0
          ? std::min<int64_t>(absl::GetFlag(FLAGS_batch), images)
          : images;
  if (batch > 0) options.max_batch_size = static_cast<int>(batch);
  auto engine = edge::VmoeEngine::Create(model, options);
  if (!engine.ok()) return Fail(engine.status().ToString());
  const edge::ModelConfig& c = (*engine)->config();
  const std::vector<int64_t> want{x->shape.empty() ? 0 : x->shape[0], 3,
                                  c.image_size, c.image_size};
  if (x->shape.size() != 4 || x->shape != want) {
    return Fail(absl::StrCat(
        input, " has shape [", absl::StrJoin(x->shape, ","),
        "]; the model needs [B,3,", c.image_size, ",", c.image_size, "]"));
  }
  std::vector<edge::ImageResult> results;
  const size_t image_floats =
      3 * static_cast<size_t>(c.image_size) * c.image_size;
  for (int64_t first = 0; first < images; first += batch) {
    const int n = static_cast<int>(std::min(batch, images - first));
    auto part = (*engine)->Run(x->data.data() + first * image_floats, n);
    if (!part.ok()) return Fail(part.status().ToString());
    std::move(part->begin(), part->end(), std::back_inserter(results));
  }

  edge::NpyArray y{{x->shape[0], c.num_classes}, {}};
  for (size_t b = 0; b < results.size(); ++b) {
    const edge::ImageResult& r = results[b];
    if (!r.status.ok()) {
      return Fail(absl::StrCat("image ", b, ": ", r.status.ToString()));
    }
    y.data.insert(y.data.end(), r.logits.begin(), r.logits.end());
  }
  if (auto s = edge::WriteNpyFloat32(output, y); !s.ok()) {
    return Fail(s.ToString());
  }
  const std::string experts = absl::GetFlag(FLAGS_experts);
  if (!experts.empty() && !WriteExpertsJson(experts, results, c.moe.top_k)) {
    return Fail("cannot write " + experts);
  }
  return 0;
}
