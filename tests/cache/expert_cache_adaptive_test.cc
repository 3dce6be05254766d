// ExpertCache with adaptive sizing, announcements, prefetch, warm-up and
// tracing (the basic contract is in expert_cache_test.cc).
#include <sched.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/access_trace.h"
#include "cache/expert_cache.h"
#include "gtest/gtest.h"
#include "tests/cache/fake_loader.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using cache_testing::Eventually;
using cache_testing::FakeClock;
using cache_testing::FakeLoader;
using cache_testing::kExpertBytes;
using cache_testing::MakeCache;
using cache_testing::Touch;

ExpertCacheOptions WithPrefetch(int queue_limit = 64) {
  ExpertCacheOptions options;
  options.prefetch_threads = 1;
  options.prefetch_queue_limit = queue_limit;
  return options;
}

TEST(ExpertCacheAdaptiveTest, BeginPassPrefetchesTheMissingExperts) {
  FakeLoader loader;
  auto cache = MakeCache(10 * kExpertBytes, &loader, WithPrefetch());
  const std::vector<ExpertKey> keys = {{1, 0}, {1, 1}, {1, 2}};
  const int64_t pass = cache->BeginPass(1, keys);
  ASSERT_TRUE(Eventually([&] { return cache->stats().loads == 3; }));
  for (const ExpertKey& key : keys) {
    ASSERT_TRUE(cache->Acquire(key, pass).ok());
  }
  const ExpertCacheStats s = cache->stats();
  EXPECT_EQ(s.prefetch_issued, 3u);
  EXPECT_EQ(s.prefetch_used, 3u);
  EXPECT_EQ(s.misses, 3u);  // the cache did not hold them
  EXPECT_EQ(s.hits, 0u);
  for (const ExpertKey& key : keys) EXPECT_EQ(loader.loads(key), 1);
}

TEST(ExpertCacheAdaptiveTest, BeginPassReadsAheadTheExpertsItQueues) {
  FakeLoader loader;
  Mutex mu;
  std::vector<ExpertKey> read_ahead;
  ExpertCacheOptions options = WithPrefetch();
  options.read_ahead = [&](const ExpertKey& key) {
    MutexLock lock(&mu);
    read_ahead.push_back(key);
  };
  auto cache = MakeCache(10 * kExpertBytes, &loader, options);
  ASSERT_TRUE(Touch(cache.get(), {1, 0}));  // resident: nothing to read
  const int64_t pass = cache->BeginPass(1, {{1, 0}, {1, 1}, {1, 2}});
  {
    MutexLock lock(&mu);
    EXPECT_EQ(read_ahead, (std::vector<ExpertKey>{{1, 1}, {1, 2}}));
  }
  for (int e = 0; e < 3; ++e) ASSERT_TRUE(cache->Acquire({1, e}, pass).ok());
  cache->Prefetch({{1, 3}});  // a guess: not read ahead
  ASSERT_TRUE(Eventually([&] { return cache->stats().loads == 4; }));
  MutexLock lock(&mu);
  EXPECT_EQ(read_ahead.size(), 2u);
}

TEST(ExpertCacheAdaptiveTest, NoReadAheadWithoutPrefetchThreads) {
  FakeLoader loader;
  int calls = 0;
  ExpertCacheOptions options;
  options.prefetch_threads = 0;
  options.read_ahead = [&](const ExpertKey&) { ++calls; };
  auto cache = MakeCache(10 * kExpertBytes, &loader, options);
  const int64_t pass = cache->BeginPass(1, {{1, 0}, {1, 1}});
  EXPECT_TRUE(cache->Acquire({1, 0}, pass).ok());
  EXPECT_EQ(calls, 0);
}

// Loads on the prefetch threads run at SCHED_IDLE unless told otherwise.
int PrefetchThreadPolicy(bool idle_priority) {
  FakeLoader loader;
  std::atomic<int> policy{-1};
  loader.fail = [&](const ExpertKey&, int) {
    policy = sched_getscheduler(0);
    return absl::OkStatus();
  };
  ExpertCacheOptions options = WithPrefetch();
  options.prefetch_idle_priority = idle_priority;
  auto cache = MakeCache(10 * kExpertBytes, &loader, options);
  cache->Prefetch({{1, 0}});
  EXPECT_TRUE(Eventually([&] { return policy.load() != -1; }));
  return policy.load();
}

TEST(ExpertCacheAdaptiveTest, PrefetchThreadsRunAtIdlePriority) {
  EXPECT_EQ(PrefetchThreadPolicy(true), SCHED_IDLE);
  EXPECT_EQ(PrefetchThreadPolicy(false), SCHED_OTHER);
}

