#include "server/metrics.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <iterator>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/model_manifest.h"
#include "common/status_macros.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/summary.h"
#include "prometheus/text_serializer.h"
#include "server/internal/scrape_collector.h"

namespace edge {
namespace {

// Label values, indexed by the enums' values.
constexpr const char* kMethodNames[] = {"Classify", "ClassifyStream",
                                        "GetModelInfo"};
constexpr const char* kStageNames[] = {"queue", "decode", "compute",
                                       "expert_fetch"};
// gRPC maps a code it does not know to UNKNOWN; so do we.
constexpr int kUnknownCode = 2;
constexpr int kOkCode = 0;

// The `code` label value: gRPC's code name ("OK", "UNAVAILABLE", ...);
// absl::StatusCode is gRPC's code list, value for value.
std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Request and stage latencies: 0.5 ms .. 10 s in 1-2-5 steps per decade.
// One vmoe-tiny-224 image takes ~12 ms and a batch of 16 ~154 ms on the
// reference machine (BENCHMARKS.md), so the ms buckets resolve decode and
// the fetch of a resident expert, the 100 ms buckets full batches, and the
// top ones queueing under overload and cold expert loads from disk.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
          0.1,    0.2,   0.5,   1,     2,    5,    10};
}

// Powers of two up to 64, EngineOptions::max_batch_size's default and the
// largest batch the engine accepts as shipped. `le` is inclusive, so a
// batch of 3 lands in le="4".
prometheus::Histogram::BucketBoundaries BatchSizeBuckets() {
  return {1, 2, 4, 8, 16, 32, 64};
}

// CKMS rank errors: the reported P50 is a true quantile in [0.495, 0.505]
// and the P99 one in [0.989, 0.991], so P99 never shows P98's value.
const prometheus::Summary::Quantiles& LatencyQuantiles() {
  static const auto* quantiles =
      new prometheus::Summary::Quantiles{{0.5, 0.005}, {0.99, 0.001}};
  return *quantiles;
}

// "host:port", IPv4 or a host name, port 0..65535. civetweb would also take
// lists, a bare port (every interface) and "s"/"r" suffixes; we refuse them
// so that the endpoint is only where the config says.
absl::Status CheckListenAddress(absl::string_view address) {
  if (address.empty()) return absl::OkStatus();
  if (address.front() == '[' || address.find(':') != address.rfind(':')) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address,
                     "\": IPv6 is not supported (Debian's civetweb is built "
                     "without it); use an IPv4 address like 127.0.0.1:9464"));
  }
  const size_t colon = address.rfind(':');
  const absl::string_view port_text =
      colon == absl::string_view::npos ? "" : address.substr(colon + 1);
  int port = -1;
  const bool digits_only =
      !port_text.empty() && port_text.size() <= 5 &&
      std::all_of(port_text.begin(), port_text.end(), absl::ascii_isdigit);
  if (colon == 0 || !digits_only || !absl::SimpleAtoi(port_text, &port) ||
      port > 65535 || address.find(',') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics listen address \"", address,
                     "\" is not host:port, e.g. 127.0.0.1:9464"));
  }
  return absl::OkStatus();
}

