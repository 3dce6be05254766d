// ExpertCache: keeps prepared experts in memory under a byte budget, sizes
// itself between min_bytes and the budget, and prefetches.
//
// The engine asks for an expert with Acquire(); the cache returns a handle
// that pins the expert (it cannot be evicted while any handle to it lives).
// On a miss the cache calls the injected loader once, however many threads
// miss the same key at the same time: the others wait for that load. Before
// a load starts, its bytes (from the injected sizer) are reserved, evicting
// least-recently-used unpinned experts as needed, so resident plus loading
// bytes never exceed the budget. Which expert is evicted, and how much of
// the budget the cache uses (its capacity), is AdaptivePolicy's decision
// (cache/adaptive_policy.h): the cache evicts down to the capacity whenever
// unpinned experts allow it and goes above the capacity (never above the
// budget) only when pinned and loading experts leave no other way to
// serve a request. If even evicting every unpinned expert
// would not make room (the budget is held by pinned or loading experts),
// Acquire() evicts nothing and waits until a handle is released or a load
// fails. Waiters are not queued in order: a large expert may wait while
// smaller ones keep fitting.
//
// The loader and the sizer run without the cache's lock held, and evicted
// experts are destroyed outside it. A loader result larger than the sizer
// announced, a null result or an exception from the loader fails the load
// with INTERNAL.
//
// Announcements and prefetch. Before a MoE layer runs its experts the
// engine calls BeginPass() with all of them (the router has decided): the
// policy protects them from eviction until they are acquired, and the
// missing ones are queued for the prefetch pool, so their loads overlap the
// computation of the resident ones. Prefetch() queues speculative loads
// (the engine's next-layer guesses). The pool's queue is bounded; a full
// queue drops the request (counted). A prefetch never waits for budget and
// never evicts an announced expert. A prefetched expert counts as used on
// its first Acquire and as wasted if evicted before it.
//
// Entry states:
//   absent --Acquire miss--> loading --ok--> resident (pinned while handles
//   live; in the LRU list when unpinned) --evict--> absent
//   loading --loader error--> absent (the error goes to every waiter; it is
//   not cached, so the next Acquire tries again)
// A thread that finds an entry loading pins it and waits, so the entry is
// resident and pinned when the load succeeds.
//
// Invariants (checked in debug builds, observable via stats()):
//   resident_bytes + loading_bytes <= budget_bytes (when budget_bytes > 0)
//   an entry is in the LRU list iff it is resident and unpinned.
//
// Usage:
//   auto handle = cache->Acquire({layer, expert});
//   if (!handle.ok()) return handle.status();
//   const auto& w = static_cast<const MyExpert&>(handle->value());
//
// Thread-safe. A thread must not wait in Acquire() while it holds handles
// whose release the wait depends on (the engine holds one at a time).
#ifndef EDGE_CACHE_EXPERT_CACHE_H_
#define EDGE_CACHE_EXPERT_CACHE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache/access_trace.h"
#include "cache/adaptive_policy.h"
#include "cache/expert_key.h"
#include "common/sync.h"

