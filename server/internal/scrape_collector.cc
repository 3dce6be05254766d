#include "server/internal/scrape_collector.h"

#include <limits>
#include <string>
#include <utility>

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

void AppendCacheFamilies(const ExpertCacheStats& stats,
                         std::vector<MetricFamily>* out) {
  const std::string p = "edge_gateway_expert_cache_";
  out->push_back(Counter(p + "hits_total",
                         "Expert lookups that found the expert resident or "
                         "loading.",
                         stats.hits));
  out->push_back(Counter(p + "misses_total",
                         "Expert lookups that started a load.", stats.misses));
  out->push_back(Counter(p + "evictions_total", "Experts evicted to make room.",
                         stats.evictions));
  out->push_back(
      Counter(p + "loads_total", "Expert loads that succeeded.", stats.loads));
  out->push_back(Counter(p + "load_failures_total", "Expert loads that failed.",
                         stats.load_failures));
  out->push_back(Gauge(p + "resident_bytes", "Bytes of resident experts.",
                       stats.resident_bytes));
  out->push_back(Gauge(p + "budget_bytes",
                       "Byte budget of the cache; 0 means unbounded.",
                       stats.budget_bytes));
  out->push_back(Gauge(p + "resident_experts", "Experts resident.",
                       stats.resident_experts));
  out->push_back(Gauge(p + "pinned_experts",
                       "Resident experts pinned by a running batch.",
                       stats.pinned_experts));
  // NaN, not 0, before the first lookup: no lookups is not a 0% hit rate,
  // and NaN compares false in alert rules.
  const uint64_t lookups = stats.hits + stats.misses;
  const double ratio = lookups == 0 ? std::numeric_limits<double>::quiet_NaN()
                                    : static_cast<double>(stats.hits) / lookups;
  out->push_back(Gauge(p + "hit_ratio",
                       "hits / (hits + misses) since the process started.",
                       ratio));
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

ScrapeCollector::ScrapeCollector(std::function<ExpertCacheStats()> cache_stats)
    : cache_stats_(std::move(cache_stats)) {}

std::vector<MetricFamily> ScrapeCollector::Collect() const {
  std::vector<MetricFamily> families;
  if (cache_stats_) AppendCacheFamilies(cache_stats_(), &families);
  const absl::StatusOr<ProcessStats> process = ReadProcessStats();
  if (process.ok()) AppendProcessFamilies(*process, &families);
  return families;
}

}  // namespace internal
}  // namespace edge
