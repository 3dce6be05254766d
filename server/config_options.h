// Each component's options from the gateway's configuration: the one place
// where a ServerConfig field (server/config.h) becomes a component's setting,
// one function per component. edge_gateway's main.cc only wires the results
// together.
//
// Every component's Options default equals the schema's default for the
// same field (tests/server/config_test.cc checks them field by field), so a
// component built without a config (tests, tools) behaves as a default
// gateway. The one exception is EngineOptions::max_batch_size (see
// kMaxBatchSize, engine/vmoe_engine.h).
//
// REQUIRES: ValidateServerConfig(config) is OK (except for
// EngineOptionsFrom, which the validation calls).
// Thread-safe: pure functions, except MemoryLimitFrom, which reads /proc and
// /sys.
#ifndef EDGE_SERVER_CONFIG_OPTIONS_H_
#define EDGE_SERVER_CONFIG_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "cache/expert_cache.h"
#include "common/model_manifest.h"
#include "engine/vmoe_engine.h"
#include "server/config.h"
#include "server/gateway_service.h"
#include "server/image_decoder.h"
#include "server/inference_pipeline.h"
#include "server/memory_limit.h"
#include "server/metrics.h"

namespace edge {

// memory_limit_bytes, or where it is 0 the cgroup's limit, else half of the
// machine's memory (DetectMemoryLimit).
absl::StatusOr<MemoryLimit> MemoryLimitFrom(const ServerConfig& config);

// cache_budget_bytes, or for 0: unbounded (0) while every expert of the
// model (`all_expert_bytes`) fits in half the memory limit (nothing is ever
// evicted then), else half the limit, which leaves the other half to the
// model's dense weights and requests.
uint64_t CacheBudgetBytesFrom(const ServerConfig& config,
                              uint64_t memory_limit_bytes,
                              uint64_t all_expert_bytes);

// The expert cache's sizing and prefetch fields, with the budget from
// CacheBudgetBytesFrom. `trace` and `on_resize` are left to the caller.
ExpertCacheOptions CacheOptionsFrom(const ServerConfig& config,
                                    uint64_t cache_budget_bytes);

// The engine's fields and its cache's (CacheOptionsFrom).
// INVALID_ARGUMENT naming compute_dtype if it names no dtype: this is where
// ValidateServerConfig() checks it.
absl::StatusOr<EngineOptions> EngineOptionsFrom(const ServerConfig& config,
                                                uint64_t cache_budget_bytes);

// The input limits, and the model's input size and normalisation.
ImageDecoderOptions DecoderOptionsFrom(const ServerConfig& config,
                                       const ModelManifest& model);

// The /metrics address and edge_gateway_model_info's labels; `precision` is
// VmoeEngine::precision(). The scrape callbacks are left to the caller.
GatewayMetricsOptions MetricsOptionsFrom(const ServerConfig& config,
                                         const ModelManifest& model,
                                         const std::string& precision);

// Batching, queue bound, decode threads and top_k limit.
InferencePipelineOptions PipelineOptionsFrom(const ServerConfig& config);

// GetModelInfo's figures (`cache_budget_bytes` from CacheBudgetBytesFrom)
// and the stream age limit.
GatewayServiceOptions ServiceOptionsFrom(const ServerConfig& config,
                                         uint64_t cache_budget_bytes);

// What the gateway's gRPC server takes from the configuration and the memory
// limit; edge_gateway applies it to grpc::ServerBuilder. Defaults: gRPC's
// own behaviour where the configuration's defaults leave a setting off.
struct GrpcServerOptions {
  std::string listen_address = "127.0.0.1:50051";  // ServerConfig's default.
  // A connection gets a GOAWAY after this long; 0 = never (ServerConfig's
  // default).
  int max_connection_age_ms = 0;
  // ... and is closed this long after the GOAWAY whatever still runs on it.
  // INT32_MAX ms is gRPC's own default and its "never" (about 24.8 days).
  int max_connection_age_grace_ms = INT32_MAX;
  // gRPC's memory quota for the transport's buffers: TransportQuotaBytes of
  // the memory limit (server/memory_budget.h), which has no default.
  uint64_t transport_quota_bytes = 0;
  // Larger messages are refused by gRPC itself (RESOURCE_EXHAUSTED); 4 MiB
  // is gRPC's default.
  int max_receive_message_bytes = 4 << 20;
};

GrpcServerOptions GrpcServerOptionsFrom(const ServerConfig& config,
                                        uint64_t memory_limit_bytes);

}  // namespace edge

#endif  // EDGE_SERVER_CONFIG_OPTIONS_H_
