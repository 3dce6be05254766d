#include "cache/expert_cache.h"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/sync.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cache/fake_loader.h"

namespace edge {
namespace {

using cache_testing::Eventually;
using cache_testing::Fake;
using cache_testing::FakeClock;
using cache_testing::FakeLoader;
using cache_testing::kExpertBytes;
using cache_testing::MakeCache;
using cache_testing::Touch;

using ::testing::HasSubstr;

TEST(ExpertCacheTest, CreateNeedsLoaderSizerAndClock) {
  auto sizer = [](const ExpertKey&) { return kExpertBytes; };
  EXPECT_EQ(ExpertCache::Create({}, nullptr, sizer).status().code(),
            absl::StatusCode::kInvalidArgument);
  FakeLoader loader;
  auto load = [&loader](const ExpertKey& key) { return loader.Load(key); };
  EXPECT_EQ(ExpertCache::Create({}, load, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  ExpertCacheOptions no_clock;
  no_clock.now = nullptr;
  EXPECT_EQ(ExpertCache::Create(no_clock, load, sizer).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ExpertCacheTest, MissLoadsThenHitReuses) {
  FakeLoader loader;
  auto cache = MakeCache(300, &loader);
  {
    absl::StatusOr<ExpertHandle> handle = cache->Acquire({7, 3});
    ASSERT_TRUE(handle.ok()) << handle.status();
    EXPECT_EQ(Fake(*handle).key(), (ExpertKey{7, 3}));
    EXPECT_EQ(handle->key(), (ExpertKey{7, 3}));
    EXPECT_EQ(cache->stats().pinned_experts, 1);
  }
  EXPECT_TRUE(Touch(cache.get(), {7, 3}));
  EXPECT_EQ(loader.loads({7, 3}), 1);

  const ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.loads, 1u);
  EXPECT_EQ(stats.evictions, 0u);
  EXPECT_EQ(stats.resident_bytes, kExpertBytes);
  EXPECT_EQ(stats.loading_bytes, 0u);
  EXPECT_EQ(stats.peak_resident_bytes, kExpertBytes);
  EXPECT_EQ(stats.budget_bytes, 300u);
  EXPECT_EQ(stats.resident_experts, 1);
  EXPECT_EQ(stats.pinned_experts, 0);
}

TEST(ExpertCacheTest, EvictsLeastRecentlyUsedFirst) {
  FakeLoader loader;
  auto cache = MakeCache(3 * kExpertBytes, &loader);
  const ExpertKey a{1, 0}, b{1, 1}, c{1, 2}, d{1, 3};
  for (const ExpertKey& key : {a, b, c}) ASSERT_TRUE(Touch(cache.get(), key));
  ASSERT_TRUE(Touch(cache.get(), a));  // LRU order now b, c, a

  ASSERT_TRUE(Touch(cache.get(), d));  // evicts b: c, a, d
  EXPECT_EQ(cache->stats().evictions, 1u);
  ASSERT_TRUE(Touch(cache.get(), a));  // hit: c, d, a
  ASSERT_TRUE(Touch(cache.get(), c));  // hit: d, a, c
  EXPECT_EQ(loader.loads(a), 1);
  EXPECT_EQ(loader.loads(c), 1);
  ASSERT_TRUE(Touch(cache.get(), b));  // miss, evicts d: a, c, b
  EXPECT_EQ(loader.loads(b), 2);
  ASSERT_TRUE(Touch(cache.get(), d));  // miss, evicts a
  EXPECT_EQ(loader.loads(d), 2);
  ASSERT_TRUE(Touch(cache.get(), c));
  EXPECT_EQ(loader.loads(c), 1);

  const ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.evictions, 3u);
  EXPECT_EQ(stats.misses, 6u);
  EXPECT_EQ(stats.hits, 4u);
  EXPECT_EQ(stats.resident_experts, 3);
  EXPECT_EQ(stats.resident_bytes, 3 * kExpertBytes);
  EXPECT_EQ(stats.peak_resident_bytes, 3 * kExpertBytes);
}

TEST(ExpertCacheTest, PinnedExpertIsNeverEvicted) {
  FakeLoader loader;
  auto cache = MakeCache(2 * kExpertBytes, &loader);
  absl::StatusOr<ExpertHandle> pinned = cache->Acquire({0, 0});
  ASSERT_TRUE(pinned.ok());
  for (int e = 1; e <= 20; ++e) ASSERT_TRUE(Touch(cache.get(), {0, e}));

  // Every new expert evicted the previous one; the pinned one stayed.
  EXPECT_EQ(cache->stats().evictions, 19u);
  EXPECT_EQ(cache->stats().pinned_experts, 1);
  EXPECT_EQ(Fake(*pinned).key(), (ExpertKey{0, 0}));
  pinned->reset();
  ASSERT_TRUE(Touch(cache.get(), {0, 0}));
  EXPECT_EQ(loader.loads({0, 0}), 1);
}

TEST(ExpertCacheTest, ExpertPinnedTwiceIsEvictableOnlyAfterBothRelease) {
  FakeLoader loader;
  auto cache = MakeCache(kExpertBytes, &loader);
  absl::StatusOr<ExpertHandle> first = cache->Acquire({0, 0});
  absl::StatusOr<ExpertHandle> second = cache->Acquire({0, 0});
  ASSERT_TRUE(first.ok() && second.ok());
  first->reset();
  EXPECT_EQ(cache->stats().pinned_experts, 1);
  second->reset();
  EXPECT_EQ(cache->stats().pinned_experts, 0);
  ASSERT_TRUE(Touch(cache.get(), {0, 1}));
  EXPECT_EQ(cache->stats().evictions, 1u);
}

TEST(ExpertCacheTest, WaitsWhileTheBudgetIsPinnedThenProceeds) {
  FakeLoader loader;
  auto cache = MakeCache(2 * kExpertBytes, &loader);
  absl::StatusOr<ExpertHandle> a = cache->Acquire({0, 0});
  absl::StatusOr<ExpertHandle> b = cache->Acquire({0, 1});
  ASSERT_TRUE(a.ok() && b.ok());

  Notification acquired;
  std::thread waiter([&] {
    EXPECT_TRUE(Touch(cache.get(), {0, 2}));
    acquired.Notify();
  });
  // Give the waiter time to go wrong; nothing may free room for it yet.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(acquired.HasBeenNotified());
  EXPECT_EQ(loader.loads({0, 2}), 0);

  a->reset();
  waiter.join();
  EXPECT_TRUE(acquired.HasBeenNotified());
  const ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.evictions, 1u);  // a made way; b is still pinned
  EXPECT_EQ(stats.pinned_experts, 1);
  EXPECT_LE(stats.peak_resident_bytes, 2 * kExpertBytes);
}

TEST(ExpertCacheTest, ExpertLargerThanTheBudgetIsResourceExhausted) {
  FakeLoader loader;
  loader.size = [](const ExpertKey& key) -> uint64_t {
    return key.expert == 9 ? 1000 : kExpertBytes;
  };
  auto cache = MakeCache(300, &loader);
  absl::StatusOr<ExpertHandle> handle = cache->Acquire({1, 9});
  EXPECT_EQ(handle.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(handle.status().message(),
              HasSubstr("layer 1 expert 9 needs 1000 bytes"));
  EXPECT_THAT(handle.status().message(), HasSubstr("budget of 300"));
  EXPECT_EQ(loader.loads({1, 9}), 0);
  EXPECT_EQ(cache->stats().misses, 0u);
  EXPECT_TRUE(Touch(cache.get(), {1, 8}));
}

TEST(ExpertCacheTest, LoaderErrorIsReturnedAndNotCached) {
  FakeLoader loader;
  loader.fail = [](const ExpertKey&, int load_number) {
    return load_number == 1
               ? absl::DataLossError("checksum mismatch in /m/e.safetensors")
               : absl::OkStatus();
  };
  auto cache = MakeCache(300, &loader);
  absl::StatusOr<ExpertHandle> failed = cache->Acquire({2, 2});
  EXPECT_EQ(failed.status(),
            absl::DataLossError("checksum mismatch in /m/e.safetensors"));
  ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.load_failures, 1u);
  EXPECT_EQ(stats.resident_bytes + stats.loading_bytes, 0u);
  EXPECT_EQ(stats.resident_experts, 0);

  EXPECT_TRUE(Touch(cache.get(), {2, 2}));  // tried again, and it works
  EXPECT_EQ(loader.loads({2, 2}), 2);
  stats = cache->stats();
  EXPECT_EQ(stats.loads, 1u);
  EXPECT_EQ(stats.misses, 2u);
}

// A load's duration is read on the injected clock, so the histogram is
// checked exactly, without a loader that sleeps.
TEST(ExpertCacheTest, LoadLatencyHistogramCountsSuccessfulLoads) {
  FakeClock clock;
  FakeLoader loader;
  // The hook runs inside the load: the time it adds is the load's duration.
  loader.fail = [&clock](const ExpertKey& key, int) {
    clock.Advance(absl::Milliseconds(key.expert));
    return key.expert == 9 ? absl::NotFoundError("no file") : absl::OkStatus();
  };
  ExpertCacheOptions options;
  options.now = clock.Function();
  options.load_latency_bounds_ms = {1, 10};
  auto cache = MakeCache(10 * kExpertBytes, &loader, options);
  EXPECT_TRUE(Touch(cache.get(), {0, 1}));   // 1 ms: the first bucket
  EXPECT_TRUE(Touch(cache.get(), {0, 2}));   // 2 ms: the second
  EXPECT_TRUE(Touch(cache.get(), {0, 30}));  // 30 ms: the unbounded one
  EXPECT_TRUE(Touch(cache.get(), {0, 30}));  // a hit: no load
  EXPECT_FALSE(Touch(cache.get(), {0, 9}));  // a failed load: not counted
  const ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.load_latency_bounds_ms, (std::vector<double>{1, 10}));
  EXPECT_EQ(stats.load_latency_counts, (std::vector<uint64_t>{1, 1, 1}));
  EXPECT_DOUBLE_EQ(stats.load_latency_sum_s, 0.033);
}

// Starts `threads` Acquire()s of one key while the loader is held at its
// gate, waits until all but the loading thread are waiting on that load,
// then opens the gate. Returns what each thread got.
std::vector<absl::StatusOr<ExpertHandle>> AcquireTogether(ExpertCache* cache,
                                                          FakeLoader* loader,
                                                          const ExpertKey& key,
                                                          int threads) {
  Notification gate;
  loader->gate = &gate;
  std::vector<absl::StatusOr<ExpertHandle>> results;
  for (int t = 0; t < threads; ++t) {
    results.emplace_back(absl::UnknownError("not run"));
  }
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] { results[t] = cache->Acquire(key); });
  }
  // A thread counts as a hit when it joins the load, before it waits.
  EXPECT_TRUE(Eventually([&] {
    return loader->loads(key) == 1 &&
           cache->stats().hits == static_cast<uint64_t>(threads - 1);
  }));
  gate.Notify();
  for (std::thread& worker : workers) worker.join();
  loader->gate = nullptr;
  return results;
}

