// GatewayMetrics: the gateway's Prometheus metrics and their /metrics
// endpoint.
//
// The server records what happens through the typed methods below; every
// label child they touch (method x gRPC code, stage, layer x expert) is
// created once and its pointer cached, so a recording call is an array
// index plus one atomic add (counters, gauges) or one short mutex
// (histograms, summaries). Children are created in Create(), except the
// request_duration_seconds children of non-OK codes, each created by the
// first answer with its (method, code) (see below). Beyond that nothing on
// the hot path allocates, looks up a name or takes a lock of ours. The expert
// cache, the engine's prefetch predictions and integrity counts, and the
// process figures are not recorded at all: they are read when Prometheus
// scrapes, from the `cache_stats`, `prediction_stats` and `integrity_stats`
// callbacks and /proc/self, so they are fresh at each scrape and no thread
// polls.
//
// With a non-empty `listen_address`, Create() also starts an HTTP server
// (civetweb, via prometheus::Exposer) answering GET /metrics. Serialize()
// returns the same text exposition without HTTP, minus the exposer's own
// `exposer_*` metrics; tests and debug dumps use it.
//
// Metrics (Prometheus conventions: base units, counters end in _total).
// Names below omit the edge_gateway_ prefix, except the process_* ones,
// which keep the names the official Prometheus client libraries use.
//
//   name                              type      labels         unit
//   requests_total                    counter   method, code   answers
//     Answers sent, by RPC (Classify, ClassifyStream, GetModelInfo) and gRPC
//     code name ("OK", "DEADLINE_EXCEEDED", ...). ClassifyStream counts one
//     per frame answered.
//   request_duration_seconds          histogram method, code   seconds
//     End-to-end time of one answer, admitted -> answered, by RPC and gRPC
//     code name. Served answers (code "OK") are kept apart from refusals
//     and failures: a full queue or a bad image is answered in well under a
//     millisecond, so under overload a latency over every answer falls
//     exactly when serving gets slower. The OK children exist from the
//     start; a non-OK one appears at the first answer with its (method,
//     code), so only codes that happened are exported (all 17 codes up
//     front would be 3 x 17 x 17 = 867 series, nearly all of them 0).
//   request_latency_seconds           summary   method, code   seconds
//     Served (OK) answers only, as quantiles 0.5 and 0.99 over the last
//     `latency_window_seconds` (the per-replica P50/P99 panel); `code` is
//     always "OK", so that queries read like the histogram's. A summary
//     keeps a quantile estimator per child, and a refusal's quantiles say
//     nothing the requests_total counter does not. Summaries cannot be
//     aggregated across instances; use the histogram for that.
//   stage_duration_seconds            histogram stage          seconds
//     Time in one stage: queue (admitted -> its batch starts), decode
//     (image bytes -> tensor), compute (one engine batch, expert fetch
//     included), expert_fetch (waiting for experts within that batch).
//     Stages overlap, so they do not sum to the request duration.
//   batch_size                        histogram -              images
//     Images per engine batch.
//   inflight_requests                 gauge     -              requests
//     Admitted and not yet answered.
//   queued_requests                   gauge     -              requests
//     Waiting for a batch.
//   expert_activations_total          counter   layer, expert  routings
//     Images (image routing) or tokens (token routing) routed to an expert.
//   degraded_responses_total          counter   -              answers
//     Answers served with a substitute for an expert that could not be
//     loaded (expert_failure_policy "reroute"); the response says so.
//   model_info                        gauge     model, precision, routing
//     Always 1; the labels name the served model.
//   expert_cache_hits_total           counter   -              lookups
//   expert_cache_misses_total         counter   -              lookups
//   expert_cache_evictions_total      counter   -              experts
//   expert_cache_loads_total          counter   -              experts
//   expert_cache_load_failures_total  counter   -              experts
//   expert_cache_resident_bytes       gauge     -              bytes
//   expert_cache_budget_bytes         gauge     -              bytes
//     0 means unbounded.
//   expert_cache_resident_experts     gauge     -              experts
//   expert_cache_pinned_experts       gauge     -              experts
//   expert_cache_hit_ratio            gauge     -              ratio
//     hits / (hits + misses) since the process started; NaN before the
//     first lookup. For a recent ratio use rate(hits) / (rate(hits) +
//     rate(misses)).
//   expert_cache_window_hit_ratio     gauge     -              ratio
//     The adaptive policy's hit ratio over its last cache_window_accesses
//     accesses, the figure its sizing acts on; NaN without a budget or
//     before the first lookup.
//   expert_cache_capacity_bytes       gauge     -              bytes
//     What the adaptive cache allows itself now, in [min_bytes, budget];
//     0 means unbounded.
//   expert_cache_min_bytes            gauge     -              bytes
//   expert_cache_resizes_total        counter   direction      resizes
//     Capacity changes, direction "up" or "down" (each is logged with its
//     reason).
//   expert_cache_load_duration_seconds histogram -             seconds
//     Load (read, verify, prepare) of one expert, successful loads only;
//     buckets ExpertCacheOptions::load_latency_bounds_ms (0.25 ms .. 1 s).
//   expert_cache_prefetch_issued_total counter  -              loads
//     Loads started by the prefetch pool (announced and predicted experts).
//   expert_cache_prefetch_used_total  counter   -              experts
//     Prefetched experts acquired before being evicted.
//   expert_cache_prefetch_wasted_total counter  -              experts
//     Prefetched experts evicted before any acquire.
//   expert_cache_prefetch_dropped_total counter -              requests
//     Prefetch requests dropped because the pool's queue was full.
//     The expert_cache_* metrics are ExpertCacheStats
//     (cache/expert_cache.h) as of the scrape; absent without `cache_stats`.
//   expert_prediction_guesses_total   counter   -              experts
//     Experts the next-layer predictor guessed (and prefetched).
//   expert_prediction_guesses_used_total counter -             experts
//     Guesses the next layer did use: precision = rate(used) /
//     rate(guesses).
//   expert_prediction_next_layer_experts_total counter -       experts
//     Experts the predicted layers used: recall = rate(guesses_used) /
//     rate(next_layer_experts). Absent without `prediction_stats`.
//   expert_integrity_failures_total   counter   reason         loads
//     Expert loads refused because of the expert's file: "missing",
//     "read_error", "size_mismatch" (includes a size change while being
//     read), "checksum_mismatch". Each attempt counts: a broken file is
//     tried again by every batch that needs it.
//   non_finite_results_total          counter   -              images
//     Images whose logits held NaN or Inf, answered DATA_LOSS instead.
//     The two integrity metrics are VmoeEngine::IntegrityStats as of the
//     scrape; absent without `integrity_stats`.
//   memory_limit_bytes                gauge     -              bytes
//     The memory bound: memory_limit_bytes, or the cgroup's limit.
//   request_memory_budget_bytes       gauge     -              bytes
//     What requests in flight may hold (payloads, decoded tensors, decode
//     peaks) after the model, cache, transport quota and headroom.
//   request_memory_bytes              gauge     -              bytes
//     What they hold now; at the budget, requests get RESOURCE_EXHAUSTED.
//     The three are absent without `memory_stats`.
//   process_resident_memory_bytes     gauge     -              bytes
//   process_resident_memory_peak_bytes gauge    -              bytes
//     VmHWM: the largest resident set so far.
//   process_virtual_memory_bytes      gauge     -              bytes
//   process_cpu_seconds_total         counter   -              seconds
//     User plus system CPU time.
//   process_start_time_seconds        gauge     -              seconds
//     Since the Unix epoch.
//   process_open_fds                  gauge     -              fds
//     The process_* metrics are absent if /proc/self cannot be read.
//
// Thread-safe: every method may be called from any thread, concurrently with
// scrapes. `cache_stats`, `prediction_stats`, `integrity_stats` and
// `memory_stats` are called from scrape threads (civetweb's and Serialize()'s
// callers) and must be thread-safe too.
#ifndef EDGE_SERVER_METRICS_H_
#define EDGE_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/expert_cache.h"