TEST(ExpertCacheAdaptiveTest, SpeculativePrefetchNeverEvictsAnnouncedExperts) {
  FakeLoader loader;
  auto cache = MakeCache(2 * kExpertBytes, &loader, WithPrefetch());
  const ExpertKey a{1, 0}, b{1, 1}, c{3, 0};
  ASSERT_TRUE(Touch(cache.get(), a));
  ASSERT_TRUE(Touch(cache.get(), b));
  const int64_t pass = cache->BeginPass(1, {a, b});
  cache->Prefetch({c});
  // The pool must give up on c: the only room is held by a and b.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(loader.loads(c), 0);
  EXPECT_EQ(cache->stats().prefetch_issued, 0u);
  ASSERT_TRUE(cache->Acquire(a, pass).ok());
  ASSERT_TRUE(cache->Acquire(b, pass).ok());
  cache->Prefetch({c});  // a and b are done: one of them may go now
  ASSERT_TRUE(Eventually([&] { return loader.loads(c) == 1; }));
  EXPECT_TRUE(Touch(cache.get(), c));
  EXPECT_EQ(cache->stats().prefetch_used, 1u);
}

TEST(ExpertCacheAdaptiveTest, FullPrefetchQueueDropsRequests) {
  FakeLoader loader;
  Notification gate;
  loader.gate = &gate;
  auto cache = MakeCache(10 * kExpertBytes, &loader, WithPrefetch(2));
  cache->Prefetch({{1, 0}});
  // The worker takes {1, 0} and blocks in the loader; 2 more fit.
  ASSERT_TRUE(Eventually([&] { return cache->stats().prefetch_issued == 1; }));
  cache->Prefetch({{1, 1}, {1, 2}, {1, 3}, {1, 4}});
  EXPECT_EQ(cache->stats().prefetch_dropped, 2u);
  gate.Notify();
  ASSERT_TRUE(Eventually([&] { return cache->stats().loads == 3; }));
}

TEST(ExpertCacheAdaptiveTest, WarmLoadsUntilTheCapacityIsFull) {
  FakeLoader loader;
  auto cache = MakeCache(3 * kExpertBytes, &loader);
  EXPECT_EQ(cache->Warm({{1, 0}, {1, 1}, {1, 2}, {1, 3}}), 3);
  const ExpertCacheStats s = cache->stats();
  EXPECT_EQ(s.loads, 3u);
  EXPECT_EQ(s.hits + s.misses, 0u);  // warm-up is not traffic
  EXPECT_EQ(loader.loads({1, 3}), 0);
  EXPECT_TRUE(Touch(cache.get(), {1, 0}));
  EXPECT_EQ(cache->stats().hits, 1u);
}

TEST(ExpertCacheAdaptiveTest, WarmEvictsExpertsNotOnItsList) {
  FakeLoader loader;
  auto cache = MakeCache(3 * kExpertBytes, &loader);
  ASSERT_TRUE(Touch(cache.get(), {9, 0}));  // e.g. a start-up batch's
  ASSERT_TRUE(Touch(cache.get(), {9, 1}));
  EXPECT_EQ(cache->Warm({{1, 0}, {1, 1}, {1, 2}, {1, 3}}), 3);
  EXPECT_EQ(loader.loads({1, 2}), 1);
  EXPECT_EQ(loader.loads({1, 3}), 0);  // never evicts what it warmed
  EXPECT_EQ(cache->stats().evictions, 2u);
  EXPECT_TRUE(Touch(cache.get(), {1, 0}));
}

TEST(ExpertCacheAdaptiveTest, TraceRecordsEveryAcquireWithItsPass) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/trace.csv";
  auto writer = AccessTraceWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  FakeLoader loader;
  FakeClock clock;
  clock.Advance(absl::Seconds(1000));  // times count from the cache's start
  ExpertCacheOptions options;
  options.trace = writer->get();
  options.now = clock.Function();
  auto cache = MakeCache(10 * kExpertBytes, &loader, options);
  const int64_t pass = cache->BeginPass(5, {{5, 1}, {5, 2}});
  clock.Advance(absl::Microseconds(250));
  ASSERT_TRUE(cache->Acquire({5, 1}, pass).ok());
  ASSERT_TRUE(cache->Acquire({5, 2}, pass).ok());
  clock.Advance(absl::Milliseconds(3));
  ASSERT_TRUE(cache->Acquire({5, 1}).ok());
  ASSERT_TRUE((*writer)->Flush().ok());
  auto trace = ReadAccessTrace(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->size(), 3u);
  EXPECT_EQ((*trace)[0].pass, pass);
  EXPECT_EQ((*trace)[1].key, (ExpertKey{5, 2}));
  EXPECT_EQ((*trace)[1].bytes, kExpertBytes);
  EXPECT_EQ((*trace)[2].pass, -1);
  EXPECT_EQ((*trace)[0].time_us, 250);
  EXPECT_EQ((*trace)[1].time_us, 250);
  EXPECT_EQ((*trace)[2].time_us, 3250);
}