namespace edge {

// What the cache stores: an expert in the form the engine computes with.
class CachedExpert {
 public:
  virtual ~CachedExpert() = default;
  // Memory this object holds; must not exceed what the sizer announced.
  virtual uint64_t bytes() const = 0;
};

using ExpertLoader =
    std::function<absl::StatusOr<std::shared_ptr<CachedExpert>>(
        const ExpertKey&)>;
// Exact bytes the loader's result for `key` will occupy.
using ExpertSizer = std::function<uint64_t(const ExpertKey&)>;

struct ExpertCacheOptions {
  // Hard limit on resident + loading bytes; 0 means unbounded (no
  // eviction, no sizing). The policy's max_bytes.
  uint64_t budget_bytes = 0;
  // Thresholds of adaptive sizing and ranking; max_bytes is overwritten
  // with budget_bytes. min_bytes 0 (the default) keeps the capacity at the
  // budget.
  AdaptivePolicyOptions policy;
  // Background loader threads for BeginPass()/Prefetch(); 0 disables
  // prefetching. One thread: loads are disk- and memory-bound and the
  // engine's compute already uses every core.
  int prefetch_threads = 1;
  // Run the prefetch threads at SCHED_IDLE (Linux): they use only CPU time
  // the engine leaves idle, so they never slow the batch in progress. The
  // price: a batch that needs an expert a prefetch thread is loading waits
  // for it at that priority; the engine's OpenMP threads sleep meanwhile,
  // so only other runnable threads (decoding, gRPC, other processes) delay
  // it. An unprivileged process cannot raise the loader's priority again
  // (CAP_SYS_NICE), so there is no boost; set false on a box whose CPUs
  // other processes keep busy.
  bool prefetch_idle_priority = true;
  // Prefetch requests queued beyond this are dropped: a stale guess is
  // worth less than a fresh one. 64 covers two MoE layers of 32 experts.
  int prefetch_queue_limit = 64;
  // Called (without the cache's lock, on BeginPass()'s thread) for each
  // announced expert that BeginPass() queues for a background load, before
  // the loader threads reach it: lets the storage start reading every
  // missing expert of the pass at once (ExpertStore::ReadAhead), so disk
  // reads overlap each other and the compute of resident experts instead of
  // following one another on the loader thread. Null: no read-ahead.
  std::function<void(const ExpertKey&)> read_ahead;
  // Records every Acquire() when set. Not owned; must outlive the cache.
  AccessTraceWriter* trace = nullptr;
  // Called (without the cache's lock) after each resize, e.g. to log it.
  std::function<void(const ResizeEvent&)> on_resize;
  // Upper bounds (ms) of the load latency histogram buckets; the last
  // bucket is unbounded. From a page-cache hit of a 1 MB expert (~0.2 ms)
  // to a cold read of a 32 MB one from an SD card (~1 s).
  std::vector<double> load_latency_bounds_ms = {0.25, 0.5, 1,   2,   5,   10,
                                                20,   50,  100, 250, 1000};
  // The clock of load latencies and of the trace's time column;
  // injectable so that tests set the time instead of sleeping. Called with
  // the cache's lock held, on callers' and prefetch threads.
  std::function<absl::Time()> now = absl::Now;
};

struct ExpertCacheStats {
  // Acquire() found the expert resident or loading, other than by a
  // prefetch not yet used.
  uint64_t hits = 0;
  // Every other Acquire(): it started a load, or used a prefetched expert
  // (those are also counted in prefetch_used).
  uint64_t misses = 0;
  uint64_t loads = 0;  // loads that succeeded.
  uint64_t load_failures = 0;
  uint64_t evictions = 0;
  uint64_t resident_bytes = 0;
  uint64_t loading_bytes = 0;
  uint64_t peak_resident_bytes = 0;  // max of resident + loading, ever.
  uint64_t budget_bytes = 0;
  int resident_experts = 0;
  int pinned_experts = 0;
  // Adaptive sizing.
  uint64_t capacity_bytes = 0;  // current target (budget if unbounded: 0).
  uint64_t min_bytes = 0;
  uint64_t resizes_up = 0;
  uint64_t resizes_down = 0;
  double window_hit_rate = 0;  // over the policy's window.
  // Prefetch (BeginPass and Prefetch requests).
  uint64_t prefetch_issued = 0;   // loads started by the pool.
  uint64_t prefetch_used = 0;     // prefetched experts acquired later.
  uint64_t prefetch_wasted = 0;   // evicted before any Acquire.
  uint64_t prefetch_dropped = 0;  // queue full.
  // Successful loads by duration: counts per options.load_latency_bounds_ms
  // bucket (last is +Inf), and the sum in seconds.
  std::vector<uint64_t> load_latency_counts;
  std::vector<double> load_latency_bounds_ms;
  double load_latency_sum_s = 0;
};

class ExpertCache;

// Pins one resident expert. Move-only; releasing (destruction or reset())
// unpins it.
class ExpertHandle {
 public:
  ExpertHandle() = default;
  ExpertHandle(ExpertHandle&& other) noexcept;
  ExpertHandle& operator=(ExpertHandle&& other) noexcept;
  ExpertHandle(const ExpertHandle&) = delete;
  ExpertHandle& operator=(const ExpertHandle&) = delete;
  ~ExpertHandle() { reset(); }

  // REQUIRES: the handle is not empty.
  const CachedExpert& value() const { return *value_; }
  const ExpertKey& key() const { return key_; }
  explicit operator bool() const { return cache_ != nullptr; }
  void reset();

 private:
  friend class ExpertCache;
  ExpertHandle(ExpertCache* cache, ExpertKey key,
               std::shared_ptr<CachedExpert> value)
      : cache_(cache), key_(key), value_(std::move(value)) {}

  ExpertCache* cache_ = nullptr;
  ExpertKey key_;
  std::shared_ptr<CachedExpert> value_;
};

class ExpertCache {
 public:
  // INVALID_ARGUMENT if loader, sizer or options.now is empty.
  static absl::StatusOr<std::unique_ptr<ExpertCache>> Create(
      ExpertCacheOptions options, ExpertLoader loader, ExpertSizer sizer);
  // REQUIRES: no handle outlives the cache.
  ~ExpertCache();

  // A pass of MoE block `layer` is about to acquire `keys` (each once):
  // protects them from eviction and queues the missing ones for prefetch.
  // Returns the pass's id for Acquire().
  int64_t BeginPass(int layer, const std::vector<ExpertKey>& keys);
  // True if `key` is resident now (a hint: it may be evicted at once).
  bool IsResident(const ExpertKey& key) const;
  // Queues speculative loads of `keys` (most wanted first).
  void Prefetch(const std::vector<ExpertKey>& keys);