namespace prometheus {
class Counter;
class Exposer;
template <typename T>
class Family;
class Gauge;
class Histogram;
class Registry;
class Summary;
}  // namespace prometheus

namespace edge {
namespace internal {
class ScrapeCollector;
}  // namespace internal

// The engine's next-layer prefetch predictions so far
// (VmoeEngine::PrefetchPredictionStats, field for field: declared here so
// that the metrics library does not link the engine).
struct PrefetchPredictionCounts {
  uint64_t guesses = 0;             // experts predicted and prefetched.
  uint64_t guesses_used = 0;        // of those, used by the next layer.
  uint64_t next_layer_experts = 0;  // experts the predicted layers used.
};

// What the engine refused so far (VmoeEngine::IntegrityStats, flattened:
// declared here for the same reason).
struct IntegrityCounts {
  // Expert loads refused, by reason (ExpertStoreStats).
  uint64_t expert_missing = 0;
  uint64_t expert_read_errors = 0;
  uint64_t expert_size_mismatches = 0;
  uint64_t expert_checksum_mismatches = 0;
  // Images answered DATA_LOSS because their logits were not finite.
  uint64_t non_finite_results = 0;
};

// The memory bound's figures (server/memory_budget.h), read at each scrape.
struct MemoryCounts {
  uint64_t limit_bytes = 0;           // memory_limit_bytes or the cgroup's
  uint64_t request_budget_bytes = 0;  // what requests in flight may hold
  uint64_t request_held_bytes = 0;    // what they hold now
};

struct GatewayMetricsOptions {
  // "host:port" (IPv4; Debian's civetweb has no IPv6) for GET /metrics.
  // Port 0 picks a free port (see bound_port()). "" serves no endpoint.
  // 9464 is the port OpenTelemetry's Prometheus exporter registered.
  std::string listen_address = "127.0.0.1:9464";
  // civetweb worker threads. Prometheus scrapes one request at a time; the
  // second lets a person curl /metrics during a scrape.
  int http_threads = 2;

