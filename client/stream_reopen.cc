#include "client/stream_reopen.h"

#include <algorithm>

namespace edge::client {

bool StreamReopenRule::ShouldReopen(const StreamEnd& end,
                                    Clock::time_point now) {
  if (end.code != absl::StatusCode::kUnavailable || !end.unfinished ||
      !end.progressed || now >= deadline_ || reopens_ >= kMaxReopens) {
    return false;
  }
  ++reopens_;
  return true;
}

bool StreamReopenRule::EndedWell(const StreamEnd& end) {
  return end.code == absl::StatusCode::kOk ||
         (end.code == absl::StatusCode::kUnavailable && !end.unfinished);
}

std::vector<int64_t> StreamReopenRule::FramesToResend(
    std::vector<int64_t> unanswered) {
  // A frame's number is its place in the schedule, and the schedule is sent
  // in order, so ascending numbers are the order of first sending.
  std::sort(unanswered.begin(), unanswered.end());
  return unanswered;
}

}  // namespace edge::client
