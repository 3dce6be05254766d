#include "cache/adaptive_policy.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace edge {
namespace {

constexpr uint64_t kBytes = 100;  // every expert's size here

// A resident set driven by the policy, as ExpertCache and cache_sim use it.
class PolicyDrivenCache {
 public:
  explicit PolicyDrivenCache(const AdaptivePolicyOptions& options)
      : policy_(options) {}

  // One MoE pass: announce, then access each key.
  void Pass(int layer, const std::vector<int>& experts) {
    std::vector<ExpertKey> keys;
    for (int e : experts) keys.push_back({layer, e});
    policy_.BeginPass(layer, keys);
    for (const ExpertKey& key : keys) Access(key);
  }

  void Access(const ExpertKey& key) {
    const bool hit = resident_.count(key) != 0;
    ++accesses_;
    hits_ += hit;
    policy_.RecordAccess(key, kBytes, hit);
    if (!hit) {
      Trim(policy_.capacity_bytes() - kBytes);
      resident_.insert(key);
    }
    if (const auto resize = policy_.MaybeResize()) {
      resizes_.push_back(*resize);
      Trim(policy_.capacity_bytes());
    }
    max_resident_ = std::max(max_resident_, bytes());
  }

  void ResetCounts() { accesses_ = hits_ = 0; }
  double hit_rate() const { return static_cast<double>(hits_) / accesses_; }
  uint64_t bytes() const { return resident_.size() * kBytes; }
  uint64_t max_resident() const { return max_resident_; }
  const std::vector<ResizeEvent>& resizes() const { return resizes_; }
  AdaptivePolicy& policy() { return policy_; }

 private:
  void Trim(uint64_t limit) {
    while (bytes() > limit && !resident_.empty()) {
      const std::vector<ExpertKey> evictable(resident_.begin(),
                                             resident_.end());
      resident_.erase(policy_.ChooseVictim(evictable));
    }
  }

