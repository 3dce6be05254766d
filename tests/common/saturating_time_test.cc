#include "common/saturating_time.h"

#include <cstdint>
#include <limits>

#include "gtest/gtest.h"

namespace edge {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
// A steady clock's microseconds some weeks after boot.
constexpr int64_t kNow = int64_t{3} << 40;

TEST(SaturatingTimeTest, SumsInRangeAreExact) {
  EXPECT_EQ(SaturatingAdd(kNow, 1000), kNow + 1000);
  EXPECT_EQ(SaturatingAdd(kNow, -1), kNow - 1);
  EXPECT_EQ(SaturatingAdd(kMax - 1, 1), kMax);
  EXPECT_EQ(SaturatingAddUnsigned(kNow, uint64_t{1} << 62),
            kNow + (int64_t{1} << 62));
  EXPECT_EQ(SaturatingAddUnsigned(-1, uint64_t{1} << 63), kMax);
  EXPECT_EQ(SaturatingAddUnsigned(kMin, ~uint64_t{0}), kMax);
}

TEST(SaturatingTimeTest, OverflowClampsInsteadOfWrapping) {
  EXPECT_EQ(SaturatingAdd(kNow, kMax), kMax);
  EXPECT_EQ(SaturatingAdd(-kNow, kMin), kMin);
  // The timeouts of issue 13: 2^63-1, 2^64-1 and 2^62 us from now.
  EXPECT_EQ(SaturatingAddUnsigned(kNow, uint64_t{kMax}), kMax);
  EXPECT_EQ(SaturatingAddUnsigned(kNow, ~uint64_t{0}), kMax);
  EXPECT_EQ(SaturatingAddUnsigned(kMax - 5, uint64_t{1} << 62), kMax);
}

}  // namespace
}  // namespace edge
