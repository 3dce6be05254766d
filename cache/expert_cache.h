// ExpertCache: keeps prepared experts in memory under a byte budget.
//
// The engine asks for an expert with Acquire(); the cache returns a handle
// that pins the expert (it cannot be evicted while any handle to it lives).
// On a miss the cache calls the injected loader once, however many threads
// miss the same key at the same time: the others wait for that load. Before
// a load starts, its bytes (from the injected sizer) are reserved, evicting
// least-recently-used unpinned experts as needed, so resident plus loading
// bytes never exceed the budget. If even evicting every unpinned expert
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
#include <functional>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cache/expert_key.h"

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
  // Hard limit on resident + loading bytes; 0 means unbounded.
  uint64_t budget_bytes = 0;
};

struct ExpertCacheStats {
  uint64_t hits = 0;    // Acquire() found the expert resident or loading.
  uint64_t misses = 0;  // Acquire() started a load.
  uint64_t loads = 0;   // loads that succeeded.
  uint64_t load_failures = 0;
  uint64_t evictions = 0;
  uint64_t resident_bytes = 0;
  uint64_t loading_bytes = 0;
  uint64_t peak_resident_bytes = 0;  // max of resident + loading, ever.
  uint64_t budget_bytes = 0;
  int resident_experts = 0;
  int pinned_experts = 0;
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
  // INVALID_ARGUMENT if loader or sizer is empty.
  static absl::StatusOr<std::unique_ptr<ExpertCache>> Create(
      ExpertCacheOptions options, ExpertLoader loader, ExpertSizer sizer);
  // REQUIRES: no handle outlives the cache.
  ~ExpertCache();

  // Returns the expert pinned. RESOURCE_EXHAUSTED if the expert alone is
  // larger than the budget; the loader's error if its load fails.
  absl::StatusOr<ExpertHandle> Acquire(const ExpertKey& key);

  ExpertCacheStats stats() const;

 private:
  struct Entry;
  struct LoadResult;
  ExpertCache(ExpertCacheOptions options, ExpertLoader loader,
              ExpertSizer sizer);

  // Implementation details in expert_cache.cc.
  absl::StatusOr<ExpertHandle> JoinLocked(const ExpertKey& key, Entry* entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MakeRoomLocked(uint64_t bytes,
                      std::vector<std::shared_ptr<CachedExpert>>* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictOldestLocked(std::vector<std::shared_ptr<CachedExpert>>* evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartLoadLocked(const ExpertKey& key, uint64_t bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<ExpertHandle> Load(const ExpertKey& key, uint64_t bytes)
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

  mutable absl::Mutex mu_;
  // Signalled whenever a waiter's condition may have become true: a load
  // finished (its waiters), an expert was unpinned or a failed load freed
  // its reservation (threads waiting for budget).
  absl::CondVar changed_;
  std::unordered_map<ExpertKey, std::unique_ptr<Entry>, ExpertKeyHash> entries_
      ABSL_GUARDED_BY(mu_);
  // Unpinned resident keys, least recently used first.
  std::list<ExpertKey> lru_ ABSL_GUARDED_BY(mu_);
  uint64_t lru_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // bytes of the lru_ entries
  ExpertCacheStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace edge

#endif  // EDGE_CACHE_EXPERT_CACHE_H_
