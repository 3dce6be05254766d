// The two load patterns. Each driver runs every client on a thread of its
// own, returns once all of them are done, and hands back one record per
// request sent (request_log.h). Neither driver computes statistics.
//
// Stream (stream_driver.cc), open loop: camera c sends frame i at its due
// time start + phase_c + i / fps (phase_c is random in [0, 1/fps), as
// unsynchronised cameras have), whatever happened to earlier frames, and
// a reader thread takes the answers in any order. If gRPC flow control
// holds a write back, later frames go out late but keep their due times, so
// the wait shows in the latency instead of silently lowering the offered
// load (no coordinated omission). After the last due frame the camera
// half-closes and waits for the remaining answers; the stream's deadline
// is the schedule plus options.timeout_ms plus one second of slack.
//
// Unary (unary_driver.cc), closed loop: each client sends one Classify with
// a timeout_ms deadline, waits for its answer, and sends the next.
//
// Both stop sending at start + duration_s or when the RequestBudget is
// spent, whichever comes first.
#ifndef EDGE_LOADTEST_LOAD_DRIVERS_H_
#define EDGE_LOADTEST_LOAD_DRIVERS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "loadtest/frame_set.h"
#include "loadtest/load_options.h"
#include "loadtest/request_log.h"
#include "tools/cpp/scene_picker.h"

namespace edge::loadtest {

using Clock = std::chrono::steady_clock;

// What a driver works with; everything is owned by the caller and outlives
// the driver call.
struct LoadContext {
  const LoadTestOptions* options = nullptr;
  const std::vector<Frame>* frames = nullptr;  // Indexed by scene.
  const ScenePicker* picker = nullptr;
  // One connected channel per client (cameras or unary clients).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  RequestBudget* budget = nullptr;
  Clock::time_point start;  // Time zero of every record.
};

struct DriverResult {
  std::vector<RequestRecord> records;  // Every request sent, all clients.
  // Streams that ended with a non-OK status, by code name (stream mode).
  std::map<std::string, int64_t> stream_failures;
  // Streams the server ended UNAVAILABLE (e.g. at its max_stream_age_ms)
  // that were reopened, their unanswered frames sent again.
  int64_t streams_reopened = 0;
  int64_t unexpected_answers = 0;  // Unknown or repeated request ids.
  int64_t send_end_ns = 0;         // When the last client stopped sending.
  int64_t max_send_lag_ns = 0;     // Stream: worst write start - due time.
};

DriverResult RunStreamDriver(const LoadContext& context);
DriverResult RunUnaryDriver(const LoadContext& context);

// Nanoseconds from context.start to `t`.
inline int64_t SinceStartNs(const LoadContext& context, Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t - context.start)
      .count();
}

// The request for `scene`, as client `client` sends it as its `index`th.
gateway::v1::ClassifyRequest MakeRequest(const LoadContext& context, int client,
                                         int scene, int64_t index);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_LOAD_DRIVERS_H_
