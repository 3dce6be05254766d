// edge_gateway: serves a V-MoE model over gRPC.
//
//   edge_gateway --model_dir DIR [--config FILE] [--field=value ...]
//
// Configuration (server/config.h): schema defaults < config file <
// EDGE_GATEWAY_* environment < flags; each component's options are made
// from it by server/config_options.h. Start-up: read the TLS files if any
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

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cache/access_trace.h"
#include "common/status_macros.h"
#include "server/cache_warmup.h"
#include "server/config.h"
#include "server/config_options.h"
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

// The expert cache's on_resize: every resize is logged with its reason.
void LogResize(const ResizeEvent& e) {
  Log(absl::StrCat("expert cache ", e.grew() ? "grew" : "shrank", " from ",
                   e.from_bytes, " to ", e.to_bytes, " bytes after ",
                   e.access_index, " accesses: ", e.reason));
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

// Bytes of every expert file of the model: what an unbounded cache would
// hold once every expert was used (a little more when bf16 compute halves
// f32 files).
uint64_t AllExpertBytes(const ModelManifest& manifest) {
  const MoeSpec& moe = manifest.config().moe;
  uint64_t total = 0;
  for (int layer : moe.layers) {
    for (int e = 0; e < moe.num_experts; ++e) {
      total += manifest.FindFile(manifest.ExpertFile(layer, e))->size_bytes;
    }
  }
  return total;
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

// The figures /metrics reads at each scrape: the engine's counters and the
// memory bound's. REQUIRES: all three outlive the metrics.
void AddScrapeSources(const VmoeEngine* engine, const MemoryLimit* limit,
                      const MemoryBudget* request_memory,
                      GatewayMetricsOptions* options) {
  options->cache_stats = [engine] { return engine->cache_stats(); };
  options->prediction_stats = [engine] {
    const VmoeEngine::PrefetchPredictionStats s = engine->prediction_stats();
    return PrefetchPredictionCounts{s.guesses, s.guesses_used,
                                    s.next_layer_experts};
  };
  options->integrity_stats = [engine] {
    const VmoeEngine::IntegrityStats s = engine->integrity_stats();
    return IntegrityCounts{s.expert_files.missing, s.expert_files.read_errors,
                           s.expert_files.size_mismatches,
                           s.expert_files.checksum_mismatches,
                           s.non_finite_results};
  };
  options->memory_stats = [limit, request_memory] {
    return MemoryCounts{limit->bytes, request_memory->capacity_bytes(),
                        request_memory->held_bytes()};
  };
}

// The gRPC server with the builder and quota it was made from, which live
// as long as it does.
struct GrpcServer {
  grpc::ServerBuilder builder;
  grpc::ResourceQuota transport_quota{"edge_gateway_transport"};
  std::unique_ptr<grpc::Server> server;
  int port = 0;
};

// Listens (health and reflection services included) and serves `service`;
// UNAVAILABLE if it cannot listen.
absl::StatusOr<std::unique_ptr<GrpcServer>> StartGrpcServer(
    const GrpcServerOptions& options,
    const std::shared_ptr<grpc::ServerCredentials>& credentials,
    GatewayService* service) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto started = std::make_unique<GrpcServer>();
  grpc::ServerBuilder& builder = started->builder;
  // gRPC sets SO_REUSEPORT by default on Linux: a second gateway would then
  // share the port and steal half the connections instead of failing.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  if (options.max_connection_age_ms > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               options.max_connection_age_ms);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               options.max_connection_age_grace_ms);
  }
  builder.AddListeningPort(options.listen_address, credentials, &started->port);
  builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
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
  started->transport_quota.Resize(options.transport_quota_bytes);
  builder.SetResourceQuota(started->transport_quota);
  builder.RegisterService(service);
  started->server = builder.BuildAndStart();
  if (started->server == nullptr || started->port == 0) {
    return absl::UnavailableError("cannot listen on " + options.listen_address);
  }
  return started;
}

// The health of the server as a whole and of the gateway's service.
void SetServing(grpc::Server* server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(serving);
  health->SetServingStatus(kServiceName, serving);
}

sigset_t ShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

// Blocks until SIGTERM or SIGINT; returns which.
int WaitForShutdownSignal() {
  const sigset_t signals = ShutdownSignals();
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  return signal_number;
}

