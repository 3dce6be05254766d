// One edge-loadtest run from connection to the last answer:
//
//   ConnectToGateway()  one channel per client, all connected, and the
//                       served model's ModelInfo (before the clock starts)
//   RunLoad()           starts the clock and the driver; scrapes the
//                       server's counters when the warm-up ends and again
//                       once every client is done; returns the records.
//
// The caller builds the frames in between (a tensor run needs ModelInfo's
// image_size), so a bad --frames_dir is found before anything is sent.
//
// Not thread-safe: one run at a time, from one thread (RunLoad starts and
// joins its own threads).
#ifndef EDGE_LOADTEST_LOAD_RUN_H_
#define EDGE_LOADTEST_LOAD_RUN_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "loadtest/frame_set.h"
#include "loadtest/load_drivers.h"
#include "loadtest/load_options.h"
#include "loadtest/metrics_scrape.h"
#include "proto/gateway.pb.h"

namespace edge::loadtest {

struct GatewayLink {
  std::vector<std::shared_ptr<grpc::Channel>> channels;  // One per client.
  gateway::v1::ModelInfo model;
};

// UNAVAILABLE / DEADLINE_EXCEEDED (or the server's code) if GetModelInfo
// fails or a connection is not up within options.timeout_ms.
absl::StatusOr<GatewayLink> ConnectToGateway(const LoadTestOptions& options);

struct RunOutcome {
  DriverResult driver;
  // Nanoseconds from the start until every client was done (all answers
  // in, or their streams ended).
  int64_t end_ns = 0;
  // The server's counters when the measured window opened and at the end;
  // both empty, with the reason in metrics_note, if they were not scraped.
  std::optional<ServerCounters> counters_before;
  std::optional<ServerCounters> counters_after;
  std::string metrics_note;
};

// Runs the load described by `options` over `link` with `frames`.
// REQUIRES: frames is not empty; link has one channel per client.
RunOutcome RunLoad(const LoadTestOptions& options, const GatewayLink& link,
                   const std::vector<Frame>& frames);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_LOAD_RUN_H_
