#include "server/dynamic_batcher.h"

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace edge {
namespace {

struct FakeTask {
  int id = 0;
  int64_t enqueue_us = 0;
  int64_t deadline_us = 0;
};

// Records batches and expired tasks; the processor can be held to let
// tasks pile up behind a running batch.
class Recorder {
 public:
  void Process(std::vector<std::unique_ptr<FakeTask>> batch) {
    absl::MutexLock lock(&mu_);
    auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return released_;
    };
    mu_.Await(absl::Condition(&released));
    std::vector<int> ids;
    for (auto& t : batch) ids.push_back(t->id);
    batches_.push_back(ids);
  }
  void Expire(std::unique_ptr<FakeTask> task) {
    absl::MutexLock lock(&mu_);
    expired_.push_back(task->id);
  }
  void Hold() {
    absl::MutexLock lock(&mu_);
    released_ = false;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  void WaitForBatches(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return batches_.size() >= n;
    };
    mu_.Await(absl::Condition(&enough));
  }
  std::vector<std::vector<int>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  std::vector<int> expired() {
    absl::MutexLock lock(&mu_);
    return expired_;
  }

 private:
  absl::Mutex mu_;
  bool released_ = true;
  std::vector<std::vector<int>> batches_;
  std::vector<int> expired_;
};

std::unique_ptr<DynamicBatcher<FakeTask>> MakeBatcher(
    Recorder* r, int max_batch, int64_t delay_us,
    std::function<int64_t()> now = nullptr) {
  DynamicBatcherOptions options;
  options.max_batch_size = max_batch;
  options.max_queue_delay_us = delay_us;
  if (now) options.now_us = now;
  auto b = DynamicBatcher<FakeTask>::Create(
      options, [r](auto batch) { r->Process(std::move(batch)); },
      [r](auto task) { r->Expire(std::move(task)); });
  EXPECT_TRUE(b.ok()) << b.status();
  return *std::move(b);
}

void SubmitIds(DynamicBatcher<FakeTask>& b, int first, int count,
               int64_t deadline_us = 0) {
  for (int i = first; i < first + count; ++i) {
    auto t = std::make_unique<FakeTask>();
    t->id = i;
    t->deadline_us = deadline_us;
    ASSERT_TRUE(b.Submit(&t).ok());
    ASSERT_EQ(t, nullptr);  // ownership taken.
  }
}

TEST(DynamicBatcherTest, RejectsBadOptions) {
  DynamicBatcherOptions options;
  options.max_batch_size = 0;
  auto noop = [](auto) {};
  EXPECT_FALSE(DynamicBatcher<FakeTask>::Create(options, noop, noop).ok());
  options.max_batch_size = 1;
  options.max_queue_delay_us = -1;
  EXPECT_FALSE(DynamicBatcher<FakeTask>::Create(options, noop, noop).ok());
}

// With a delay far beyond the test's length, only size can close a batch.
TEST(DynamicBatcherTest, FullBatchClosesWithoutWaitingForDelay) {
  Recorder r;
  auto b = MakeBatcher(&r, 4, /*delay_us=*/60'000'000);
  SubmitIds(*b, 0, 4);
  r.WaitForBatches(1);
  EXPECT_THAT(r.batches()[0], ::testing::ElementsAre(0, 1, 2, 3));
}

TEST(DynamicBatcherTest, PartialBatchClosesAfterDelayNotBefore) {
  Recorder r;
  constexpr int64_t kDelayUs = 50'000;
  auto b = MakeBatcher(&r, 8, kDelayUs);
  const auto start = std::chrono::steady_clock::now();
  SubmitIds(*b, 0, 3);
  r.WaitForBatches(1);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::microseconds(kDelayUs));
  EXPECT_THAT(r.batches()[0], ::testing::ElementsAre(0, 1, 2));
}

// While a batch computes, arrivals queue; they then form full batches in
// arrival order, and the remainder closes on its delay.
TEST(DynamicBatcherTest, QueueBuiltDuringComputeFormsFullBatchesInOrder) {
  Recorder r;
  auto b = MakeBatcher(&r, 2, /*delay_us=*/1000);
  r.Hold();
  SubmitIds(*b, 0, 2);  // this batch blocks in the processor.
  SubmitIds(*b, 2, 5);
  r.Release();
  r.WaitForBatches(4);
  EXPECT_THAT(r.batches(), ::testing::ElementsAre(::testing::ElementsAre(0, 1),
                                                  ::testing::ElementsAre(2, 3),
                                                  ::testing::ElementsAre(4, 5),
                                                  ::testing::ElementsAre(6)));
}

TEST(DynamicBatcherTest, ExpiredTasksAreNotComputed) {
  Recorder r;
  std::atomic<int64_t> now{1'000};
  auto b =
      MakeBatcher(&r, 4, /*delay_us=*/60'000'000, [&] { return now.load(); });
  SubmitIds(*b, 0, 2, /*deadline_us=*/1'500);  // expires before the batch.
  now = 2'000;
  SubmitIds(*b, 2, 2, /*deadline_us=*/0);  // no deadline: fills the batch.
  b->Stop();
  EXPECT_THAT(r.expired(), ::testing::ElementsAre(0, 1));
  EXPECT_THAT(r.batches(),
              ::testing::ElementsAre(::testing::ElementsAre(2, 3)));
}

TEST(DynamicBatcherTest, StopProcessesQueuedTasksAndRefusesNewOnes) {
  Recorder r;
  auto b = MakeBatcher(&r, 4, /*delay_us=*/60'000'000);
  SubmitIds(*b, 0, 3);
  b->Stop();  // must not wait a minute for the delay.
  EXPECT_THAT(r.batches(),
              ::testing::ElementsAre(::testing::ElementsAre(0, 1, 2)));
  auto t = std::make_unique<FakeTask>();
  EXPECT_EQ(b->Submit(&t).code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(t, nullptr);  // the caller keeps a refused task.
}

TEST(DynamicBatcherTest, ConcurrentSubmittersLoseNothing) {
  Recorder r;
  auto b = MakeBatcher(&r, 8, /*delay_us=*/200);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { SubmitIds(*b, t * 1000, 500); });
  }
  for (auto& t : threads) t.join();
  b->Stop();
  size_t total = 0;
  for (const auto& batch : r.batches()) {
    EXPECT_LE(batch.size(), 8u);
    total += batch.size();
  }
  EXPECT_EQ(total, 2000u);
}

}  // namespace
}  // namespace edge