ExpertCacheOptions Adaptive(int min_experts) {
  ExpertCacheOptions options;
  options.prefetch_threads = 0;
  options.policy.min_bytes = min_experts * kExpertBytes;
  options.policy.step_bytes = kExpertBytes;
  options.policy.grow_below = 0.9;
  options.policy.shrink_above = 0.95;
  options.policy.window_accesses = 128;
  options.policy.resize_interval_accesses = 64;
  return options;
}

void LoopPasses(ExpertCache* cache, int experts, int passes) {
  std::vector<ExpertKey> keys;
  for (int e = 0; e < experts; ++e) keys.push_back({2, e});
  for (int p = 0; p < passes; ++p) {
    const int64_t pass = cache->BeginPass(2, keys);
    for (const ExpertKey& key : keys)
      ASSERT_TRUE(cache->Acquire(key, pass).ok());
  }
}

TEST(ExpertCacheAdaptiveTest, GrowsForALargeWorkingSetAndGivesMemoryBack) {
  FakeLoader loader;
  std::vector<ResizeEvent> events;
  ExpertCacheOptions options = Adaptive(2);
  options.on_resize = [&events](const ResizeEvent& e) { events.push_back(e); };
  auto cache = MakeCache(16 * kExpertBytes, &loader, options);
  EXPECT_EQ(cache->stats().capacity_bytes, 2 * kExpertBytes);
  LoopPasses(cache.get(), 10, 400);
  ExpertCacheStats s = cache->stats();
  EXPECT_GE(s.capacity_bytes, 10 * kExpertBytes);
  EXPECT_GT(s.window_hit_rate, 0.95);
  EXPECT_GT(s.resizes_up, 0u);
  const uint64_t grown = s.resident_bytes;

  LoopPasses(cache.get(), 2, 1500);
  s = cache->stats();
  EXPECT_LE(s.capacity_bytes, 3 * kExpertBytes);
  EXPECT_LE(s.resident_bytes, s.capacity_bytes);
  EXPECT_LT(s.resident_bytes, grown);
  EXPECT_GT(s.resizes_down, 0u);
  EXPECT_EQ(events.size(), s.resizes_up + s.resizes_down);
  EXPECT_FALSE(events.back().grew());
  EXPECT_NE(events.back().reason.find("shrink_above"), std::string::npos);
}

// Concurrent readers whose working set keeps changing size, so the cache
// grows and shrinks while they run. The loader checks the hard limit at
// every insertion (a load is an insertion whose bytes are reserved).
TEST(ExpertCacheAdaptiveTest, ConcurrentResizingNeverExceedsTheBudget) {
  constexpr int kThreads = 6, kPhases = 12, kPassesPerPhase = 150;
  constexpr uint64_t kBudget = 8 * kExpertBytes;
  FakeLoader loader;
  ExpertCache* cache_ptr = nullptr;
  std::atomic<int> over_budget{0}, errors{0};
  loader.fail = [&](const ExpertKey&, int) {
    const ExpertCacheStats s = cache_ptr->stats();
    if (s.resident_bytes + s.loading_bytes > kBudget) ++over_budget;
    if (s.capacity_bytes > kBudget) ++over_budget;
    return absl::OkStatus();
  };
  ExpertCacheOptions options = Adaptive(2);
  options.prefetch_threads = 2;
  auto cache = MakeCache(kBudget, &loader, options);
  cache_ptr = cache.get();
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(t);
      for (int phase = 0; phase < kPhases; ++phase) {
        const int experts = phase % 2 == 0 ? 10 : 2;
        for (int p = 0; p < kPassesPerPhase; ++p) {
          std::vector<ExpertKey> keys;
          for (int e = 0; e < experts; ++e) keys.push_back({1, e});
          std::shuffle(keys.begin(), keys.end(), random);
          const int64_t pass = cache_ptr->BeginPass(1, keys);
          for (const ExpertKey& key : keys) {
            absl::StatusOr<ExpertHandle> h = cache_ptr->Acquire(key, pass);
            if (!h.ok() || h->key() != key) ++errors;
          }
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // A prefetch thread (at idle priority, so often late) may still hold the
  // pin of a load in flight; every pin must be released eventually.
  EXPECT_TRUE(Eventually([&] { return cache->stats().pinned_experts == 0; }));
  const ExpertCacheStats s = cache->stats();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(over_budget.load(), 0);
  EXPECT_LE(s.peak_resident_bytes, kBudget);
  EXPECT_GT(s.resizes_up, 0u);
  EXPECT_GT(s.resizes_down, 0u);
}

}  // namespace
}  // namespace edge
