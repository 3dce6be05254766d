#include "cache/sim/belady_sim.h"

#include <algorithm>
#include <random>
#include <vector>

#include "cache/sim/lru_sim.h"
#include "gtest/gtest.h"
#include "tests/cache/sim/sim_traces.h"

namespace edge::sim {
namespace {

using testing::Hits;
using testing::Loop;
using testing::Trace;

// The most hits any demand-paging policy gets with `slots` equal-sized
// entries, by trying every choice of victim at every miss.
int OptimalHits(const std::vector<int>& trace, size_t i, std::vector<int> cache,
                size_t slots) {
  if (i == trace.size()) return 0;
  const int key = trace[i];
  if (std::find(cache.begin(), cache.end(), key) != cache.end()) {
    return 1 + OptimalHits(trace, i + 1, cache, slots);
  }
  if (cache.size() < slots) {
    cache.push_back(key);
    return OptimalHits(trace, i + 1, cache, slots);
  }
  int best = 0;
  for (size_t v = 0; v < cache.size(); ++v) {
    std::vector<int> next = cache;
    next[v] = key;
    best = std::max(best, OptimalHits(trace, i + 1, next, slots));
  }
  return best;
}

TEST(BeladySimTest, MatchesTheTextbookOptimum) {
  // Silberschatz et al., Operating System Concepts, optimal page
  // replacement with 3 frames: 9 faults in 20 references.
  const std::vector<int> refs = {7, 0, 1, 2, 0, 3, 0, 4, 2, 3,
                                 0, 3, 2, 1, 2, 0, 1, 7, 0, 1};
  BeladySim belady(3, Trace(refs));
  EXPECT_EQ(Hits(Trace(refs), &belady, 3), 11);
}

TEST(BeladySimTest, MatchesExhaustiveSearchOnRandomTraces) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 40; ++round) {
    std::vector<int> refs(12);
    for (int& r : refs) r = static_cast<int>(rng() % 5);
    const size_t slots = 2 + round % 2;
    BeladySim belady(slots, Trace(refs));
    EXPECT_EQ(Hits(Trace(refs), &belady, slots),
              OptimalHits(refs, 0, {}, slots))
        << "round " << round;
  }
}

TEST(BeladySimTest, KeepsAStableSubsetOfALoop) {
  // 5 keys in a loop, 4 slots, 100 accesses. LRU never hits. MIN misses
  // the first 5, then always evicts the key needed last, so it misses once
  // every 4 accesses (at 8, 12, ..., 96: 23 times): 72 hits.
  BeladySim belady(4, Loop(5, 20));
  LruSim lru(4);
  EXPECT_EQ(Hits(Loop(5, 20), &lru, 4), 0);
  EXPECT_EQ(Hits(Loop(5, 20), &belady, 4), 72);
}

TEST(BeladySimTest, RespectsTheCapacityWithUnequalSizes) {
  std::vector<ExpertAccess> trace = Trace({0, 1, 2, 0, 1, 2, 3, 0});
  for (size_t i = 0; i < trace.size(); ++i) trace[i].bytes = 1 + i % 3;
  BeladySim belady(4, trace);
  EXPECT_GE(Hits(trace, &belady, 4), 0);
}

}  // namespace
}  // namespace edge::sim
