// ScrapeCollector: the metric families GatewayMetrics computes when it is
// scraped rather than records as things happen: the expert cache's stats,
// the engine's next-layer prediction and integrity counts (from callbacks)
// and the process's figures (from /proc/self). Reading them at scrape time
// keeps them fresh without a polling thread.
// Internal to GatewayMetrics (server/metrics.h lists the metrics).
//
// Thread-safe if the callbacks are: Collect() keeps no state.
#ifndef EDGE_SERVER_INTERNAL_SCRAPE_COLLECTOR_H_
#define EDGE_SERVER_INTERNAL_SCRAPE_COLLECTOR_H_

#include <functional>
#include <vector>

#include "cache/expert_cache.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "server/metrics.h"

namespace edge {
namespace internal {

class ScrapeCollector final : public prometheus::Collectable {
 public:
  // Any callback may be empty: then no expert_cache_*, no
  // expert_prediction_* or no integrity families.
  ScrapeCollector(std::function<ExpertCacheStats()> cache_stats,
                  std::function<PrefetchPredictionCounts()> prediction_stats,
                  std::function<IntegrityCounts()> integrity_stats,
                  std::function<MemoryCounts()> memory_stats = nullptr);

  // The cache, prediction and integrity families, then the process ones
  // (omitted if /proc/self cannot be read: a scrape must not fail for want
  // of them).
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::function<ExpertCacheStats()> cache_stats_;
  const std::function<PrefetchPredictionCounts()> prediction_stats_;
  const std::function<IntegrityCounts()> integrity_stats_;
  const std::function<MemoryCounts()> memory_stats_;
};

}  // namespace internal
}  // namespace edge

#endif  // EDGE_SERVER_INTERNAL_SCRAPE_COLLECTOR_H_
