// edge_gateway: serves a V-MoE model over gRPC.
//
//   edge_gateway --model_dir DIR [--config FILE] [--field=value ...]
//
// Configuration (server/config.h): schema defaults < config file <
// EDGE_GATEWAY_* environment < flags. Start-up: read the TLS files if any
// (server/server_credentials.h), open the expert trace if any, load and
// verify the model, warm up: batches, then the expert cache from the usage
// profile (server/cache_warmup.h) (health NOT_SERVING until then), serve.
// SIGTERM/SIGINT: health NOT_SERVING, new requests UNAVAILABLE, admitted
// ones finish within drain_timeout_ms, the profile and trace are written,
// exit 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cache/access_trace.h"
#include "common/saturating_time.h"
#include "common/status_macros.h"
#include "server/cache_warmup.h"
#include "server/config.h"
#include "server/gateway_service.h"
#include "server/memory_budget.h"
#include "server/memory_limit.h"
#include "server/server_credentials.h"

namespace edge {
namespace {

constexpr char kServiceName[] = "edge.gateway.v1.InferenceGateway";

void Log(const std::string& line) {
  std::fprintf(stderr, "edge_gateway: %s\n", line.c_str());
}

int Fail(const absl::Status& status) {
  Log(status.ToString());
  return 2;
}

// --help, --config FILE, then --name=value / --name value for every field.
absl::StatusOr<ServerConfig> LoadConfig(int argc, char** argv, bool* help) {
  std::vector<std::pair<std::string, std::string>> flags;
  std::string config_file;
  if (const char* env = std::getenv("EDGE_GATEWAY_CONFIG")) config_file = env;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      *help = true;
      return ServerConfig();
    }
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError("unexpected argument '" + arg + "'");
    }
    arg = arg.substr(2);
    std::string value;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError("flag --" + arg + " needs a value");
    }
    if (arg == "config") {
      config_file = value;
    } else {
      flags.emplace_back(arg, value);
    }
  }
  ServerConfig config = DefaultServerConfig();
  if (!config_file.empty()) {
    if (auto s = ApplyConfigFile(config_file, &config); !s.ok()) return s;
  }
  if (auto s = ApplyEnvironment(std::getenv, &config); !s.ok()) return s;
  for (const auto& [name, value] : flags) {
    auto s = SetConfigField(name, value, "flag --" + name, &config);
    if (!s.ok()) return s;
  }
  if (auto s = ValidateServerConfig(config); !s.ok()) return s;
  return config;
}

// Runs zero images through the engine at batch sizes 1 and max so that
// primitives exist and first requests do not pay for their creation.
absl::Status WarmUp(VmoeEngine& engine, const ServerConfig& config) {
  const ModelConfig& c = engine.config();
  const int max = config.max_batch_size();
  std::vector<float> zeros(3ull * c.image_size * c.image_size * max, 0.0f);
  for (int i = 0; i < config.warmup_batches(); ++i) {
    for (int batch : {1, max}) {
      auto r = engine.Run(zeros.data(), batch);
      if (!r.ok()) return r.status();
    }
  }
  return absl::OkStatus();
}

// The expert cache's fields of `config` (sizing, prefetch, failure policy)
// into the engine's options; every resize is logged with its reason.
// `trace` (may be null) records every expert access.
void ApplyExpertCacheConfig(const ServerConfig& config,
                            AccessTraceWriter* trace, EngineOptions* options) {
  ExpertCacheOptions& cache = options->cache;
  cache.policy.min_bytes = config.cache_min_bytes();
  cache.policy.grow_below = config.cache_grow_below();
  cache.policy.shrink_above = config.cache_shrink_above();
  cache.policy.window_accesses = config.cache_window_accesses();
  cache.policy.resize_interval_accesses =
      config.cache_resize_interval_accesses();
  cache.prefetch_threads = config.prefetch_threads();
  cache.trace = trace;
  cache.on_resize = [](const ResizeEvent& e) {
    Log(absl::StrCat("expert cache ", e.grew() ? "grew" : "shrank", " from ",
                     e.from_bytes, " to ", e.to_bytes, " bytes after ",
                     e.access_index, " accesses: ", e.reason));
  };
  options->prefetch_next_layer = config.prefetch_next_layer();
  options->expert_failure_policy = config.expert_failure_policy() == "reroute"
                                       ? ExpertFailurePolicy::kReroute
                                       : ExpertFailurePolicy::kFail;
}

