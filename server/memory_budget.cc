#include "server/memory_budget.h"

#include <malloc.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edge {
namespace {

constexpr uint64_t kMiB = 1 << 20;

std::string Mib(uint64_t bytes) { return absl::StrCat(bytes / kMiB, " MiB"); }

}  // namespace

uint64_t TransportQuotaBytes(uint64_t limit_bytes) { return limit_bytes / 4; }

std::string MemoryPlan::Describe() const {
  return absl::StrCat("memory limit ", Mib(limit_bytes), " (", limit_source,
                      "): resident after warm-up ", Mib(resident_bytes),
                      ", expert cache still to fill ", Mib(cache_reserve_bytes),
                      ", transport ", Mib(transport_bytes), ", headroom ",
                      Mib(headroom_bytes), ", requests in flight ",
                      Mib(request_bytes));
}

MemoryPlan PlanMemory(uint64_t limit_bytes, std::string limit_source,
                      uint64_t resident_bytes, uint64_t cache_reserve_bytes) {
  MemoryPlan plan;
  plan.limit_bytes = limit_bytes;
  plan.limit_source = std::move(limit_source);
  plan.resident_bytes = resident_bytes;
  plan.cache_reserve_bytes = cache_reserve_bytes;
  // gRPC holds a message until its handler runs, and malloc keeps some slack
  // per arena; 1/8 of the limit (64 MiB at the deployments' 512 MiB) covered
  // both in the burst runs of BENCHMARKS.md ("Memory bound").
  plan.headroom_bytes = std::max<uint64_t>(64 * kMiB, limit_bytes / 8);
  plan.transport_bytes = TransportQuotaBytes(limit_bytes);
  const uint64_t taken = resident_bytes + cache_reserve_bytes +
                         plan.transport_bytes + plan.headroom_bytes;
  plan.request_bytes = limit_bytes > taken ? limit_bytes - taken : 0;
  return plan;
}

bool MemoryBudget::TryReserve(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  const uint64_t capacity = capacity_.load();
  if (capacity != 0 && held_ + bytes > capacity) return false;
  held_ += bytes;
  return true;
}

void MemoryBudget::Release(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  held_ -= std::min(bytes, held_);
  released_since_trim_ += bytes;
}

uint64_t MemoryBudget::held_bytes() const {
  absl::MutexLock lock(&mu_);
  return held_;
}

bool MemoryBudget::TakeTrimDue(uint64_t min_released) {
  absl::MutexLock lock(&mu_);
  if (released_since_trim_ < min_released || held_ > min_released) {
    return false;
  }
  released_since_trim_ = 0;
  return true;
}

MemoryTrimmer::MemoryTrimmer(MemoryBudget* budget, absl::Duration interval,
                             uint64_t min_released_bytes,
                             std::function<uint64_t()> resident_bytes)
    : thread_([this, budget, interval, min_released_bytes, resident_bytes] {
        // The lowest resident size seen: what an idle gateway needs. Above
        // it a trim may free nothing (the expert cache filled, or gRPC
        // still holds a burst's buffers and frees them seconds later), so
        // fruitless trims back off, to every kMaxBackoff intervals: memory
        // released later is still returned within that, and a resident size
        // that is really needed costs one ~1 ms trim per 4 s. (Raising the
        // floor after fruitless trims instead missed memory gRPC freed 10 s
        // after a burst of refused 120 MB messages.)
        constexpr int kMaxBackoff = 4;
        uint64_t floor = resident_bytes();
        int backoff = 1, waited = 0;
        while (!stop_.WaitForNotificationWithTimeout(interval)) {
          const uint64_t before = resident_bytes();
          floor = std::min(floor, before);
          const bool idle = budget->held_bytes() <= min_released_bytes;
          const bool above_floor = before > floor + min_released_bytes;
          const bool due = budget->TakeTrimDue(min_released_bytes);
          if (!due && !(idle && above_floor && ++waited >= backoff)) continue;
          // glibc returns the free pages at the top of each heap and, since
          // 2.8, the whole free pages inside them (MADV_DONTNEED).
          malloc_trim(0);
          ++trims_;
          waited = 0;
          const uint64_t after = resident_bytes();
          floor = std::min(floor, after);
          backoff = before > after + min_released_bytes / 4
                        ? 1
                        : std::min(backoff * 2, kMaxBackoff);
        }
      }) {}

MemoryTrimmer::~MemoryTrimmer() {
  stop_.Notify();
  thread_.join();
}

void ConfigureMalloc() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024);
  mallopt(M_ARENA_MAX, 2);
}

}  // namespace edge
