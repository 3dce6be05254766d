#include "cache/sim/lru_sim.h"

#include "gtest/gtest.h"
#include "tests/cache/sim/sim_traces.h"

namespace edge::sim {
namespace {

using testing::Hits;
using testing::Loop;
using testing::Trace;

TEST(LruSimTest, ALoopOneLargerThanTheCacheNeverHits) {
  LruSim lru(4);
  EXPECT_EQ(Hits(Loop(5, 20), &lru, 4), 0);
  EXPECT_EQ(lru.counters().bytes_loaded, 100u);
  EXPECT_EQ(lru.counters().evictions, 96);
  EXPECT_EQ(lru.counters().peak_bytes, 4u);
}

TEST(LruSimTest, ALoopThatFitsHitsAfterTheFirstRound) {
  LruSim lru(5);
  EXPECT_EQ(Hits(Loop(5, 20), &lru, 5), 95);
  EXPECT_EQ(lru.counters().evictions, 0);
}

TEST(LruSimTest, EvictsTheLeastRecentlyUsed) {
  LruSim lru(2);
  // 0 1 0 2: 2 evicts 1 (0 was used after it), so 0 hits and 1 misses.
  EXPECT_EQ(Hits(Trace({0, 1, 0, 2, 0, 1}), &lru, 2), 2);
}

TEST(LruSimTest, CountsBytesAndSkipsExpertsLargerThanTheCache) {
  LruSim lru(10);
  EXPECT_EQ(Hits(Trace({0, 1, 0}, 4), &lru, 10), 1);
  EXPECT_EQ(lru.counters().bytes_loaded, 8u);
  LruSim tiny(3);
  EXPECT_EQ(Hits(Trace({0, 0}, 4), &tiny, 3), 0);
  EXPECT_EQ(tiny.counters().peak_bytes, 0u);
}

}  // namespace
}  // namespace edge::sim
