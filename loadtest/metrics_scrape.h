// Reading the gateway's own view of a run from its Prometheus endpoint: a
// minimal HTTP/1.0 GET (one request, connection closed by the server, no
// TLS, no redirects: enough for a local /metrics) and a reader for the text
// exposition format. The report takes two scrapes, at the start and the end
// of the measured window, and uses the counters' differences.
//
// Stateless and thread-safe.
#ifndef EDGE_LOADTEST_METRICS_SCRAPE_H_
#define EDGE_LOADTEST_METRICS_SCRAPE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loadtest/loopback_address.h"

namespace edge::loadtest {

// The counters of server/metrics.h that the report needs, as scraped.
struct ServerCounters {
  double cache_hits = 0;        // edge_gateway_expert_cache_hits_total
  double cache_misses = 0;      // edge_gateway_expert_cache_misses_total
  double batch_size_sum = 0;    // edge_gateway_batch_size_sum
  double batch_size_count = 0;  // edge_gateway_batch_size_count
};

// The body of GET `url` if the answer is 200, within `timeout_ms` in all.
// UNAVAILABLE if the server cannot be reached or times out, INTERNAL for a
// malformed or non-200 answer (the status line is in the message).
absl::StatusOr<std::string> HttpGet(const LoopbackHttpUrl& url,
                                    int64_t timeout_ms);

// The sum over every label set of the samples named exactly `name` in a
// text exposition (version 0.0.4). NOT_FOUND if there is none.
absl::StatusOr<double> SumSamples(absl::string_view exposition,
                                  absl::string_view name);

// HttpGet + SumSamples for each ServerCounters field. A counter the server
// does not export (e.g. a model without an expert cache) is NOT_FOUND.
absl::StatusOr<ServerCounters> ScrapeServerCounters(const std::string& url,
                                                    int64_t timeout_ms);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_METRICS_SCRAPE_H_
