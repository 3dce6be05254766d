#include "engine/vmoe_engine.h"

#include <omp.h>

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "engine/internal/compute_thread.h"
#include "engine/internal/expert_predictor.h"
#include "engine/internal/forward.h"
#include "engine/internal/kernels.h"
#include "engine/internal/model_weights.h"

namespace edge {

using internal::DataType;
using internal::Workspace;

absl::StatusOr<ComputeDtype> ParseComputeDtype(absl::string_view name) {
  if (name == "f32" || name == "float32") return ComputeDtype::kFloat32;
  if (name == "bf16" || name == "bfloat16") return ComputeDtype::kBfloat16;
  return absl::InvalidArgumentError(absl::StrCat(
      "compute dtype \"", name, "\" must be f32 (float32) or bf16 (bfloat16)"));
}

const char* ComputeDtypeName(ComputeDtype dtype) {
  return dtype == ComputeDtype::kBfloat16 ? "bf16" : "f32";
}

namespace {

// VmoeEngine::precision() from the compute dtype and the manifest's expert
// storage ("float32", "bf16" or "int8").
std::string DescribePrecision(ComputeDtype compute,
                              const std::string& experts) {
  const std::string base =
      compute == ComputeDtype::kBfloat16 ? "bf16" : "float32";
  if (experts == "float32" || experts == base) return base;
  return absl::StrCat(base, "/", experts, "-experts");
}

absl::Status CheckOptions(const EngineOptions& options) {
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError("max_batch_size must be >= 1");
  }
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError("num_threads must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace

struct VmoeEngine::State {
  // First member, so destroyed last. Runs Create()'s weight preparation and
  // every Run(), so that one thread owns all OpenMP parallel regions.
  internal::ComputeThread compute;
  EngineOptions options;
  DataType activations = DataType::f32;
  std::string precision;
  ModelManifest manifest;
  internal::Kernels kernels;
  internal::ModelWeights weights;
  std::unique_ptr<ExpertStore> store;
  std::unique_ptr<ExpertCache> cache;
  std::unique_ptr<internal::NextLayerPredictor> predictor;  // null: off
  std::atomic<uint64_t> non_finite_results{0};

  absl::Mutex pool_mu;
  // Idle workspaces; Run() takes one and gives it back.
  std::vector<std::unique_ptr<Workspace>> idle ABSL_GUARDED_BY(pool_mu);

  std::unique_ptr<Workspace> TakeWorkspace() {
    absl::MutexLock lock(&pool_mu);
    if (idle.empty()) return std::make_unique<Workspace>(kernels.engine());
    std::unique_ptr<Workspace> ws = std::move(idle.back());
    idle.pop_back();
    return ws;
  }
  void ReturnWorkspace(std::unique_ptr<Workspace> ws) {
    absl::MutexLock lock(&pool_mu);
    idle.push_back(std::move(ws));
  }
};

VmoeEngine::VmoeEngine(std::unique_ptr<State> state)
    : state_(std::move(state)) {}
VmoeEngine::~VmoeEngine() = default;

absl::StatusOr<std::unique_ptr<VmoeEngine>> VmoeEngine::Create(
    const std::string& model_dir, EngineOptions options) {
  // Before the manifest: a bad option fails without reading the model.
  RETURN_IF_ERROR(CheckOptions(options));
  ASSIGN_OR_RETURN(ModelManifest manifest, ModelManifest::Load(model_dir));
  return Create(std::move(manifest), std::move(options));
}

absl::StatusOr<std::unique_ptr<VmoeEngine>> VmoeEngine::Create(
    ModelManifest manifest, EngineOptions options) {
  RETURN_IF_ERROR(CheckOptions(options));
  auto state = std::make_unique<State>();
  state->options = options;
  state->activations = options.compute_dtype == ComputeDtype::kBfloat16
                           ? DataType::bf16
                           : DataType::f32;
  state->manifest = std::move(manifest);
  state->precision =
      DescribePrecision(options.compute_dtype, state->manifest.precision());
  // Weight reorders are OpenMP work: run them on the compute thread.
  auto prepare = [&]() -> absl::Status {
    try {
      ASSIGN_OR_RETURN(state->weights, internal::LoadModelWeights(
                                           state->manifest, state->kernels,
                                           state->activations));
      ASSIGN_OR_RETURN(state->store, ExpertStore::Create(&state->manifest));
      State* s = state.get();
      const uint64_t expert_bytes = internal::PreparedExpertBytes(
          s->manifest, s->kernels, s->activations);
      auto loader = [s](const ExpertKey& key)
          -> absl::StatusOr<std::shared_ptr<CachedExpert>> {
        // Loads run on prefetch threads too: no second OpenMP team.
        internal::OmpSingleThread one_thread;
        ASSIGN_OR_RETURN(RawExpert raw, s->store->Load(key));
        try {
          return internal::PrepareExpert(raw, s->kernels, s->activations);
        } catch (const dnnl::error& e) {
          return absl::InternalError(absl::StrCat(
              "oneDNN preparing ", key.ToString(), ": ", e.what()));
        }
      };
      auto sizer = [expert_bytes](const ExpertKey&) { return expert_bytes; };
      ExpertCacheOptions cache_options = options.cache;
      cache_options.read_ahead = [s](const ExpertKey& key) {
        s->store->ReadAhead(key);
      };
      ASSIGN_OR_RETURN(state->cache,
                       ExpertCache::Create(cache_options, loader, sizer));
      const MoeSpec& moe = s->manifest.config().moe;
      if (options.prefetch_next_layer && options.cache.prefetch_threads > 0 &&
          moe.layers.size() > 1) {
        s->predictor = std::make_unique<internal::NextLayerPredictor>(
            static_cast<int>(moe.layers.size()), moe.num_experts);
      }
    } catch (const dnnl::error& e) {
      return absl::InternalError(absl::StrCat(
          "oneDNN loading ", state->manifest.model_dir(), ": ", e.what()));
    }
    return absl::OkStatus();
  };
  absl::Status prepared;
  state->compute.Run([&] {
    if (options.num_threads > 0) omp_set_num_threads(options.num_threads);
    prepared = prepare();
  });
  if (!prepared.ok()) return prepared;
  return std::unique_ptr<VmoeEngine>(new VmoeEngine(std::move(state)));
}

const ModelManifest& VmoeEngine::manifest() const { return state_->manifest; }
const std::string& VmoeEngine::precision() const { return state_->precision; }
const ModelConfig& VmoeEngine::config() const {
  return state_->manifest.config();
}
ExpertCacheStats VmoeEngine::cache_stats() const {
  return state_->cache->stats();
}
ExpertCache* VmoeEngine::cache() { return state_->cache.get(); }

VmoeEngine::PrefetchPredictionStats VmoeEngine::prediction_stats() const {
  if (state_->predictor == nullptr) return {};
  const internal::PredictionStats s = state_->predictor->stats();
  return {s.guesses, s.guesses_used, s.next_layer_experts};
}

VmoeEngine::IntegrityStats VmoeEngine::integrity_stats() const {
  IntegrityStats stats;
  stats.expert_files = state_->store->stats();
  stats.non_finite_results =
      state_->non_finite_results.load(std::memory_order_relaxed);
  return stats;
}

absl::StatusOr<std::vector<ImageResult>> VmoeEngine::Run(const float* images,
                                                         int batch_size,
                                                         RunTiming* timing) {
  if (batch_size < 1 || batch_size > state_->options.max_batch_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch size ", batch_size, " is outside [1, ",
                     state_->options.max_batch_size, "]"));
  }
  if (images == nullptr) return absl::InvalidArgumentError("no images");
  std::unique_ptr<Workspace> ws = state_->TakeWorkspace();
  const internal::ForwardContext ctx{&config(),
                                     &state_->weights,
                                     &state_->kernels,
                                     state_->cache.get(),
                                     state_->predictor.get(),
                                     state_->options.expert_failure_policy,
                                     state_->activations};
  absl::StatusOr<std::vector<ImageResult>> results;
  // On the compute thread, whose OpenMP thread count Create() set.
  state_->compute.Run([&] {
    try {
      internal::ForwardPass pass(ctx, ws.get(), batch_size);
      results = pass.Run(images, timing);
      state_->non_finite_results.fetch_add(pass.non_finite_results(),
                                           std::memory_order_relaxed);
    } catch (const dnnl::error& e) {
      results = absl::InternalError(absl::StrCat("oneDNN: ", e.what()));
    }
  });
  state_->ReturnWorkspace(std::move(ws));
  return results;
}

}  // namespace edge