TEST(ExpertCacheTest, ConcurrentMissesOfOneKeyLoadItOnce) {
  FakeLoader loader;
  auto cache = MakeCache(300, &loader);
  std::vector<absl::StatusOr<ExpertHandle>> results =
      AcquireTogether(cache.get(), &loader, {3, 1}, 8);

  EXPECT_EQ(loader.loads({3, 1}), 1);
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(&result->value(), &results[0]->value());
  }
  ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 7u);
  EXPECT_EQ(stats.pinned_experts, 1);
  results.clear();
  stats = cache->stats();
  EXPECT_EQ(stats.pinned_experts, 0);
  EXPECT_EQ(stats.resident_bytes, kExpertBytes);
}

TEST(ExpertCacheTest, FailedLoadReachesEveryWaiter) {
  FakeLoader loader;
  loader.fail = [](const ExpertKey&, int load_number) {
    return load_number == 1 ? absl::NotFoundError("no /m/e.safetensors")
                            : absl::OkStatus();
  };
  auto cache = MakeCache(300, &loader);
  for (const auto& result : AcquireTogether(cache.get(), &loader, {3, 1}, 8)) {
    EXPECT_EQ(result.status(), absl::NotFoundError("no /m/e.safetensors"));
  }
  EXPECT_EQ(loader.loads({3, 1}), 1);
  EXPECT_EQ(cache->stats().load_failures, 1u);
  EXPECT_EQ(cache->stats().resident_experts, 0);

  EXPECT_TRUE(Touch(cache.get(), {3, 1}));
  EXPECT_EQ(loader.loads({3, 1}), 2);
}