  AdaptivePolicy policy_;
  std::set<ExpertKey> resident_;
  int64_t accesses_ = 0, hits_ = 0;
  uint64_t max_resident_ = 0;
  std::vector<ResizeEvent> resizes_;
};

AdaptivePolicyOptions Fixed(int experts) {
  AdaptivePolicyOptions o;
  o.max_bytes = experts * kBytes;
  return o;
}

std::vector<int> Range(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Two MoE layers, each pass touching all 8 experts: a 16-key loop. LRU
// would hit nothing at 6 keys; keeping a stable subset hits ~5 of 16.
TEST(AdaptivePolicyTest, LoopLargerThanTheCacheKeepsAStableSubset) {
  PolicyDrivenCache cache(Fixed(6));
  for (int batch = 0; batch < 400; ++batch) {
    cache.Pass(5, Range(8));
    cache.Pass(7, Range(8));
  }
  EXPECT_EQ(cache.policy().leader(), AdaptivePolicy::Ranking::kReuse);
  EXPECT_GT(cache.hit_rate(), 4.0 / 16);
}

// Popular experts drawn at random (Zipf 1.2 over 24, two per pass), the
// shape of the gateway's own token-routed traces: the experts worth keeping
// are the most frequent ones, and one-off visitors should leave first.
TEST(AdaptivePolicyTest, SkewedPopularityFollowsTheFrequencyRanking) {
  PolicyDrivenCache cache(Fixed(6));
  std::mt19937 random(7);
  std::vector<double> weights;
  for (int e = 1; e <= 24; ++e) weights.push_back(std::pow(e, -1.2));
  std::discrete_distribution<int> expert(weights.begin(), weights.end());
  for (int pass = 0; pass < 4000; ++pass) {
    int a = expert(random), b = expert(random);
    while (b == a) b = expert(random);
    cache.Pass(5, {a, b});
  }
  EXPECT_EQ(cache.policy().leader(), AdaptivePolicy::Ranking::kFrequency);
  // The 6 most popular experts hold about 0.7 of the accesses.
  EXPECT_GT(cache.hit_rate(), 0.55);
}

TEST(AdaptivePolicyTest, PlainLruOptionThrashesOnTheSameLoop) {
  AdaptivePolicyOptions options = Fixed(6);
  options.adaptive_ranking = false;
  PolicyDrivenCache cache(options);
  for (int batch = 0; batch < 400; ++batch) {
    cache.Pass(5, Range(8));
    cache.Pass(7, Range(8));
  }
  EXPECT_EQ(cache.policy().leader(), AdaptivePolicy::Ranking::kLru);
  EXPECT_LT(cache.hit_rate(), 0.01);
}

// A working set that shifts every few passes: recency wins, so the policy
// must do at least as well as LRU would (all but the first pass of each
// set hit with an 8-key cache).
TEST(AdaptivePolicyTest, ShiftingWorkingSetIsServedLikeLru) {
  PolicyDrivenCache cache(Fixed(8));
  for (int phase = 0; phase < 200; ++phase) {
    std::vector<int> set;
    for (int i = 0; i < 4; ++i) set.push_back((phase * 4 + i) % 64);
    for (int repeat = 0; repeat < 5; ++repeat) cache.Pass(3, set);
  }
  EXPECT_GE(cache.hit_rate(), 0.79);
}

TEST(AdaptivePolicyTest, AnnouncedExpertsAreEvictedLast) {
  AdaptivePolicy policy(Fixed(4));
  for (int e = 0; e < 4; ++e) policy.RecordAccess({1, e}, kBytes, false);
  policy.BeginPass(1, {{1, 0}, {1, 1}, {1, 2}});
  const std::vector<ExpertKey> evictable = {{1, 0}, {1, 1}, {1, 2}, {1, 3}};
  EXPECT_EQ(policy.ChooseVictim(evictable), (ExpertKey{1, 3}));
  EXPECT_TRUE(policy.IsAnnounced({1, 0}));
  policy.RecordAccess({1, 0}, kBytes, true);
  EXPECT_FALSE(policy.IsAnnounced({1, 0}));
}

AdaptivePolicyOptions Sized(int min_experts, int max_experts) {
  AdaptivePolicyOptions o;
  o.min_bytes = min_experts * kBytes;
  o.max_bytes = max_experts * kBytes;
  o.step_bytes = kBytes;
  o.grow_below = 0.9;
  o.shrink_above = 0.95;
  o.window_accesses = 128;
  o.resize_interval_accesses = 64;
  return o;
}

TEST(AdaptivePolicyTest, GrowsWhenMoreMemoryBuysHitsAndNeverPastMax) {
  PolicyDrivenCache cache(Sized(2, 16));
  EXPECT_EQ(cache.policy().capacity_bytes(), 2 * kBytes);
  for (int batch = 0; batch < 2000; ++batch) cache.Pass(0, Range(10));
  EXPECT_GE(cache.policy().capacity_bytes(), 10 * kBytes);
  EXPECT_LE(cache.max_resident(), 16 * kBytes);
  ASSERT_FALSE(cache.resizes().empty());
  EXPECT_TRUE(cache.resizes().front().grew());
  EXPECT_NE(cache.resizes().front().reason.find("grow_below"),
            std::string::npos);
  cache.ResetCounts();
  for (int batch = 0; batch < 100; ++batch) cache.Pass(0, Range(10));
  EXPECT_GT(cache.hit_rate(), 0.95);
}

TEST(AdaptivePolicyTest, CompulsoryMissesDoNotMakeItGrow) {
  PolicyDrivenCache cache(Sized(2, 16));
  // Every access is a new expert: no size would hit.
  for (int i = 0; i < 5000; ++i) cache.Pass(i % 4, {i});
  EXPECT_EQ(cache.policy().capacity_bytes(), 2 * kBytes);
  EXPECT_TRUE(cache.resizes().empty());
}

TEST(AdaptivePolicyTest, GivesMemoryBackWhenTheWorkingSetShrinks) {
  PolicyDrivenCache cache(Sized(2, 16));
  for (int batch = 0; batch < 2000; ++batch) cache.Pass(0, Range(12));
  const uint64_t large = cache.policy().capacity_bytes();
  EXPECT_GE(large, 12 * kBytes);
  for (int batch = 0; batch < 3000; ++batch) cache.Pass(0, Range(3));
  EXPECT_LE(cache.policy().capacity_bytes(), 4 * kBytes);
  EXPECT_GE(cache.policy().capacity_bytes(), 2 * kBytes);
  EXPECT_LE(cache.bytes(), cache.policy().capacity_bytes());
  EXPECT_FALSE(cache.resizes().back().grew());
}

TEST(AdaptivePolicyTest, FixedSizeNeverResizes) {
  PolicyDrivenCache cache(Fixed(4));
  for (int batch = 0; batch < 2000; ++batch) cache.Pass(0, Range(10));
  EXPECT_TRUE(cache.resizes().empty());
  EXPECT_EQ(cache.policy().capacity_bytes(), 4 * kBytes);
}

}  // namespace
}  // namespace edge
