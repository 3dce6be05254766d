#include "server/config_options.h"

#include <algorithm>

#include "common/saturating_time.h"
#include "common/status_macros.h"
#include "server/memory_budget.h"

namespace edge {
namespace {

// After max_connection_age_ms gRPC sends the connection a GOAWAY, and
// after this grace it closes the connection whatever still runs on it: a
// stream cut there ends UNAVAILABLE "enter idle", its answers in flight
// lost. The gateway ends each stream itself at max_stream_age_ms, so the
// grace only has to outlast that: every stream on the connection started
// before the GOAWAY, so it ends within max_stream_age_ms of it, plus the
// time to answer its last frames. 10 s covers those (a full queue of 64 is
// ~0.5 s of work; one raised to 1024 would need ~7 s); only a client that
// stopped reading its answers is cut. Without a stream age limit, streams
// may run as long as they like: gRPC's "never".
constexpr int64_t kStreamEndMarginMs = 10000;

int MaxConnectionAgeGraceMs(const ServerConfig& config) {
  if (config.max_stream_age_ms() == 0) return INT32_MAX;
  return static_cast<int>(std::min<int64_t>(
      SaturatingAdd(config.max_stream_age_ms(), kStreamEndMarginMs),
      INT32_MAX));
}

// The transport must admit the largest request we accept, so that an
// oversized image reaches the decoder and gets its INVALID_ARGUMENT with a
// clear message: a raw RGB frame of max_image_pixels (3 bytes a pixel) or
// an encoded one of max_image_bytes, plus 64 KiB for the other fields.
// The transport's buffers are bounded by gRPC's memory quota, and no one
// message may take more than half of it (server/memory_budget.h): gRPC
// refuses a larger one (RESOURCE_EXHAUSTED "Received message larger than
// max") before buffering it.
int MaxReceiveMessageBytes(const ServerConfig& config,
                           uint64_t transport_quota_bytes) {
  const uint64_t largest = std::max<uint64_t>(config.max_image_bytes(),
                                              3 * config.max_image_pixels());
  return static_cast<int>(std::min<uint64_t>(
      {largest + 65536, transport_quota_bytes / 2, INT32_MAX}));
}

}  // namespace

absl::StatusOr<MemoryLimit> MemoryLimitFrom(const ServerConfig& config) {
  if (config.memory_limit_bytes() > 0) {
    return MemoryLimit{config.memory_limit_bytes(), "memory_limit_bytes"};
  }
  return DetectMemoryLimit();
}

uint64_t CacheBudgetBytesFrom(const ServerConfig& config,
                              uint64_t memory_limit_bytes,
                              uint64_t all_expert_bytes) {
  if (config.cache_budget_bytes() > 0) return config.cache_budget_bytes();
  return all_expert_bytes <= memory_limit_bytes / 2 ? 0
                                                    : memory_limit_bytes / 2;
}

ExpertCacheOptions CacheOptionsFrom(const ServerConfig& config,
                                    uint64_t cache_budget_bytes) {
  ExpertCacheOptions options;
  options.budget_bytes = cache_budget_bytes;
  options.policy.min_bytes = config.cache_min_bytes();
  options.policy.grow_below = config.cache_grow_below();
  options.policy.shrink_above = config.cache_shrink_above();
  options.policy.window_accesses = config.cache_window_accesses();
  options.policy.resize_interval_accesses =
      config.cache_resize_interval_accesses();
  options.prefetch_threads = config.prefetch_threads();
  return options;
}

absl::StatusOr<EngineOptions> EngineOptionsFrom(const ServerConfig& config,
                                                uint64_t cache_budget_bytes) {
  EngineOptions options;
  options.max_batch_size = config.max_batch_size();
  const absl::StatusOr<ComputeDtype> dtype =
      ParseComputeDtype(config.compute_dtype());
  if (!dtype.ok()) {
    return InvalidArgument("compute_dtype: ", dtype.status().message());
  }
  options.compute_dtype = *dtype;
  options.num_threads = config.engine_threads();
  options.cache = CacheOptionsFrom(config, cache_budget_bytes);
  options.expert_failure_policy = config.expert_failure_policy() == "reroute"
                                      ? ExpertFailurePolicy::kReroute
                                      : ExpertFailurePolicy::kFail;
  options.prefetch_next_layer = config.prefetch_next_layer();
  return options;
}

ImageDecoderOptions DecoderOptionsFrom(const ServerConfig& config,
                                       const ModelManifest& model) {
  ImageDecoderOptions options;
  options.image_size = model.config().image_size;
  options.mean = model.mean();
  options.std = model.stddev();
  options.max_encoded_bytes = config.max_image_bytes();
  options.max_pixels = config.max_image_pixels();
  return options;
}

GatewayMetricsOptions MetricsOptionsFrom(const ServerConfig& config,
                                         const ModelManifest& model,
                                         const std::string& precision) {
  GatewayMetricsOptions options;
  options.listen_address = config.metrics_address();
  options.model_name = model.name();
  options.precision = precision;
  const MoeSpec& moe = model.config().moe;
  options.routing = model.config().routing_name();
  for (int layer : moe.layers) {
    options.moe_layers.push_back({layer, moe.num_experts});
  }
  return options;
}

InferencePipelineOptions PipelineOptionsFrom(const ServerConfig& config) {
  InferencePipelineOptions options;
  options.batcher.max_batch_size = config.max_batch_size();
  options.batcher.max_queue_delay_us = config.max_queue_delay_us();
  options.max_queue_size = config.max_queue_size();
  options.decode_threads = config.decode_threads();
  options.max_top_k = config.max_top_k();
  return options;
}

GatewayServiceOptions ServiceOptionsFrom(const ServerConfig& config,
                                         uint64_t cache_budget_bytes) {
  GatewayServiceOptions options;
  options.max_batch_size = config.max_batch_size();
  options.cache_budget_bytes = cache_budget_bytes;
  options.max_stream_age_ms = config.max_stream_age_ms();
  return options;
}

GrpcServerOptions GrpcServerOptionsFrom(const ServerConfig& config,
                                        uint64_t memory_limit_bytes) {
  GrpcServerOptions options;
  options.listen_address = config.listen_address();
  if (config.max_connection_age_ms() > 0) {
    options.max_connection_age_ms = static_cast<int>(
        std::min<int64_t>(config.max_connection_age_ms(), INT32_MAX));
    options.max_connection_age_grace_ms = MaxConnectionAgeGraceMs(config);
  }
  options.transport_quota_bytes = TransportQuotaBytes(memory_limit_bytes);
  options.max_receive_message_bytes =
      MaxReceiveMessageBytes(config, options.transport_quota_bytes);
  return options;
}

}  // namespace edge