TEST(ExpertCacheTest, LoaderBugsAreInternalErrorsThatFreeTheReservation) {
  FakeLoader loader;
  auto cache = MakeCache(300, &loader);
  loader.extra_bytes = 1;
  absl::StatusOr<ExpertHandle> too_big = cache->Acquire({0, 0});
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(too_big.status().message(),
              HasSubstr("loader returned 101 bytes for layer 0 expert 0, "
                        "more than the sizer's 100"));
  loader.extra_bytes = 0;
  loader.return_null = true;
  EXPECT_EQ(cache->Acquire({0, 0}).status().code(),
            absl::StatusCode::kInternal);
  loader.return_null = false;
  loader.throw_error = true;
  absl::StatusOr<ExpertHandle> threw = cache->Acquire({0, 0});
  EXPECT_EQ(threw.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(threw.status().message(), HasSubstr("disk on fire"));

  const ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.load_failures, 3u);
  EXPECT_EQ(stats.resident_bytes + stats.loading_bytes, 0u);
}

TEST(ExpertCacheTest, ZeroBudgetIsUnbounded) {
  FakeLoader loader;
  auto cache = MakeCache(0, &loader);
  for (int e = 0; e < 50; ++e) ASSERT_TRUE(Touch(cache.get(), {0, e}));
  const ExpertCacheStats stats = cache->stats();
  EXPECT_EQ(stats.evictions, 0u);
  EXPECT_EQ(stats.resident_bytes, 50 * kExpertBytes);
  EXPECT_EQ(stats.budget_bytes, 0u);
}