absl::Status CheckMoeLayers(const std::vector<std::pair<int, int>>& layers) {
  std::set<int> seen;
  for (const auto& [layer, num_experts] : layers) {
    if (layer < 0 || layer >= kMaxDepth || num_experts < 1 ||
        num_experts > kMaxExperts || !seen.insert(layer).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metrics moe_layers: (", layer, ", ", num_experts,
                       ") needs a unique block in [0, ", kMaxDepth,
                       ") and experts in [1, ", kMaxExperts, "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOptions(const GatewayMetricsOptions& options) {
  RETURN_IF_ERROR(CheckListenAddress(options.listen_address));
  if (options.http_threads < 1) {
    return absl::InvalidArgumentError("metrics http_threads must be >= 1");
  }
  if (options.latency_window_seconds < 1 ||
      options.latency_window_buckets < 1) {
    return absl::InvalidArgumentError(
        "metrics latency_window_seconds and _buckets must be >= 1");
  }
  return CheckMoeLayers(options.moe_layers);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayMetrics>> GatewayMetrics::Create(
    GatewayMetricsOptions options) {
  RETURN_IF_ERROR(CheckOptions(options));
  std::unique_ptr<GatewayMetrics> metrics(new GatewayMetrics(options));
  if (!options.listen_address.empty()) {
    RETURN_IF_ERROR(metrics->StartExposer(options));
  }
  return metrics;
}

GatewayMetrics::GatewayMetrics(const GatewayMetricsOptions& options)
    : registry_(std::make_shared<prometheus::Registry>()),
      scrape_collector_(std::make_shared<internal::ScrapeCollector>(
          options.cache_stats, options.prediction_stats,
          options.integrity_stats, options.memory_stats)) {
  AddRequestMetrics(options);
  AddStageAndBatchMetrics();
  AddModelMetrics(options);
}

GatewayMetrics::~GatewayMetrics() = default;

// Every (method, code) counter exists from the start, at 0, so that the
// first error of a kind shows in increase() and rate() rather than
// appearing as a new series with no baseline. The latency metrics start
// with their OK children only (see metrics.h).
void GatewayMetrics::AddRequestMetrics(const GatewayMetricsOptions& options) {
  auto& requests = prometheus::BuildCounter()
                       .Name("edge_gateway_requests_total")
                       .Help("Answers sent, by RPC and gRPC status code.")
                       .Register(*registry_);
  duration_family_ = &prometheus::BuildHistogram()
                          .Name("edge_gateway_request_duration_seconds")
                          .Help(
                              "Time from admission to answer, by RPC and "
                              "gRPC status code.")
                          .Register(*registry_);
  auto& latency = prometheus::BuildSummary()
                      .Name("edge_gateway_request_latency_seconds")
                      .Help(
                          "Time from admission to a served (OK) answer, "
                          "quantiles over a sliding window.")
                      .Register(*registry_);
  const std::chrono::seconds window(options.latency_window_seconds);
  for (int m = 0; m < kNumMethods; ++m) {
    const std::string method = kMethodNames[m];
    for (int code = 0; code < kNumCodes; ++code) {
      requests_[m][code] =
          &requests.Add({{"method", method}, {"code", CodeName(code)}});
    }
    RequestDuration(m, kOkCode);
    request_latency_[m] = &latency.Add(
        {{"method", method}, {"code", CodeName(kOkCode)}}, LatencyQuantiles(),
        window, options.latency_window_buckets);
  }
}

prometheus::Histogram& GatewayMetrics::RequestDuration(int method, int code) {
  std::atomic<prometheus::Histogram*>& slot = request_duration_[method][code];
  prometheus::Histogram* histogram = slot.load(std::memory_order_acquire);
  if (histogram == nullptr) {
    histogram = &duration_family_->Add(
        {{"method", kMethodNames[method]}, {"code", CodeName(code)}},
        LatencyBuckets());
    slot.store(histogram, std::memory_order_release);
  }
  return *histogram;
}

void GatewayMetrics::AddStageAndBatchMetrics() {
  auto& stages = prometheus::BuildHistogram()
                     .Name("edge_gateway_stage_duration_seconds")
                     .Help("Time spent in one stage of serving.")
                     .Register(*registry_);
  for (int s = 0; s < kNumStages; ++s) {
    stage_duration_[s] =
        &stages.Add({{"stage", kStageNames[s]}}, LatencyBuckets());
  }
  batch_size_ = &prometheus::BuildHistogram()
                     .Name("edge_gateway_batch_size")
                     .Help("Images per engine batch.")
                     .Register(*registry_)
                     .Add({}, BatchSizeBuckets());
  inflight_ = &prometheus::BuildGauge()
                   .Name("edge_gateway_inflight_requests")
                   .Help("Requests admitted and not yet answered.")
                   .Register(*registry_)
                   .Add({});
  queued_ = &prometheus::BuildGauge()
                 .Name("edge_gateway_queued_requests")
                 .Help("Requests waiting for a batch.")
                 .Register(*registry_)
                 .Add({});
}

void GatewayMetrics::AddModelMetrics(const GatewayMetricsOptions& options) {
  prometheus::BuildGauge()
      .Name("edge_gateway_model_info")
      .Help("Always 1; the labels name the served model.")
      .Register(*registry_)
      .Add({{"model", options.model_name},
            {"precision", options.precision},
            {"routing", options.routing}})
      .Set(1);
  degraded_ = &prometheus::BuildCounter()
                   .Name("edge_gateway_degraded_responses_total")
                   .Help("Answers served in a degraded way.")
                   .Register(*registry_)
                   .Add({});
  auto& activations = prometheus::BuildCounter()
                          .Name("edge_gateway_expert_activations_total")
                          .Help("Images or tokens routed to an expert.")
                          .Register(*registry_);
  for (const auto& [layer, num_experts] : options.moe_layers) {
    if (static_cast<size_t>(layer) >= activations_.size()) {
      activations_.resize(layer + 1);
    }
    for (int expert = 0; expert < num_experts; ++expert) {
      activations_[layer].push_back(&activations.Add(
          {{"layer", absl::StrCat(layer)}, {"expert", absl::StrCat(expert)}}));
    }
  }
}

absl::Status GatewayMetrics::StartExposer(
    const GatewayMetricsOptions& options) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(options.listen_address,
                                                     options.http_threads);
  } catch (const std::exception& e) {
    // civetweb only says it got no context; binding is the usual cause.
    return absl::UnavailableError(absl::StrCat(
        "metrics endpoint cannot listen on ", options.listen_address,
        " (address in use, or not an IPv4 address of this host): ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(scrape_collector_);
  const std::vector<int> ports = exposer_->GetListeningPorts();
  bound_port_ = ports.empty() ? 0 : ports.front();
  return absl::OkStatus();
}

void GatewayMetrics::RecordRequest(Method method, int grpc_code,
                                   double seconds) {
  const int m = static_cast<int>(method);
  const int code =
      grpc_code >= 0 && grpc_code < kNumCodes ? grpc_code : kUnknownCode;
  requests_[m][code]->Increment();
  RequestDuration(m, code).Observe(seconds);
  if (code == kOkCode) request_latency_[m]->Observe(seconds);
}

void GatewayMetrics::RecordStage(Stage stage, double seconds) {
  stage_duration_[static_cast<int>(stage)]->Observe(seconds);
}

void GatewayMetrics::RecordBatch(int size) { batch_size_->Observe(size); }

void GatewayMetrics::AddExpertActivations(int layer, int expert,
                                          uint64_t count) {
  if (layer < 0 || static_cast<size_t>(layer) >= activations_.size()) return;
  const std::vector<prometheus::Counter*>& experts = activations_[layer];
  if (expert < 0 || static_cast<size_t>(expert) >= experts.size()) return;
  experts[expert]->Increment(static_cast<double>(count));
}

void GatewayMetrics::AddInflight(int64_t delta) {
  inflight_->Increment(static_cast<double>(delta));
}

void GatewayMetrics::SetQueued(int64_t queued) {
  queued_->Set(static_cast<double>(queued));
}

void GatewayMetrics::RecordDegraded() { degraded_->Increment(); }

std::string GatewayMetrics::Serialize() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<prometheus::MetricFamily> scraped = scrape_collector_->Collect();
  families.insert(families.end(), std::make_move_iterator(scraped.begin()),
                  std::make_move_iterator(scraped.end()));
  return prometheus::TextSerializer().Serialize(families);
}

int GatewayMetrics::bound_port() const { return bound_port_; }

}  // namespace edge
