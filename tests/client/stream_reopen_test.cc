// StreamReopenRule: the reopen-or-stop decision on every combination of a
// stream's end, the session's deadline and the reopen count, and the frames
// a reopened stream sends again. The rule in action is client.stream_reopens
// and loadtest.smoke.
#include "client/stream_reopen.h"

#include <chrono>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace edge::client {
namespace {

using Clock = StreamReopenRule::Clock;

const Clock::time_point kDeadline = Clock::time_point() + std::chrono::hours(1);
const Clock::time_point kBefore = kDeadline - std::chrono::milliseconds(1);

// A stream the gateway aged out mid-session: UNAVAILABLE, frames still due,
// and it sent or answered some.
StreamEnd AgedOut() {
  StreamEnd end;
  end.code = absl::StatusCode::kUnavailable;
  end.unfinished = true;
  end.progressed = true;
  return end;
}

TEST(StreamReopenRuleTest, ReopensAStreamEndedUnavailableMidSession) {
  StreamReopenRule rule(kDeadline);
  EXPECT_TRUE(rule.ShouldReopen(AgedOut(), kBefore));
  EXPECT_TRUE(rule.ShouldReopen(AgedOut(), kBefore));
  EXPECT_EQ(rule.reopens(), 2);
}

TEST(StreamReopenRuleTest, OnlyUnavailableIsReopened) {
  for (absl::StatusCode code :
       {absl::StatusCode::kOk, absl::StatusCode::kDeadlineExceeded,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kInternal,
        absl::StatusCode::kCancelled}) {
    StreamReopenRule rule(kDeadline);
    StreamEnd end = AgedOut();
    end.code = code;
    EXPECT_FALSE(rule.ShouldReopen(end, kBefore))
        << absl::StatusCodeToString(code);
    EXPECT_EQ(rule.reopens(), 0);
  }
}

TEST(StreamReopenRuleTest, AFinishedStreamIsNotReopened) {
  StreamReopenRule rule(kDeadline);
  StreamEnd end = AgedOut();
  end.unfinished = false;
  EXPECT_FALSE(rule.ShouldReopen(end, kBefore));
}

// An unreachable gateway: the stream ends UNAVAILABLE having sent nothing
// and had nothing answered. The session fails at once.
TEST(StreamReopenRuleTest, AStreamThatGotNowhereIsNotReopened) {
  StreamReopenRule rule(kDeadline);
  StreamEnd end = AgedOut();
  end.progressed = false;
  EXPECT_FALSE(rule.ShouldReopen(end, kBefore));
}

TEST(StreamReopenRuleTest, NothingIsReopenedFromTheDeadlineOn) {
  StreamReopenRule rule(kDeadline);
  EXPECT_FALSE(rule.ShouldReopen(AgedOut(), kDeadline));
  EXPECT_FALSE(rule.ShouldReopen(AgedOut(), kDeadline + std::chrono::hours(1)));
  EXPECT_EQ(rule.reopens(), 0);
}

TEST(StreamReopenRuleTest, StopsAfterMaxReopens) {
  StreamReopenRule rule(kDeadline);
  for (int i = 0; i < StreamReopenRule::kMaxReopens; ++i) {
    ASSERT_TRUE(rule.ShouldReopen(AgedOut(), kBefore)) << i;
  }
  EXPECT_FALSE(rule.ShouldReopen(AgedOut(), kBefore));
  EXPECT_EQ(rule.reopens(), StreamReopenRule::kMaxReopens);
}

TEST(StreamReopenRuleTest, EndedWellIsOkOrUnavailableWithNothingLost) {
  StreamEnd end;
  end.code = absl::StatusCode::kOk;
  EXPECT_TRUE(StreamReopenRule::EndedWell(end));
  end.unfinished = true;  // Frames missing are counted, not a stream failure.
  EXPECT_TRUE(StreamReopenRule::EndedWell(end));

  // The age limit came just before the half-close: nothing was lost.
  end.code = absl::StatusCode::kUnavailable;
  end.unfinished = false;
  EXPECT_TRUE(StreamReopenRule::EndedWell(end));
  end.unfinished = true;
  EXPECT_FALSE(StreamReopenRule::EndedWell(end));

  end.code = absl::StatusCode::kDeadlineExceeded;
  end.unfinished = false;
  EXPECT_FALSE(StreamReopenRule::EndedWell(end));
}

TEST(StreamReopenRuleTest, ResendsEveryUnansweredFrameInSendingOrder) {
  EXPECT_EQ(StreamReopenRule::FramesToResend({9, 3, 7, 4}),
            (std::vector<int64_t>{3, 4, 7, 9}));
  EXPECT_TRUE(StreamReopenRule::FramesToResend({}).empty());
}

}  // namespace
}  // namespace edge::client
