// MemoryBudget: the bytes requests may hold at once, and the accounting of
// what they hold.
//
// The gateway's memory limit (server/memory_limit.h) is split at start-up
// (after warm-up, when the model's own resident size is known):
//
//   limit = resident after warm-up      (weights, primitives, workspaces,
//                                        the experts warm-up loaded)
//         + expert cache still to fill  (its budget - what is resident)
//         + transport quota             (limit / 4: gRPC's buffers for
//                                        messages still arriving; gRPC's own
//                                        ResourceQuota enforces it, and no
//                                        one message may exceed half of it)
//         + headroom                    (a message between gRPC and our
//                                        admission, thread stacks, malloc
//                                        slack; max(64 MiB, limit / 8))
//         + this budget                 (requests in flight)
//
// A request holds, from admission to its answer, its payload (the message
// gRPC handed us) and its decoded tensor; while it decodes, also the
// decoder's peak (ImageDecoder::Probe*). InferencePipeline reserves these
// here: a request whose needs exceed the whole budget is refused at once
// (RESOURCE_EXHAUSTED: it can never run), one that does not fit now is
// refused at admission (RESOURCE_EXHAUSTED, retry later) or, for the
// decoder's peak, waits in the decode queue until earlier decodes finish.
// So the process stays under its limit whatever arrives.
//
// After a burst the bytes go back to the C library; Trim() hands them back
// to the system (malloc_trim) once enough have been released since the last
// trim, so the resident size falls back too.
//
// Thread-safe.
#ifndef EDGE_SERVER_MEMORY_BUDGET_H_
#define EDGE_SERVER_MEMORY_BUDGET_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/memory_limit.h"

namespace edge {

struct MemoryPlan {
  uint64_t limit_bytes = 0;
  std::string limit_source;          // memory_limit_bytes, or the cgroup file
  uint64_t resident_bytes = 0;       // measured after warm-up
  uint64_t cache_reserve_bytes = 0;  // expert cache budget not yet resident
  uint64_t transport_bytes = 0;      // TransportQuotaBytes(limit_bytes)
  uint64_t headroom_bytes = 0;
  uint64_t request_bytes = 0;  // what is left for requests in flight

  // One line for the start-up log.
  std::string Describe() const;
};

// gRPC's ResourceQuota for the transport's buffers: limit / 4 (128 MiB at
// the deployments' 512 MiB). Past it gRPC shrinks flow-control windows,
// then resets streams (RESOURCE_EXHAUSTED). The largest message accepted
// is half of it, so two of the largest can arrive at once.
uint64_t TransportQuotaBytes(uint64_t limit_bytes);

// The split above; `request_bytes` is 0 when the limit does not cover the
// rest (the caller refuses to start, naming the figures).
MemoryPlan PlanMemory(uint64_t limit_bytes, std::string limit_source,
                      uint64_t resident_bytes, uint64_t cache_reserve_bytes);

class MemoryBudget {
 public:
  // `capacity_bytes` 0 means unlimited (tests, tools).
  explicit MemoryBudget(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}
  MemoryBudget(const MemoryBudget&) = delete;
  MemoryBudget& operator=(const MemoryBudget&) = delete;

  // Reserves `bytes` if they fit now; false (nothing reserved) otherwise.
  bool TryReserve(uint64_t bytes);
  void Release(uint64_t bytes);
  // True when `bytes` could ever be reserved (<= capacity).
  bool Fits(uint64_t bytes) const {
    const uint64_t capacity = capacity_.load();
    return capacity == 0 || bytes <= capacity;
  }

  uint64_t capacity_bytes() const { return capacity_.load(); }
  // The plan is made after warm-up, while the server already listens (its
  // health says NOT_SERVING until then): starts with a guess, then this.
  void SetCapacity(uint64_t capacity_bytes) { capacity_ = capacity_bytes; }
  uint64_t held_bytes() const;

  // True (and the count restarts) if at least `min_released` bytes were
  // released since the last true and at most that many are held now:
  // trimming while a burst is still in flight would only be undone by its
  // next allocations.
  bool TakeTrimDue(uint64_t min_released);

 private:
  std::atomic<uint64_t> capacity_;
  mutable absl::Mutex mu_;
  uint64_t held_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t released_since_trim_ ABSL_GUARDED_BY(mu_) = 0;
};

// Every `interval`, on its own thread until destroyed, returns freed heap
// memory to the system (malloc_trim) when the budget says a burst has been
// released (TakeTrimDue), or, while requests hold little, when the
// resident size is `min_released_bytes` above the lowest seen: memory
// gRPC's transport freed, which the budget never held, is caught too.
// Trims that free nothing back off to one every 4 intervals. So the
// resident size falls back within a few intervals of the memory's
// release, with no work on the request path.
class MemoryTrimmer {
 public:
  // REQUIRES: `budget` outlives the trimmer.
  MemoryTrimmer(MemoryBudget* budget, absl::Duration interval,
                uint64_t min_released_bytes,
                std::function<uint64_t()> resident_bytes = ResidentBytes);
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  int trims() const { return trims_.load(); }

 private:
  absl::Notification stop_;
  std::atomic<int> trims_{0};
  std::thread thread_;  // last: starts after the fields above exist
};

// Sets glibc malloc up for a long-running process with bursts of large
// buffers; call first thing in main(), before any thread exists:
//   - a fixed mmap threshold of 32 KiB (glibc's default threshold grows to
//     32 MiB after the first large free, after which a burst's buffers stay
//     in the heap): every payload, decoded frame and pixel buffer, and
//     gRPC's 64 KiB read slices, get their own mapping, returned to the
//     system on free. With 256 KiB, 16 concurrent 16 MiB messages left 6-9
//     MiB of read slices pinned in a fragmented arena, which no trim
//     returned;
//   - at most 2 arenas (8 per core by default): every arena keeps its own
//     free memory, and on two cores more arenas buy no parallelism.
void ConfigureMalloc();

}  // namespace edge

#endif  // EDGE_SERVER_MEMORY_BUDGET_H_
