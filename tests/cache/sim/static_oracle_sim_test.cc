#include "cache/sim/static_oracle_sim.h"

#include <random>
#include <vector>

#include "cache/sim/belady_sim.h"
#include "cache/sim/lru_sim.h"
#include "gtest/gtest.h"
#include "tests/cache/sim/sim_traces.h"

namespace edge::sim {
namespace {

using testing::Hits;
using testing::Trace;

// Two slots: expert 0 (the most accessed) stays once loaded, the other
// slot holds whichever other expert came last.
TEST(StaticOracleSimTest, KeepsTheMostAccessedAndTurnsOneSlotOver) {
  const auto trace = Trace({0, 1, 2, 1, 0, 1, 0, 0, 2, 0});
  StaticOracleSim oracle(2, trace);
  //   0 miss, 1 miss, 2 miss (slot 1 -> 2), 1 miss (slot 2 -> 1), 0 hit,
  //   1 hit, 0 hit, 0 hit, 2 miss (slot 1 -> 2), 0 hit.
  EXPECT_EQ(Hits(trace, &oracle, 2), 5);
  EXPECT_EQ(oracle.counters().evictions, 3);
}

// Larger experts: the kept set leaves room for the largest one in the slot.
TEST(StaticOracleSimTest, NeverExceedsItsCapacity) {
  std::vector<ExpertAccess> trace;
  std::mt19937 rng(3);
  for (int i = 0; i < 500; ++i) {
    ExpertAccess a;
    a.pass = i;
    a.key = ExpertKey{0, static_cast<int>(rng() % 9)};
    a.bytes = 1 + a.key.expert % 3;  // 1, 2 or 3 bytes
    trace.push_back(a);
  }
  StaticOracleSim oracle(7, trace);
  EXPECT_GT(Hits(trace, &oracle, 7), 0);
  EXPECT_LE(oracle.counters().peak_bytes, 7u);
}

// On independent draws from fixed Zipf popularities A0 is the best online
// policy: above LRU, below Belady's MIN.
TEST(StaticOracleSimTest, SitsBetweenLruAndBeladyOnIndependentDraws) {
  std::vector<int> experts;
  std::mt19937 rng(5);
  std::discrete_distribution<int> zipf({1.0, 1 / 2.0, 1 / 3.0, 1 / 4.0, 1 / 5.0,
                                        1 / 6.0, 1 / 7.0, 1 / 8.0, 1 / 9.0,
                                        1 / 10.0, 1 / 11.0, 1 / 12.0, 1 / 13.0,
                                        1 / 14.0, 1 / 15.0, 1 / 16.0});
  for (int i = 0; i < 20000; ++i) experts.push_back(zipf(rng));
  const auto trace = Trace(experts);
  StaticOracleSim oracle(4, trace);
  LruSim lru(4);
  BeladySim belady(4, trace);
  const int64_t a0 = Hits(trace, &oracle, 4);
  EXPECT_GT(a0, Hits(trace, &lru, 4));
  EXPECT_LT(a0, Hits(trace, &belady, 4));
}

}  // namespace
}  // namespace edge::sim