// --expert_trace_file: null when off.
absl::StatusOr<std::unique_ptr<AccessTraceWriter>> OpenExpertTrace(
    const ServerConfig& config) {
  if (config.expert_trace_file().empty()) return nullptr;
  return AccessTraceWriter::Create(config.expert_trace_file());
}

// --cache_profile: warms the cache from it, then records into it (null when
// off). Runs before health turns SERVING.
absl::StatusOr<std::unique_ptr<UsageProfileRecorder>> StartCacheProfile(
    const ServerConfig& config, VmoeEngine* engine) {
  if (config.cache_profile().empty()) return nullptr;
  UsageProfile previous =
      WarmCacheFromProfile(config.cache_profile(), *engine, Log);
  return RecordCacheProfile(config.cache_profile(),
                            absl::Seconds(config.cache_profile_interval_s()),
                            std::move(previous), engine, Log);
}

// At shutdown, after the last request: the profile's final write and the
// trace's flush. Errors are logged; the exit code stays 0.
void FinishCacheRecording(UsageProfileRecorder* recorder,
                          AccessTraceWriter* trace) {
  if (recorder != nullptr) {
    const absl::Status s = recorder->Stop();
    Log(s.ok() ? absl::StrCat("usage profile written (", recorder->writes(),
                              " writes)")
               : "usage profile: " + s.ToString());
  }
  if (trace != nullptr) {
    const absl::Status s = trace->Flush();
    Log(s.ok() ? absl::StrCat("expert trace: ", trace->appended(),
                              " accesses recorded")
               : "expert trace: " + s.ToString());
  }
}

// memory_limit_bytes, or the cgroup's limit, or half of the machine's.
absl::StatusOr<MemoryLimit> ResolveMemoryLimit(const ServerConfig& config) {
  if (config.memory_limit_bytes() > 0) {
    return MemoryLimit{config.memory_limit_bytes(), "memory_limit_bytes"};
  }
  return DetectMemoryLimit();
}

// Bytes of every expert file of the model: what an unbounded cache would
// hold once every expert was used (a little more when bf16 compute halves
// f32 files).
absl::StatusOr<uint64_t> AllExpertBytes(const std::string& model_dir) {
  ASSIGN_OR_RETURN(ModelManifest manifest, ModelManifest::Load(model_dir));
  const MoeSpec& moe = manifest.config().moe;
  uint64_t total = 0;
  for (int layer : moe.layers) {
    for (int e = 0; e < moe.num_experts; ++e) {
      total += manifest.FindFile(manifest.ExpertFile(layer, e))->size_bytes;
    }
  }
  return total;
}

// cache_budget_bytes, or for 0: unbounded while every expert fits in half
// the memory limit (nothing is ever evicted then), else half the limit,
// which leaves the other half to the model's dense weights and requests.
uint64_t ExpertCacheBudget(const ServerConfig& config, uint64_t limit_bytes,
                           uint64_t all_expert_bytes) {
  if (config.cache_budget_bytes() > 0) return config.cache_budget_bytes();
  return all_expert_bytes <= limit_bytes / 2 ? 0 : limit_bytes / 2;
}

// After warm-up: what is left of the limit for requests in flight, or
// FAILED_PRECONDITION naming the figures when too little is.
absl::StatusOr<MemoryPlan> PlanRequestMemory(const MemoryLimit& limit,
                                             uint64_t cache_budget_bytes,
                                             uint64_t all_expert_bytes,
                                             const VmoeEngine& engine) {
  const uint64_t cache_max =
      cache_budget_bytes > 0 ? cache_budget_bytes : all_expert_bytes;
  const uint64_t resident = engine.cache_stats().resident_bytes;
  MemoryPlan plan = PlanMemory(limit.bytes, limit.source, ResidentBytes(),
                               cache_max > resident ? cache_max - resident : 0);
  // 16 MiB: two full-HD RGB frames and their decodes; less cannot serve a
  // camera.
  if (plan.request_bytes < (16u << 20)) {
    return absl::FailedPreconditionError(
        plan.Describe() +
        ": too little is left for requests; raise memory_limit_bytes or lower "
        "cache_budget_bytes");
  }
  return plan;
}