  // edge_gateway_model_info's labels: the manifest's name, its precision
  // ("float32", "bf16", "int8") and routing (ModelConfig::routing_name():
  // "image", "token" or "dense").
  std::string model_name;
  std::string precision;
  std::string routing;
  // (block index, number of experts) of every MoE layer. Their
  // expert_activations_total children are created up front so that every
  // expert is exported, at 0 if never routed to.
  std::vector<std::pair<int, int>> moe_layers;

  // Sliding window of the latency summary's quantiles. 60 s in 5 buckets is
  // prometheus-cpp's default: the window advances every 12 s, finer than the
  // usual 15 s scrape interval.
  int latency_window_seconds = 60;
  int latency_window_buckets = 5;

  // Read at every scrape; may be empty (no expert_cache_* metrics).
  std::function<ExpertCacheStats()> cache_stats;
  // Read at every scrape; may be empty (no expert_prediction_* metrics).
  std::function<PrefetchPredictionCounts()> prediction_stats;
  // Read at every scrape; may be empty (no expert_integrity_failures_total
  // or non_finite_results_total).
  std::function<IntegrityCounts()> integrity_stats;
  // The memory bound's figures; null: no memory_* series.
  std::function<MemoryCounts()> memory_stats;
};

class GatewayMetrics {
 public:
  enum class Method { kClassify, kClassifyStream, kGetModelInfo };
  enum class Stage { kQueue, kDecode, kCompute, kExpertFetch };

  // INVALID_ARGUMENT for a malformed listen_address, a non-positive window
  // or thread count, or a MoE layer outside [0, kMaxDepth) or with experts
  // outside [1, kMaxExperts] or listed twice. UNAVAILABLE, naming the
  // address, if the HTTP endpoint cannot listen there (in use, not local).
  static absl::StatusOr<std::unique_ptr<GatewayMetrics>> Create(
      GatewayMetricsOptions options);
  // Stops the HTTP endpoint, waiting for a scrape in progress. After the
  // endpoint has served a request this can take up to ~2 s: civetweb's
  // worker threads notice the stop only at their next poll timeout.
  ~GatewayMetrics();
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

  // One answer: `grpc_code` is the int value of grpc::StatusCode (0..16,
  // identical to absl::StatusCode); other values count as "UNKNOWN", as
  // gRPC itself treats them. `seconds` goes to the (method, code)
  // histogram, and for OK answers to the summary too.
  void RecordRequest(Method method, int grpc_code, double seconds);
  void RecordStage(Stage stage, double seconds);
  void RecordBatch(int size);
  // REQUIRES: (layer, expert) is in moe_layers; other pairs are ignored.
  void AddExpertActivations(int layer, int expert, uint64_t count);
  // Admission adds 1, the answer adds -1.
  void AddInflight(int64_t delta);
  void SetQueued(int64_t queued);
  void RecordDegraded();

  // Every metric above in the text exposition format (version 0.0.4).
  std::string Serialize() const;
  // The port /metrics listens on (the chosen one if listen_address asked
  // for port 0); 0 without an endpoint.
  int bound_port() const;

 private:
  static constexpr int kNumMethods = 3;
  static constexpr int kNumStages = 4;
  // gRPC status codes 0 (OK) .. 16 (UNAUTHENTICATED).
  static constexpr int kNumCodes = 17;

  explicit GatewayMetrics(const GatewayMetricsOptions& options);
  void AddRequestMetrics(const GatewayMetricsOptions& options);
  // request_duration_seconds{method, code}, created at its first use.
  prometheus::Histogram& RequestDuration(int method, int code);
  void AddStageAndBatchMetrics();
  void AddModelMetrics(const GatewayMetricsOptions& options);
  absl::Status StartExposer(const GatewayMetricsOptions& options);

  // Constant after construction; the pointees are thread-safe and owned by
  // registry_.
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<internal::ScrapeCollector> scrape_collector_;
  std::array<std::array<prometheus::Counter*, kNumCodes>, kNumMethods>
      requests_{};
  prometheus::Family<prometheus::Histogram>* duration_family_ = nullptr;
  // Code "OK" only (see the metric list).
  std::array<prometheus::Summary*, kNumMethods> request_latency_{};
  // Filled lazily, not under a lock: prometheus-cpp's Family::Add returns
  // the existing child for labels it has, so threads that race to create
  // one store the same pointer.
  std::array<std::array<std::atomic<prometheus::Histogram*>, kNumCodes>,
             kNumMethods>
      request_duration_{};
  std::array<prometheus::Histogram*, kNumStages> stage_duration_{};
  prometheus::Histogram* batch_size_ = nullptr;
  prometheus::Gauge* inflight_ = nullptr;
  prometheus::Gauge* queued_ = nullptr;
  prometheus::Counter* degraded_ = nullptr;
  // activations_[layer][expert]; empty rows for dense layers.
  std::vector<std::vector<prometheus::Counter*>> activations_;
  int bound_port_ = 0;
  // Declared last so it is destroyed first: no scrape outlives the rest.
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace edge

#endif  // EDGE_SERVER_METRICS_H_
