// AdaptiveSim drives the real AdaptivePolicy, so these tests check the pair:
// the simulator's bookkeeping and the policy's promised behaviours.
#include "cache/sim/adaptive_sim.h"

#include <random>
#include <vector>

#include "cache/sim/lru_sim.h"
#include "gtest/gtest.h"
#include "tests/cache/sim/sim_traces.h"

namespace edge::sim {
namespace {

using testing::Hits;

// `passes` passes of layer 0, each over `keys_per_pass` experts chosen by
// `pick(pass, i)`.
template <typename Pick>
std::vector<ExpertAccess> Passes(int passes, int keys_per_pass, Pick pick) {
  std::vector<ExpertAccess> trace;
  for (int p = 0; p < passes; ++p) {
    for (int i = 0; i < keys_per_pass; ++i) {
      ExpertAccess a;
      a.time_us = p;
      a.pass = p;
      a.key = ExpertKey{0, pick(p, i)};
      a.bytes = 1;
      trace.push_back(a);
    }
  }
  return trace;
}

AdaptivePolicyOptions Budget(uint64_t max_bytes, uint64_t min_bytes) {
  AdaptivePolicyOptions o;
  o.max_bytes = max_bytes;
  o.min_bytes = min_bytes;
  return o;
}

TEST(AdaptiveSimTest, NeverExceedsTheBudget) {
  std::mt19937_64 rng(11);
  const auto trace = Passes(
      2000, 3, [&rng](int, int) { return static_cast<int>(rng() % 24); });
  AdaptiveSim sim(Budget(8, 2), trace);
  EXPECT_GT(Hits(trace, &sim, 8), 0);
  EXPECT_LE(sim.counters().peak_bytes, 8u);
  EXPECT_EQ(sim.counters().accesses, 6000);
}

TEST(AdaptiveSimTest, BeatsLruOnALoopLargerThanTheCache) {
  // Every pass touches all 8 experts of the layer (per-token routing):
  // LRU with 4 slots never hits; keeping a stable subset does.
  const auto trace = Passes(600, 8, [](int, int i) { return i; });
  AdaptiveSim sim(Budget(4, 4), trace);
  LruSim lru(4);
  EXPECT_EQ(Hits(trace, &lru, 4), 0);
  EXPECT_GT(Hits(trace, &sim, 4), static_cast<int64_t>(trace.size()) / 4);
}

TEST(AdaptiveSimTest, GivesMemoryBackWhenTheWorkingSetShrinks) {
  // 1000 passes over 32 keys in random order (more than fit), then 3000
  // over 2 keys.
  std::mt19937_64 rng(12);
  const auto trace = Passes(4000, 2, [&rng](int p, int i) {
    return p < 1000 ? static_cast<int>(rng() % 32) : i;
  });
  AdaptiveSim sim(Budget(16, 4), trace);
  Hits(trace, &sim, 16);
  ASSERT_FALSE(sim.resizes().empty());
  EXPECT_LT(sim.policy().capacity_bytes(), 16u);
  EXPECT_FALSE(sim.resizes().back().grew());
  EXPECT_LE(sim.counters().resident_bytes, sim.policy().capacity_bytes());
}

}  // namespace
}  // namespace edge::sim