// After max_connection_age_ms gRPC sends the connection a GOAWAY, and
// after this grace it closes the connection whatever still runs on it: a
// stream cut there ends UNAVAILABLE "enter idle", its answers in flight
// lost. The gateway ends each stream itself at max_stream_age_ms, so the
// grace only has to outlast that: every stream on the connection started
// before the GOAWAY, so it ends within max_stream_age_ms of it, plus the
// time to answer its last frames. 10 s covers those (a full queue of 64 is
// ~0.5 s of work; one raised to 1024 would need ~7 s); only a client that
// stopped reading its answers is cut. Without a stream age limit, streams
// may run as long as they like: INT_MAX ms is gRPC's "never" here (its own
// default; about 24.8 days).
constexpr int64_t kStreamEndMarginMs = 10000;

int MaxConnectionAgeGraceMs(const ServerConfig& config) {
  if (config.max_stream_age_ms() == 0) return INT32_MAX;
  return static_cast<int>(std::min<int64_t>(
      SaturatingAdd(config.max_stream_age_ms(), kStreamEndMarginMs),
      INT32_MAX));
}

int Serve(const ServerConfig& config) {
  // Before the model loads: a bad certificate should fail in milliseconds.
  auto credentials = MakeServerCredentials(config);
  if (!credentials.ok()) return Fail(credentials.status());

  // Before the engine: its cache records into the trace from the start.
  auto trace = OpenExpertTrace(config);
  if (!trace.ok()) return Fail(trace.status());
  auto limit = ResolveMemoryLimit(config);
  if (!limit.ok()) return Fail(limit.status());
  auto all_expert_bytes = AllExpertBytes(config.model_dir());
  if (!all_expert_bytes.ok()) return Fail(all_expert_bytes.status());
  const uint64_t cache_budget =
      ExpertCacheBudget(config, limit->bytes, *all_expert_bytes);
  EngineOptions engine_options;
  engine_options.max_batch_size = config.max_batch_size();
  engine_options.cache.budget_bytes = cache_budget;
  ApplyExpertCacheConfig(config, trace->get(), &engine_options);
  engine_options.num_threads = config.engine_threads();
  // ValidateServerConfig() accepted the name.
  engine_options.compute_dtype = ParseComputeDtype(config.compute_dtype())
                                     .value_or(ComputeDtype::kFloat32);
  auto engine = VmoeEngine::Create(config.model_dir(), engine_options);
  if (!engine.ok()) return Fail(engine.status());
  const ModelConfig& c = (*engine)->config();

  ImageDecoderOptions decoder_options;
  decoder_options.image_size = c.image_size;
  decoder_options.mean = (*engine)->manifest().mean();
  decoder_options.std = (*engine)->manifest().stddev();
  decoder_options.max_encoded_bytes = config.max_image_bytes();
  decoder_options.max_pixels = config.max_image_pixels();
  auto decoder = ImageDecoder::Create(decoder_options);
  if (!decoder.ok()) return Fail(decoder.status());

  GatewayMetricsOptions metrics_options;
  metrics_options.listen_address = config.metrics_address();
  metrics_options.model_name = (*engine)->manifest().name();
  metrics_options.precision = (*engine)->precision();
  metrics_options.routing = c.moe.layers.empty()               ? "dense"
                            : c.moe.routing == Routing::kImage ? "image"
                                                               : "token";
  for (int layer : c.moe.layers) {
    metrics_options.moe_layers.push_back({layer, c.moe.num_experts});
  }
  VmoeEngine* engine_ptr = engine->get();
  metrics_options.cache_stats = [engine_ptr] {
    return engine_ptr->cache_stats();
  };
  metrics_options.prediction_stats = [engine_ptr] {
    const VmoeEngine::PrefetchPredictionStats s =
        engine_ptr->prediction_stats();
    return PrefetchPredictionCounts{s.guesses, s.guesses_used,
                                    s.next_layer_experts};
  };
  metrics_options.integrity_stats = [engine_ptr] {
    const VmoeEngine::IntegrityStats s = engine_ptr->integrity_stats();
    return IntegrityCounts{s.expert_files.missing, s.expert_files.read_errors,
                           s.expert_files.size_mismatches,
                           s.expert_files.checksum_mismatches,
                           s.non_finite_results};
  };
  // Until warm-up has shown the model's resident size (PlanRequestMemory),
  // requests may hold a quarter of the limit.
  MemoryBudget request_memory(limit->bytes / 4);
  metrics_options.memory_stats = [&request_memory, &limit] {
    return MemoryCounts{limit->bytes, request_memory.capacity_bytes(),
                        request_memory.held_bytes()};
  };
  auto metrics = GatewayMetrics::Create(metrics_options);
  if (!metrics.ok()) return Fail(metrics.status());

  InferencePipelineOptions pipeline_options;
  pipeline_options.batcher.max_batch_size = config.max_batch_size();
  pipeline_options.batcher.max_queue_delay_us = config.max_queue_delay_us();
  pipeline_options.max_queue_size = config.max_queue_size();
  pipeline_options.decode_threads = config.decode_threads();
  pipeline_options.max_top_k = config.max_top_k();
  // 1 s: RSS is back within about a second of a burst's end. 4 MiB: a
  // trim walks every arena's free lists (~1 ms), so not for less; 16
  // concurrent 16 MiB messages left 10 MiB of gRPC's freed read buffers in
  // an arena, a third of fashion-vmoe's idle 29 MiB.
  MemoryTrimmer trimmer(&request_memory, absl::Seconds(1), 4u << 20);
  auto pipeline =
      InferencePipeline::Create(engine_ptr, decoder->get(), metrics->get(),
                                pipeline_options, &request_memory);
  if (!pipeline.ok()) return Fail(pipeline.status());
  GatewayServiceOptions service_options;
  service_options.max_batch_size = config.max_batch_size();
  service_options.cache_budget_bytes = cache_budget;
  service_options.max_stream_age_ms = config.max_stream_age_ms();
  GatewayService service(pipeline->get(), engine_ptr, metrics->get(),
                         service_options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default on Linux: a second gateway would then
  // share the port and steal half the connections instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (config.max_connection_age_ms() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               static_cast<int>(std::min<int64_t>(
                                   config.max_connection_age_ms(), INT32_MAX)));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               MaxConnectionAgeGraceMs(config));
  }
  int port = 0;
  builder.AddListeningPort(config.listen_address(), *credentials, &port);
  // The transport must admit the largest request we accept, so that an
  // oversized image reaches the decoder and gets its INVALID_ARGUMENT with a
  // clear message: a raw RGB frame of max_image_pixels (3 bytes a pixel) or
  // an encoded one of max_image_bytes, plus 64 KiB for the other fields.
  // Larger messages are refused by gRPC itself (RESOURCE_EXHAUSTED).
  // The transport's buffers are bounded by gRPC's memory quota, and no one
  // message may take more than half of it (server/memory_budget.h): gRPC
  // refuses a larger one (RESOURCE_EXHAUSTED "Received message larger than
  // max") before buffering it.
  const uint64_t transport = TransportQuotaBytes(limit->bytes);
  const uint64_t largest = std::max<uint64_t>(config.max_image_bytes(),
                                              3 * config.max_image_pixels());
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<uint64_t>({largest + 65536, transport / 2, INT32_MAX})));
  // gRPC grows a connection's flow-control window and read buffers with
  // its measured bandwidth-delay product and keeps them while the
  // connection lives: after 16 x 16 MiB requests on one connection it held
  // 10-46 MiB until the client disconnected, and RSS stayed 20-50% above
  // its level before the burst. Without the BDP probe and with reads of at
  // most 256 KiB it returns within 20% in about a second (BENCHMARKS.md,
  // "Memory bound"). The price: a stream's window stays at gRPC's 64 KiB
  // lookahead, so one stream moves at most 64 KiB per round trip (~130 MB/s
  // at a LAN's 0.5 ms; camera frames are far smaller than that).
  builder.AddChannelArgument(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 256 << 10);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  grpc::ResourceQuota transport_quota("edge_gateway_transport");
  transport_quota.Resize(transport);
  builder.SetResourceQuota(transport_quota);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(
        absl::UnavailableError("cannot listen on " + config.listen_address()));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(false);
  health->SetServingStatus(kServiceName, false);
  if (auto s = WarmUp(**engine, config); !s.ok()) return Fail(s);
  auto profile_recorder = StartCacheProfile(config, engine_ptr);
  if (!profile_recorder.ok()) return Fail(profile_recorder.status());
  auto plan =
      PlanRequestMemory(*limit, cache_budget, *all_expert_bytes, **engine);
  if (!plan.ok()) return Fail(plan.status());
  request_memory.SetCapacity(plan->request_bytes);
  Log(plan->Describe());
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  Log("transport: " + DescribeTransportSecurity(config));
  // Tests and scripts read the two ports from this line.
  Log(absl::StrCat("serving ", (*engine)->manifest().name(), " on ",
                   config.listen_address(), " port ", port, " metrics_port ",
                   (*metrics)->bound_port()));

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  Log(absl::StrCat("signal ", signal_number, ": draining (up to ",
                   config.drain_timeout_ms(), " ms)"));
  health->SetServingStatus(false);
  health->SetServingStatus(kServiceName, false);
  const auto drain_start = absl::Now();
  const absl::Duration drain_timeout =
      absl::Milliseconds(config.drain_timeout_ms());
  (*pipeline)->Drain(drain_timeout);
  // Keep refusing late callers with UNAVAILABLE (retryable) rather than let
  // gRPC's Shutdown() cancel them: 200 ms without arrivals means clients
  // have seen the refusals or NOT_SERVING and gone elsewhere.
  service.WaitForQuiet(absl::Milliseconds(200),
                       drain_timeout - (absl::Now() - drain_start));
  // Every admitted request is answered; give gRPC a moment to send them.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  FinishCacheRecording(profile_recorder->get(), trace->get());
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace edge

