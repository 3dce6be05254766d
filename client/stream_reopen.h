// StreamReopenRule: when a client that streams frames the way a camera does
// opens a new ClassifyStream after the last one ended, and which frames it
// sends on it. edge-client's stream command and edge-loadtest's cameras
// both follow it.
//
// The gateway ends a stream UNAVAILABLE when the stream is older than its
// max_stream_age_ms, after answering every frame it read ("the stream
// reached its maximum age ..."), and gRPC ends one UNAVAILABLE when its
// connection broke. A camera reopens such a stream and its schedule goes on:
//
//   - A stream is reopened only if it ended UNAVAILABLE while frames were
//     still due or unanswered; any other end stops the session.
//   - Only a stream that got somewhere (sent a frame or had one answered) is
//     reopened, so an unreachable gateway fails at once instead of being
//     retried until the deadline.
//   - Not once the session's deadline has passed, and not more than
//     kMaxReopens times: a gateway that keeps ending streams is failing, not
//     rotating connections.
//   - The client pauses kReopenPause first, so that a gateway refusing every
//     stream (shutting down) is not hammered; frames due meanwhile go out
//     late, their latency counting from their due time.
//   - The new stream first carries the frames sent and not answered, in the
//     order they were first sent (FramesToResend), then the rest of the
//     schedule. A frame that was answered is never sent again.
//   - A last stream that ended UNAVAILABLE with nothing due or unanswered
//     (the age limit came just before the client's half-close) lost nothing:
//     its end is not a failure (EndedWell).
//
// Recommended use, on the thread that opens the streams:
//
//   StreamReopenRule reopen(deadline);
//   for (;;) {
//     open a stream with `deadline`; write FramesToResend(unanswered), then
//     the frames due; half-close; Finish();
//     StreamEnd end = {code, frames due or unanswered?, sent or answered?};
//     if (!reopen.ShouldReopen(end, Clock::now())) break;
//     std::this_thread::sleep_for(StreamReopenRule::kReopenPause);
//   }
//   failed = !StreamReopenRule::EndedWell(end);
//
// Thread-compatible: one per session, used by one thread.
#ifndef EDGE_CLIENT_STREAM_REOPEN_H_
#define EDGE_CLIENT_STREAM_REOPEN_H_

#include <chrono>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace edge::client {

// How a stream of a session ended, as the rule needs to know it.
struct StreamEnd {
  absl::StatusCode code = absl::StatusCode::kOk;  // Finish()'s status code.
  // Frames of the schedule were still due, or frames sent were unanswered.
  bool unfinished = false;
  // The stream sent a frame of the schedule or had a frame answered.
  bool progressed = false;
};

class StreamReopenRule {
 public:
  using Clock = std::chrono::steady_clock;

  // Reopening stops after this many reopens: a gateway that keeps ending
  // streams is failing, not rotating connections.
  static constexpr int kMaxReopens = 100;
  // The pause before a reopen (see above).
  static constexpr std::chrono::milliseconds kReopenPause{50};

  // `deadline`: the session's, which every stream it opens shares.
  explicit StreamReopenRule(Clock::time_point deadline) : deadline_(deadline) {}

  // Whether to open a new stream after one that ended as `end` at `now`
  // (see the rule above). A yes counts as a reopen.
  bool ShouldReopen(const StreamEnd& end, Clock::time_point now);

  // Streams reopened so far.
  int reopens() const { return reopens_; }

  // Whether the session's last stream ended without failing: OK, or
  // UNAVAILABLE with nothing due or unanswered.
  static bool EndedWell(const StreamEnd& end);

  // The frames a reopened stream sends again, given the frames sent and not
  // answered (in any order, by their number in the schedule): all of them,
  // in the order they were first sent.
  static std::vector<int64_t> FramesToResend(std::vector<int64_t> unanswered);

 private:
  const Clock::time_point deadline_;
  int reopens_ = 0;
};

}  // namespace edge::client

#endif  // EDGE_CLIENT_STREAM_REOPEN_H_