TEST(ExpertCacheTest, HandlesMoveAndReset) {
  FakeLoader loader;
  auto cache = MakeCache(300, &loader);
  absl::StatusOr<ExpertHandle> a = cache->Acquire({0, 0});
  ASSERT_TRUE(a.ok());
  ExpertHandle moved(std::move(*a));
  EXPECT_FALSE(*a);
  EXPECT_TRUE(moved);
  EXPECT_EQ(cache->stats().pinned_experts, 1);

  absl::StatusOr<ExpertHandle> b = cache->Acquire({0, 1});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(cache->stats().pinned_experts, 2);
  moved = std::move(*b);  // releases {0, 0}
  EXPECT_EQ(moved.key(), (ExpertKey{0, 1}));
  EXPECT_EQ(cache->stats().pinned_experts, 1);

  moved.reset();
  moved.reset();  // a second reset is a no-op
  EXPECT_FALSE(moved);
  EXPECT_EQ(cache->stats().pinned_experts, 0);
  ExpertHandle empty;
  EXPECT_FALSE(empty);
}

// Many threads, few slots: 8 threads x kIterations random Acquire()s of 32
// experts under a budget for 5, with one load in 13 failing. Each thread
// holds one handle at a time, as the engine does. Checks the values, the
// budget (continuously, from a monitor thread, and as the peak), single-
// flight loading and the bookkeeping.
TEST(ExpertCacheTest, StressKeepsTheBudgetAndReturnsTheRightExperts) {
  constexpr int kThreads = 8, kIterations = 4000, kKeys = 32;
  constexpr uint64_t kBudget = 5 * kExpertBytes;
  FakeLoader loader;
  loader.fail = [](const ExpertKey&, int load_number) {
    return load_number % 13 == 0 ? absl::UnavailableError("injected")
                                 : absl::OkStatus();
  };
  auto cache = MakeCache(kBudget, &loader);
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0}, failed{0}, over_budget{0};
  std::thread monitor([&] {
    while (!done) {
      const ExpertCacheStats s = cache->stats();
      if (s.resident_bytes + s.loading_bytes > kBudget) ++over_budget;
    }
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937 random(t);
      std::uniform_int_distribution<int> expert(0, kKeys - 1);
      for (int i = 0; i < kIterations; ++i) {
        const ExpertKey key{4, expert(random)};
        absl::StatusOr<ExpertHandle> handle = cache->Acquire(key);
        if (!handle.ok()) {
          if (handle.status() != absl::UnavailableError("injected")) ++wrong;
          ++failed;
        } else if (Fake(*handle).key() != key ||
                   handle->value().bytes() != kExpertBytes) {
          ++wrong;
        }
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  done = true;
  monitor.join();

  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(over_budget.load(), 0);
  EXPECT_FALSE(loader.concurrent_same_key());
  const ExpertCacheStats s = cache->stats();
  EXPECT_LE(s.peak_resident_bytes, kBudget);
  EXPECT_EQ(s.peak_resident_bytes, kBudget);  // 32 keys fill 5 slots
  EXPECT_EQ(s.hits + s.misses, uint64_t{kThreads} * kIterations);
  EXPECT_EQ(s.loads + s.load_failures, s.misses);
  EXPECT_GT(s.load_failures, 0u);
  EXPECT_GE(static_cast<uint64_t>(failed.load()), s.load_failures);
  EXPECT_EQ(s.evictions, s.loads - s.resident_experts);
  EXPECT_EQ(s.resident_bytes, s.resident_experts * kExpertBytes);
  EXPECT_EQ(s.loading_bytes, 0u);
  EXPECT_EQ(s.pinned_experts, 0);
}

}  // namespace
}  // namespace edge
