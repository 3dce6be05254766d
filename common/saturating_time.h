// Saturating arithmetic for times held as int64 microseconds (absolute
// times on a monotonic clock, and the durations added to them).
//
// A client may ask for any per-frame budget up to 2^64-1 us (timeout_us is
// a uint64); a configuration may give any int64 number of ms. "now plus
// that" must not wrap around into the past and expire at once: a sum
// beyond the int64 range clamps to INT64_MAX (a time that never comes,
// about 292,000 years away) or INT64_MIN. absl::Duration already saturates
// like this; these are for the plain integers the pipeline and the batcher
// carry.
//
// Thread-safe: pure functions.
#ifndef EDGE_COMMON_SATURATING_TIME_H_
#define EDGE_COMMON_SATURATING_TIME_H_

#include <cstdint>
#include <limits>

namespace edge {

// a + b, clamped to [INT64_MIN, INT64_MAX].
inline int64_t SaturatingAdd(int64_t a, int64_t b) {
  int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<int64_t>::max()
                 : std::numeric_limits<int64_t>::min();
  }
  return sum;
}

// a + b for an unsigned b (a uint64 timeout), clamped to INT64_MAX; b alone
// may exceed the int64 range, so the sum is taken in 128 bits.
inline int64_t SaturatingAddUnsigned(int64_t a, uint64_t b) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const __int128 sum = static_cast<__int128>(a) + b;
  return sum > kMax ? kMax : static_cast<int64_t>(sum);
}

}  // namespace edge

#endif  // EDGE_COMMON_SATURATING_TIME_H_