// Refuses new requests and answers every admitted one (computed if it
// finishes within `timeout`, else UNAVAILABLE), then stops gRPC.
void Drain(absl::Duration timeout, InferencePipeline* pipeline,
           const GatewayService& service, grpc::Server* server) {
  const auto drain_start = absl::Now();
  pipeline->Drain(timeout);
  // Keep refusing late callers with UNAVAILABLE (retryable) rather than let
  // gRPC's Shutdown() cancel them: 200 ms without arrivals means clients
  // have seen the refusals or NOT_SERVING and gone elsewhere.
  service.WaitForQuiet(absl::Milliseconds(200),
                       timeout - (absl::Now() - drain_start));
  // Every admitted request is answered; give gRPC a moment to send them.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

// Start-up, serving until a shutdown signal, drain (the top of this file).
// An error before serving is returned for main() to report.
absl::Status Serve(const ServerConfig& config) {
  // Before the model loads: a bad certificate should fail in milliseconds.
  ASSIGN_OR_RETURN(auto credentials, MakeServerCredentials(config));
  // Before the engine: its cache records into the trace from the start.
  ASSIGN_OR_RETURN(std::unique_ptr<AccessTraceWriter> trace,
                   OpenExpertTrace(config));
  ASSIGN_OR_RETURN(const MemoryLimit limit, MemoryLimitFrom(config));
  ASSIGN_OR_RETURN(ModelManifest manifest,
                   ModelManifest::Load(config.model_dir()));
  const uint64_t all_expert_bytes = AllExpertBytes(manifest);
  const uint64_t cache_budget =
      CacheBudgetBytesFrom(config, limit.bytes, all_expert_bytes);
  ASSIGN_OR_RETURN(EngineOptions engine_options,
                   EngineOptionsFrom(config, cache_budget));
  engine_options.cache.trace = trace.get();
  engine_options.cache.on_resize = LogResize;
  ASSIGN_OR_RETURN(std::unique_ptr<VmoeEngine> engine,
                   VmoeEngine::Create(std::move(manifest), engine_options));
  ASSIGN_OR_RETURN(
      std::unique_ptr<ImageDecoder> decoder,
      ImageDecoder::Create(DecoderOptionsFrom(config, engine->manifest())));
  // Until warm-up has shown the model's resident size (PlanRequestMemory),
  // requests may hold a quarter of the limit.
  MemoryBudget request_memory(limit.bytes / 4);
  GatewayMetricsOptions metrics_options =
      MetricsOptionsFrom(config, engine->manifest(), engine->precision());
  AddScrapeSources(engine.get(), &limit, &request_memory, &metrics_options);
  ASSIGN_OR_RETURN(std::unique_ptr<GatewayMetrics> metrics,
                   GatewayMetrics::Create(metrics_options));
  // 1 s: RSS is back within about a second of a burst's end. 4 MiB: a
  // trim walks every arena's free lists (~1 ms), so not for less; 16
  // concurrent 16 MiB messages left 10 MiB of gRPC's freed read buffers in
  // an arena, a third of fashion-vmoe's idle 29 MiB.
  MemoryTrimmer trimmer(&request_memory, absl::Seconds(1), 4u << 20);
  ASSIGN_OR_RETURN(
      std::unique_ptr<InferencePipeline> pipeline,
      InferencePipeline::Create(engine.get(), decoder.get(), metrics.get(),
                                PipelineOptionsFrom(config), &request_memory));
  GatewayService service(pipeline.get(), engine.get(), metrics.get(),
                         ServiceOptionsFrom(config, cache_budget));
  ASSIGN_OR_RETURN(std::unique_ptr<GrpcServer> grpc_server,
                   StartGrpcServer(GrpcServerOptionsFrom(config, limit.bytes),
                                   credentials, &service));
  SetServing(grpc_server->server.get(), false);
  RETURN_IF_ERROR(WarmUp(*engine, config));
  ASSIGN_OR_RETURN(std::unique_ptr<UsageProfileRecorder> profile_recorder,
                   StartCacheProfile(config, engine.get()));
  ASSIGN_OR_RETURN(
      const MemoryPlan plan,
      PlanRequestMemory(limit, cache_budget, all_expert_bytes, *engine));
  request_memory.SetCapacity(plan.request_bytes);
  Log(plan.Describe());
  SetServing(grpc_server->server.get(), true);
  Log("transport: " + DescribeTransportSecurity(config));
  // Tests and scripts read the two ports from this line.
  Log(absl::StrCat("serving ", engine->manifest().name(), " on ",
                   config.listen_address(), " port ", grpc_server->port,
                   " metrics_port ", metrics->bound_port()));

  const int signal_number = WaitForShutdownSignal();
  Log(absl::StrCat("signal ", signal_number, ": draining (up to ",
                   config.drain_timeout_ms(), " ms)"));
  SetServing(grpc_server->server.get(), false);
  Drain(absl::Milliseconds(config.drain_timeout_ms()), pipeline.get(), service,
        grpc_server->server.get());
  FinishCacheRecording(profile_recorder.get(), trace.get());
  Log("stopped");
  return absl::OkStatus();
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
  const sigset_t signals = edge::ShutdownSignals();
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
  if (absl::Status s = edge::Serve(*config); !s.ok()) return edge::Fail(s);
  return 0;
}