  // Returns the expert pinned. RESOURCE_EXHAUSTED if the expert alone is
  // larger than the budget; the loader's error if its load fails. `pass`
  // (from BeginPass, or -1) labels the access in the trace.
  absl::StatusOr<ExpertHandle> Acquire(const ExpertKey& key, int64_t pass = -1);
  // Loads `keys` in order until the next would not fit the capacity, even
  // after evicting unpinned experts that are not in `keys` (start-up
  // warm-up). Returns how many are resident;
  // load errors are skipped (a later Acquire reports them).
  int Warm(const std::vector<ExpertKey>& keys);
  // Acquires per expert since creation, for usage profiles.
  std::vector<std::pair<ExpertKey, uint64_t>> UsageCounts() const;

  ExpertCacheStats stats() const;

 private:
  struct Entry;
  struct LoadResult;
  ExpertCache(ExpertCacheOptions options, ExpertLoader loader,
              ExpertSizer sizer);

  // Implementation details in expert_cache.cc.
  using Evicted = std::vector<std::shared_ptr<CachedExpert>>;
  absl::StatusOr<ExpertHandle> AcquireImpl(const ExpertKey& key, int64_t pass)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<ExpertHandle> JoinAsHitLocked(const ExpertKey& key,
                                               int64_t pass, Evicted* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `after_pin` runs (locked) once the entry is pinned.
  absl::StatusOr<ExpertHandle> JoinLocked(
      const ExpertKey& key, Entry* entry,
      const std::function<void()>& after_pin = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `speculative`: a prefetch, which only uses free room or evicts
  // unannounced experts, and then only if that makes enough room.
  bool MakeRoomLocked(uint64_t bytes, bool speculative, Evicted* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictVictimLocked(bool speculative, Evicted* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // REQUIRES: `key` resident and unpinned.
  void EvictLocked(const ExpertKey& key, Evicted* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MakeRoomForWarmLocked(
      uint64_t bytes,
      const std::unordered_set<ExpertKey, ExpertKeyHash>& listed,
      Evicted* evicted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TrimToCapacityLocked(Evicted* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordAccessLocked(const ExpertKey& key, uint64_t bytes, bool hit,
                          int64_t pass, Evicted* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartLoadLocked(const ExpertKey& key, uint64_t bytes, bool prefetch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True if `key` waits in the prefetch queue afterwards.
  bool QueuePrefetchLocked(const ExpertKey& key, bool urgent)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PrefetchLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void PrefetchOne(const ExpertKey& key) ABSL_LOCKS_EXCLUDED(mu_);
  void RecordLoadLatencyLocked(double seconds)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyResizes() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<ExpertHandle> Load(const ExpertKey& key, uint64_t bytes)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::shared_ptr<CachedExpert>> CallLoader(const ExpertKey& key,
                                                           uint64_t bytes)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<ExpertHandle> FinishLoadLocked(
      const ExpertKey& key, absl::StatusOr<std::shared_ptr<CachedExpert>> value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PinLocked(Entry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Release(const ExpertKey& key) ABSL_LOCKS_EXCLUDED(mu_);
  bool InvariantsHoldLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  friend class ExpertHandle;

  // Constant after construction.
  const ExpertCacheOptions options_;
  const ExpertLoader loader_;
  const ExpertSizer sizer_;

  mutable Mutex mu_;
  // Signalled whenever a waiter's condition may have become true: a load
  // finished (its waiters), an expert was unpinned or a failed load freed
  // its reservation (threads waiting for budget).
  CondVar changed_;
  std::unordered_map<ExpertKey, std::unique_ptr<Entry>, ExpertKeyHash> entries_
      ABSL_GUARDED_BY(mu_);
  // Unpinned resident keys (the eviction candidates), in unpin order.
  std::list<ExpertKey> lru_ ABSL_GUARDED_BY(mu_);
  uint64_t lru_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // bytes of the lru_ entries
  ExpertCacheStats stats_ ABSL_GUARDED_BY(mu_);
  // Null when the cache is unbounded.
  std::unique_ptr<AdaptivePolicy> policy_ ABSL_GUARDED_BY(mu_);
  std::vector<ResizeEvent> pending_resizes_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<ExpertKey, uint64_t, ExpertKeyHash> usage_
      ABSL_GUARDED_BY(mu_);
  int64_t next_pass_ ABSL_GUARDED_BY(mu_) = 0;
  const absl::Time created_;  // options_.now() at construction.

  // Prefetch pool.
  std::deque<ExpertKey> prefetch_queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  CondVar prefetch_ready_;
  std::vector<std::thread> prefetch_threads_;
};

}  // namespace edge

#endif  // EDGE_CACHE_EXPERT_CACHE_H_
