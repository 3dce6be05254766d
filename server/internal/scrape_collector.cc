#include "server/internal/scrape_collector.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_type.h"
#include "server/internal/process_stats.h"

namespace edge {
namespace internal {
namespace {

using prometheus::MetricFamily;
using prometheus::MetricType;

// One unlabelled sample of a counter or gauge.
MetricFamily Single(std::string name, std::string help, MetricType type,
                    double value) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

MetricFamily Counter(std::string name, std::string help, double value) {
  return Single(std::move(name), std::move(help), MetricType::Counter, value);
}

MetricFamily Gauge(std::string name, std::string help, double value) {
  return Single(std::move(name), std::move(help), MetricType::Gauge, value);
}

// NaN, not 0, while there are no lookups: no lookups is not a 0% hit
// rate, and NaN compares false in alert rules.
double RatioOrNan(bool defined, double ratio) {
  return defined ? ratio : std::numeric_limits<double>::quiet_NaN();
}

// One unlabelled counter or gauge, for tables of them.
struct Sample {
  template <typename T>
  Sample(const char* name, MetricType type, const char* help, T value)
      : name(name), type(type), help(help), value(static_cast<double>(value)) {}
  const char* name;  // after the table's prefix.
  MetricType type;
  const char* help;
  double value;
};

void AppendSamples(const std::string& prefix,
                   std::initializer_list<Sample> samples,
                   std::vector<MetricFamily>* out) {
  for (const Sample& s : samples) {
    out->push_back(Single(prefix + s.name, s.help, s.type, s.value));
  }
}

constexpr MetricType kCounter = MetricType::Counter;
constexpr MetricType kGauge = MetricType::Gauge;
constexpr char kCachePrefix[] = "edge_gateway_expert_cache_";

// The cache's load latency buckets (cumulative counts per upper bound, the
// last one +Inf) as a Prometheus histogram in seconds.
MetricFamily LoadDurationHistogram(const ExpertCacheStats& stats) {
  MetricFamily family;
  family.name = std::string(kCachePrefix) + "load_duration_seconds";
  family.help = "Time to load and prepare one expert (successful loads).";
  family.type = MetricType::Histogram;
  prometheus::ClientMetric metric;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < stats.load_latency_counts.size(); ++i) {
    cumulative += stats.load_latency_counts[i];
    const double upper = i < stats.load_latency_bounds_ms.size()
                             ? stats.load_latency_bounds_ms[i] / 1000
                             : std::numeric_limits<double>::infinity();
    metric.histogram.bucket.push_back({cumulative, upper});
  }
  // Prometheus requires a +Inf bucket, even for a cache reporting none.
  const auto& buckets = metric.histogram.bucket;
  if (buckets.empty() || !std::isinf(buckets.back().upper_bound)) {
    metric.histogram.bucket.push_back(
        {cumulative, std::numeric_limits<double>::infinity()});
  }
  metric.histogram.sample_count = cumulative;
  metric.histogram.sample_sum = stats.load_latency_sum_s;
  family.metric.push_back(std::move(metric));
  return family;
}

MetricFamily ResizesByDirection(const ExpertCacheStats& stats) {
  MetricFamily family;
  family.name = std::string(kCachePrefix) + "resizes_total";
  family.help = "Capacity changes of the adaptive cache, by direction.";
  family.type = MetricType::Counter;
  for (const auto& [direction, count] :
       {std::pair<const char*, uint64_t>{"up", stats.resizes_up},
        {"down", stats.resizes_down}}) {
    prometheus::ClientMetric metric;
    metric.label.push_back({"direction", direction});
    metric.counter.value = static_cast<double>(count);
    family.metric.push_back(std::move(metric));
  }
  return family;
}

// Sizing and prefetch (cache/expert_cache.h's ExpertCacheStats).
void AppendAdaptiveFamilies(const ExpertCacheStats& stats,
                            std::vector<MetricFamily>* out) {
  // The policy's window exists only with a budget.
  const bool windowed = stats.budget_bytes > 0 && stats.hits + stats.misses > 0;
  AppendSamples(
      kCachePrefix,
      {{"capacity_bytes", kGauge,
        "Bytes the adaptive cache currently allows itself (between min and "
        "budget); 0 means unbounded.",
        stats.capacity_bytes},
       {"min_bytes", kGauge,
        "Lowest capacity the cache may shrink to; 0 means unbounded.",
        stats.min_bytes},
       {"window_hit_ratio", kGauge,
        "Hit ratio over the adaptive policy's sliding window of accesses; "
        "NaN without a budget.",
        RatioOrNan(windowed, stats.window_hit_rate)},
       {"prefetch_issued_total", kCounter,
        "Expert loads started by the prefetch pool.", stats.prefetch_issued},
       {"prefetch_used_total", kCounter,
        "Prefetched experts acquired before eviction.", stats.prefetch_used},
       {"prefetch_wasted_total", kCounter,
        "Prefetched experts evicted before any use.", stats.prefetch_wasted},
       {"prefetch_dropped_total", kCounter,
        "Prefetch requests dropped because the queue was full.",
        stats.prefetch_dropped}},
      out);
  out->push_back(ResizesByDirection(stats));
  out->push_back(LoadDurationHistogram(stats));
}

void AppendPredictionFamilies(const PrefetchPredictionCounts& counts,
                              std::vector<MetricFamily>* out) {
  AppendSamples(
      "edge_gateway_expert_prediction_",
      {{"guesses_total", kCounter,
        "Experts predicted for the next MoE layer and prefetched.",
        counts.guesses},
       {"guesses_used_total", kCounter,
        "Predicted experts the next MoE layer did use (precision = used / "
        "guesses).",
        counts.guesses_used},
       {"next_layer_experts_total", kCounter,
        "Experts the predicted layers used (recall = guesses_used / this).",
        counts.next_layer_experts}},
      out);
}

// Every reason is exported, at 0 until it happens, so that the first
// refusal shows in increase() and rate().
void AppendIntegrityFamilies(const IntegrityCounts& counts,
                             std::vector<MetricFamily>* out) {
  MetricFamily family;
  family.name = "edge_gateway_expert_integrity_failures_total";
  family.help = "Expert loads refused because of the expert's file, by reason.";
  family.type = MetricType::Counter;
  for (const auto& [reason, count] :
       {std::pair<const char*, uint64_t>{"missing", counts.expert_missing},
        {"read_error", counts.expert_read_errors},
        {"size_mismatch", counts.expert_size_mismatches},
        {"checksum_mismatch", counts.expert_checksum_mismatches}}) {
    prometheus::ClientMetric metric;
    metric.label.push_back({"reason", reason});
    metric.counter.value = static_cast<double>(count);
    family.metric.push_back(std::move(metric));
  }
  out->push_back(std::move(family));
  out->push_back(Counter("edge_gateway_non_finite_results_total",
                         "Images whose logits held NaN or Inf, answered "
                         "DATA_LOSS instead.",
                         static_cast<double>(counts.non_finite_results)));
}

void AppendCacheFamilies(const ExpertCacheStats& stats,
                         std::vector<MetricFamily>* out) {
  const uint64_t lookups = stats.hits + stats.misses;
  AppendSamples(
      kCachePrefix,
      {{"hits_total", kCounter,
        "Expert lookups that found the expert resident or loading.",
        stats.hits},
       {"misses_total", kCounter, "Expert lookups that started a load.",
        stats.misses},
       {"evictions_total", kCounter, "Experts evicted to make room.",
        stats.evictions},
       {"loads_total", kCounter, "Expert loads that succeeded.", stats.loads},
       {"load_failures_total", kCounter, "Expert loads that failed.",
        stats.load_failures},
       {"resident_bytes", kGauge, "Bytes of resident experts.",
        stats.resident_bytes},
       {"budget_bytes", kGauge, "Byte budget of the cache; 0 means unbounded.",
        stats.budget_bytes},
       {"resident_experts", kGauge, "Experts resident.",
        stats.resident_experts},
       {"pinned_experts", kGauge, "Resident experts pinned by a running batch.",
        stats.pinned_experts},
       {"hit_ratio", kGauge,
        "hits / (hits + misses) since the process started.",
        RatioOrNan(lookups > 0, static_cast<double>(stats.hits) /
                                    std::max<uint64_t>(lookups, 1))}},
      out);
  AppendAdaptiveFamilies(stats, out);
}

void AppendProcessFamilies(const ProcessStats& stats,
                           std::vector<MetricFamily>* out) {
  out->push_back(Gauge("process_resident_memory_bytes",
                       "Resident memory size in bytes.", stats.resident_bytes));
  out->push_back(Gauge("process_resident_memory_peak_bytes",
                       "Largest resident memory size so far (VmHWM) in bytes.",
                       stats.resident_peak_bytes));
  out->push_back(Gauge("process_virtual_memory_bytes",
                       "Virtual memory size in bytes.", stats.virtual_bytes));
  out->push_back(Counter("process_cpu_seconds_total",
                         "Total user and system CPU time spent in seconds.",
                         stats.cpu_seconds));
  out->push_back(Gauge("process_start_time_seconds",
                       "Start time of the process since unix epoch in "
                       "seconds.",
                       stats.start_time_seconds));
  out->push_back(Gauge("process_open_fds", "Number of open file descriptors.",
                       stats.open_fds));
}

}  // namespace

ScrapeCollector::ScrapeCollector(
    std::function<ExpertCacheStats()> cache_stats,
    std::function<PrefetchPredictionCounts()> prediction_stats,
    std::function<IntegrityCounts()> integrity_stats,
    std::function<MemoryCounts()> memory_stats)
    : cache_stats_(std::move(cache_stats)),
      prediction_stats_(std::move(prediction_stats)),
      integrity_stats_(std::move(integrity_stats)),
      memory_stats_(std::move(memory_stats)) {}

std::vector<MetricFamily> ScrapeCollector::Collect() const {
  std::vector<MetricFamily> families;
  if (cache_stats_) AppendCacheFamilies(cache_stats_(), &families);
  if (prediction_stats_) {
    AppendPredictionFamilies(prediction_stats_(), &families);
  }
  if (integrity_stats_) AppendIntegrityFamilies(integrity_stats_(), &families);
  if (memory_stats_) {
    const MemoryCounts m = memory_stats_();
    families.push_back(Gauge("edge_gateway_memory_limit_bytes",
                             "The memory bound: memory_limit_bytes, or the "
                             "cgroup's limit.",
                             static_cast<double>(m.limit_bytes)));
    families.push_back(Gauge("edge_gateway_request_memory_budget_bytes",
                             "Bytes requests in flight may hold.",
                             static_cast<double>(m.request_budget_bytes)));
    families.push_back(Gauge("edge_gateway_request_memory_bytes",
                             "Bytes requests in flight hold now.",
                             static_cast<double>(m.request_held_bytes)));
  }
  const absl::StatusOr<ProcessStats> process = ReadProcessStats();
  if (process.ok()) AppendProcessFamilies(*process, &families);
  return families;
}

}  // namespace internal
}  // namespace edge