namespace edge {
namespace {

// libgomp reads GOMP_SPINCOUNT once, when it is loaded, before main():
// setting it here takes a new image of the process. Skipped when the user
// set OpenMP's wait variables (theirs win) or the field is -1; the marker
// variable stops a second exec if the first did not take.
void ApplyEngineSpinCount(const ServerConfig& config, char** argv) {
  if (config.engine_spin_count() < 0 || std::getenv("OMP_WAIT_POLICY") ||
      std::getenv("GOMP_SPINCOUNT") || std::getenv("EDGE_GATEWAY_SPIN_SET")) {
    return;
  }
  const std::string count = std::to_string(config.engine_spin_count());
  setenv("GOMP_SPINCOUNT", count.c_str(), 1);
  setenv("EDGE_GATEWAY_SPIN_SET", "1", 1);
  execv("/proc/self/exe", argv);
  Log(absl::StrCat("cannot re-execute to set GOMP_SPINCOUNT=", count, ": ",
                   std::strerror(errno), "; OpenMP keeps its default"));
}

}  // namespace
}  // namespace edge

int main(int argc, char** argv) {
  edge::ConfigureMalloc();
  // Block the shutdown signals before any thread exists (gRPC, oneDNN and
  // our workers inherit the mask), so only sigwait() in Serve() sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  bool help = false;
  auto config = edge::LoadConfig(argc, argv, &help);
  if (help) {
    std::printf(
        "edge_gateway: serves a V-MoE model over gRPC.\n\n"
        "usage: edge_gateway --model_dir DIR [--config FILE.json] "
        "[--field=value ...]\n\n"
        "Every field may be set in the JSON config file (--config or "
        "EDGE_GATEWAY_CONFIG),\nas an environment variable, or as a flag "
        "(flags win). Fields:\n%s",
        edge::ServerConfigHelp().c_str());
    return 0;
  }
  if (!config.ok()) return edge::Fail(config.status());
  edge::ApplyEngineSpinCount(*config, argv);
  return edge::Serve(*config);
}
