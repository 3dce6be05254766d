// DynamicBatcher: groups single-image tasks into batches for the engine.
//
// Parameters and behaviour (names and meaning as Triton's dynamic batcher,
// so users know them):
//   max_batch_size      a batch closes as soon as it holds this many tasks;
//   max_queue_delay_us  ... or when its oldest task has waited this long.
// Closed batches are handed to the processor on the batcher's own thread,
// one at a time: the engine already uses every core, so running two batches
// at once would only make both slower. While a batch computes, new tasks
// queue up, so under load batches fill without waiting for the delay.
//
// A task whose deadline has passed when its batch closes is not computed:
// it goes to the `expired` callback instead (the caller answers it
// DEADLINE_EXCEEDED). Submit() never blocks; the caller bounds the queue
// (InferencePipeline's max_queue_size), so the batcher has no size limit of
// its own.
//
// States: running --Stop()--> draining (Submit refused; queued tasks are
// batched without waiting for the delay) --queue empty--> stopped.
//
// Example flow, max_batch_size 4, max_queue_delay_us 2000:
//   t=0 us task A; t=300 B; t=2000 the batch [A, B] closes (A waited 2 ms).
//   While [A, B] computes, C..H arrive; [C, D, E, F] closes at once, G, H wait.
//
// Task requirements: fields `int64_t enqueue_us` (set by Submit) and
// `int64_t deadline_us` (absolute, on the batcher's clock; 0 = none).
//
// Thread-safe.
#ifndef EDGE_SERVER_DYNAMIC_BATCHER_H_
#define EDGE_SERVER_DYNAMIC_BATCHER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace edge {

struct DynamicBatcherOptions {
  int max_batch_size = 16;         // ServerConfig's default.
  int64_t max_queue_delay_us = 0;  // ServerConfig's default.
  // Microseconds on a monotonic clock; injectable for tests.
  std::function<int64_t()> now_us = [] {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
};

template <typename Task>
class DynamicBatcher {
 public:
  using Batch = std::vector<std::unique_ptr<Task>>;
  using Processor = std::function<void(Batch)>;
  using Expired = std::function<void(std::unique_ptr<Task>)>;

  // INVALID_ARGUMENT for max_batch_size < 1 or a negative delay.
  static absl::StatusOr<std::unique_ptr<DynamicBatcher>> Create(
      DynamicBatcherOptions options, Processor processor, Expired expired);
  // Stops (draining the queue) if Stop() was not called.
  ~DynamicBatcher();

  // Queues `*task` and takes it. UNAVAILABLE after Stop(); then `*task` is
  // left with the caller.
  absl::Status Submit(std::unique_ptr<Task>* task);

  // Refuses new tasks, processes every queued one, and joins the thread.
  void Stop();

  size_t queued() const;

 private:
  DynamicBatcher(DynamicBatcherOptions options, Processor processor,
                 Expired expired);
  void Loop();
  // Waits until a batch should close; false once stopped and empty.
  bool WaitForBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DynamicBatcherOptions options_;
  const Processor processor_;
  const Expired expired_;
  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Task>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Implementation details follow.

template <typename Task>
absl::StatusOr<std::unique_ptr<DynamicBatcher<Task>>>
DynamicBatcher<Task>::Create(DynamicBatcherOptions options, Processor processor,
                             Expired expired) {
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError("max_batch_size must be >= 1");
  }
  if (options.max_queue_delay_us < 0) {
    return absl::InvalidArgumentError("max_queue_delay_us must be >= 0");
  }
  if (!processor || !expired || !options.now_us) {
    return absl::InvalidArgumentError("processor, expired and now_us needed");
  }
  return std::unique_ptr<DynamicBatcher>(new DynamicBatcher(
      std::move(options), std::move(processor), std::move(expired)));
}

template <typename Task>
DynamicBatcher<Task>::DynamicBatcher(DynamicBatcherOptions options,
                                     Processor processor, Expired expired)
    : options_(std::move(options)),
      processor_(std::move(processor)),
      expired_(std::move(expired)),
      thread_([this] { Loop(); }) {}

template <typename Task>
DynamicBatcher<Task>::~DynamicBatcher() {
  Stop();
}

template <typename Task>
absl::Status DynamicBatcher<Task>::Submit(std::unique_ptr<Task>* task) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  (*task)->enqueue_us = options_.now_us();
  queue_.push_back(std::move(*task));
  return absl::OkStatus();
}

template <typename Task>
void DynamicBatcher<Task>::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

template <typename Task>
size_t DynamicBatcher<Task>::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

template <typename Task>
bool DynamicBatcher<Task>::WaitForBatch() {
  const size_t full = static_cast<size_t>(options_.max_batch_size);
  while (true) {
    if (queue_.empty()) {
      if (stopping_) return false;
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !queue_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&ready));
      continue;
    }
    if (queue_.size() >= full || stopping_) return true;
    // Differences of non-negative times on a monotonic clock, never a sum:
    // any max_queue_delay_us (up to INT64_MAX) fits without overflow.
    const int64_t waited = options_.now_us() - queue_.front()->enqueue_us;
    const int64_t left = options_.max_queue_delay_us - waited;
    if (left <= 0) return true;
    auto filled = [this, full]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.size() >= full || stopping_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&filled), absl::Microseconds(left));
  }
}

template <typename Task>
void DynamicBatcher<Task>::Loop() {
  while (true) {
    Batch batch;
    std::vector<std::unique_ptr<Task>> expired;
    {
      absl::MutexLock lock(&mu_);
      if (!WaitForBatch()) return;
      const int64_t now = options_.now_us();
      while (!queue_.empty() &&
             batch.size() < static_cast<size_t>(options_.max_batch_size)) {
        std::unique_ptr<Task> task = std::move(queue_.front());
        queue_.pop_front();
        const bool late = task->deadline_us != 0 && task->deadline_us <= now;
        (late ? expired : batch).push_back(std::move(task));
      }
    }
    for (auto& task : expired) expired_(std::move(task));
    if (!batch.empty()) processor_(std::move(batch));
  }
}

}  // namespace edge

#endif  // EDGE_SERVER_DYNAMIC_BATCHER_H_
