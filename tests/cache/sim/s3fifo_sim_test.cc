#include "cache/sim/s3fifo_sim.h"

#include <random>
#include <vector>

#include "cache/sim/lru_sim.h"
#include "gtest/gtest.h"
#include "tests/cache/sim/sim_traces.h"

namespace edge::sim {
namespace {

using testing::Hits;
using testing::Trace;

std::vector<int> Range(int first, int count) {
  std::vector<int> keys;
  for (int i = 0; i < count; ++i) keys.push_back(first + i);
  return keys;
}

std::vector<int> Concat(std::vector<std::vector<int>> parts) {
  std::vector<int> all;
  for (const auto& p : parts) all.insert(all.end(), p.begin(), p.end());
  return all;
}

TEST(S3FifoSimTest, KeysHitInTheSmallQueueSurviveAScan) {
  // Hot keys 0..4 are used twice, then 20 keys are used once each: S3-FIFO
  // moves the hot keys to M and lets the one-hit keys pass through S; LRU
  // of the same size forgets the hot keys.
  const auto trace =
      Trace(Concat({Range(0, 5), Range(0, 5), Range(100, 20), Range(0, 5)}));
  S3FifoSim s3fifo(10);
  LruSim lru(10);
  EXPECT_EQ(Hits(trace, &s3fifo, 10), 10);
  EXPECT_EQ(Hits(trace, &lru, 10), 5);
}

TEST(S3FifoSimTest, AKeyBackFromTheGhostEntersMainAndStays) {
  // 7 is used once and evicted from S by a scan (into the ghost); used
  // again, it enters M, where the next scan (passing through S) leaves it.
  const auto trace =
      Trace(Concat({{7}, Range(100, 12), {7}, Range(200, 30), {7}}));
  S3FifoSim s3fifo(10);
  EXPECT_EQ(Hits(trace, &s3fifo, 10), 1);
  EXPECT_EQ(s3fifo.counters().accesses, 45);
}

TEST(S3FifoSimTest, StaysWithinItsCapacity) {
  std::mt19937_64 rng(3);
  std::vector<ExpertAccess> trace;
  for (int i = 0; i < 2000; ++i) {
    const int key = static_cast<int>(rng() % 40);
    trace.push_back(Trace({key}, 1 + key % 3)[0]);
  }
  S3FifoSim s3fifo(20);
  EXPECT_GT(Hits(trace, &s3fifo, 20), 0);
  EXPECT_LE(s3fifo.counters().peak_bytes, 20u);
}

}  // namespace
}  // namespace edge::sim
