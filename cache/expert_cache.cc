#include "cache/expert_cache.h"

#include <sched.h>

#include <algorithm>
#include <cassert>
#include <exception>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace edge {

// Implementation notes.
//
// An Entry is loading while `load` is set and resident once `value` is.
// A thread that finds an entry loading pins it before it waits, so the
// entry becomes resident already pinned and cannot be evicted before the
// waiter wakes. A failed load erases its entry at once (the waiters' pins
// go with it); the waiters read the error from the LoadResult they share.
//
// Entry and LoadResult fields are guarded by ExpertCache::mu_.
struct ExpertCache::LoadResult {
  bool done = false;
  absl::Status status;  // the load's outcome, once done.
};

struct ExpertCache::Entry {
  uint64_t bytes = 0;  // reserved from the sizer before the load started.
  int pins = 0;        // live handles, plus threads waiting for the load.
  std::shared_ptr<LoadResult> load;             // non-null iff loading.
  std::shared_ptr<CachedExpert> value;          // non-null iff resident.
  std::list<ExpertKey>::iterator lru_position;  // iff resident, pins == 0.
  bool prefetched = false;  // loaded by the pool, not acquired since.
  absl::Time load_start;
};

ExpertHandle::ExpertHandle(ExpertHandle&& other) noexcept
    : cache_(std::exchange(other.cache_, nullptr)),
      key_(other.key_),
      value_(std::move(other.value_)) {}

ExpertHandle& ExpertHandle::operator=(ExpertHandle&& other) noexcept {
  if (this != &other) {
    reset();
    cache_ = std::exchange(other.cache_, nullptr);
    key_ = other.key_;
    value_ = std::move(other.value_);
  }
  return *this;
}

void ExpertHandle::reset() {
  if (cache_ == nullptr) return;
  value_.reset();
  std::exchange(cache_, nullptr)->Release(key_);
}

absl::StatusOr<std::unique_ptr<ExpertCache>> ExpertCache::Create(
    ExpertCacheOptions options, ExpertLoader loader, ExpertSizer sizer) {
  if (!loader || !sizer || !options.now) {
    return absl::InvalidArgumentError(
        "ExpertCache needs a loader, a sizer and a clock");
  }
  const AdaptivePolicyOptions& p = options.policy;
  if (options.budget_bytes > 0 &&
      (p.min_bytes > options.budget_bytes || p.grow_below > p.shrink_above ||
       p.window_accesses <= 0 || p.resize_interval_accesses <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expert cache: need min_bytes <= budget_bytes (", p.min_bytes, " vs ",
        options.budget_bytes, "), grow_below <= shrink_above (", p.grow_below,
        " vs ", p.shrink_above, ") and positive window/interval"));
  }
  if (options.prefetch_threads < 0 || options.prefetch_queue_limit < 0) {
    return absl::InvalidArgumentError(
        "expert cache: prefetch_threads and prefetch_queue_limit must be >= 0");
  }
  return std::unique_ptr<ExpertCache>(
      new ExpertCache(std::move(options), std::move(loader), std::move(sizer)));
}

ExpertCache::ExpertCache(ExpertCacheOptions options, ExpertLoader loader,
                         ExpertSizer sizer)
    : options_(std::move(options)),
      loader_(std::move(loader)),
      sizer_(std::move(sizer)),
      created_(options_.now()) {
  stats_.budget_bytes = options_.budget_bytes;
  stats_.load_latency_bounds_ms = options_.load_latency_bounds_ms;
  stats_.load_latency_counts.assign(options_.load_latency_bounds_ms.size() + 1,
                                    0);
  if (options_.budget_bytes > 0) {
    AdaptivePolicyOptions policy = options_.policy;
    policy.max_bytes = options_.budget_bytes;
    policy_ = std::make_unique<AdaptivePolicy>(policy);
    stats_.capacity_bytes = policy_->capacity_bytes();
    stats_.min_bytes =
        policy.min_bytes == 0 ? policy.max_bytes : policy.min_bytes;
  }
  for (int i = 0; i < options_.prefetch_threads; ++i) {
    prefetch_threads_.emplace_back([this] { PrefetchLoop(); });
  }
}

ExpertCache::~ExpertCache() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    prefetch_ready_.SignalAll();
  }
  for (std::thread& t : prefetch_threads_) t.join();
}

int64_t ExpertCache::BeginPass(int layer, const std::vector<ExpertKey>& keys) {
  std::vector<ExpertKey> queued;
  int64_t pass;
  {
    MutexLock lock(&mu_);
    if (policy_ != nullptr) policy_->BeginPass(layer, keys);
    // Needed now: ahead of speculative requests, in the pass's order.
    for (auto it = keys.rbegin(); it != keys.rend(); ++it) {
      if (QueuePrefetchLocked(*it, /*urgent=*/true)) queued.push_back(*it);
    }
    pass = next_pass_++;
  }
  if (options_.read_ahead) {
    for (auto it = queued.rbegin(); it != queued.rend(); ++it) {
      options_.read_ahead(*it);
    }
  }
  return pass;
}

bool ExpertCache::IsResident(const ExpertKey& key) const {
  MutexLock lock(&mu_);
  const auto it = entries_.find(key);
  return it != entries_.end() && it->second->load == nullptr;
}

void ExpertCache::Prefetch(const std::vector<ExpertKey>& keys) {
  MutexLock lock(&mu_);
  for (const ExpertKey& key : keys) QueuePrefetchLocked(key, /*urgent=*/false);
}

bool ExpertCache::QueuePrefetchLocked(const ExpertKey& key, bool urgent) {
  if (prefetch_threads_.empty() || entries_.count(key) != 0) return false;
  const auto queued =
      std::find(prefetch_queue_.begin(), prefetch_queue_.end(), key);
  if (queued != prefetch_queue_.end()) {
    if (!urgent) return true;
    prefetch_queue_.erase(queued);
  } else if (static_cast<int>(prefetch_queue_.size()) >=
             options_.prefetch_queue_limit) {
    if (!urgent || prefetch_queue_.empty()) {
      ++stats_.prefetch_dropped;
      return false;
    }
    prefetch_queue_.pop_back();  // the stalest speculative guess
    ++stats_.prefetch_dropped;
  }
  if (urgent) {
    prefetch_queue_.push_front(key);
  } else {
    prefetch_queue_.push_back(key);
  }
  prefetch_ready_.Signal();
  return true;
}

void ExpertCache::PrefetchLoop() {
  // Background loads take CPU (page faults, the loader's weight reorder).
  // On a small box the engine's OpenMP team holds every core, and a loader
  // that preempts one of its threads stalls the whole team at the next
  // barrier. SCHED_IDLE runs the loader only on a core the engine leaves
  // idle (while it waits for a load, between batches); the disk reads
  // themselves (read_ahead) proceed in the kernel regardless.
  if (options_.prefetch_idle_priority) {
    sched_param param{};
    (void)sched_setscheduler(0, SCHED_IDLE, &param);
  }
  for (;;) {
    ExpertKey key;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && prefetch_queue_.empty()) prefetch_ready_.Wait(&mu_);
      if (stopping_) return;
      key = prefetch_queue_.front();
      prefetch_queue_.pop_front();
    }
    PrefetchOne(key);
  }
}

void ExpertCache::PrefetchOne(const ExpertKey& key) {
  const uint64_t bytes = sizer_(key);
  Evicted evicted;
  {
    MutexLock lock(&mu_);
    if (entries_.count(key) != 0) return;
    if (options_.budget_bytes > 0 && bytes > options_.budget_bytes) return;
    if (!MakeRoomLocked(bytes, /*speculative=*/true, &evicted)) return;
    StartLoadLocked(key, bytes, /*prefetch=*/true);
    ++stats_.prefetch_issued;
  }
  evicted.clear();
  // The handle unpins at once: the expert waits, evictable, for its use.
  // A failed load is not cached; the demand Acquire retries and reports it.
  (void)Load(key, bytes);
}

absl::StatusOr<ExpertHandle> ExpertCache::Acquire(const ExpertKey& key,
                                                  int64_t pass) {
  absl::StatusOr<ExpertHandle> handle = AcquireImpl(key, pass);
  NotifyResizes();
  return handle;
}

absl::StatusOr<ExpertHandle> ExpertCache::AcquireImpl(const ExpertKey& key,
                                                      int64_t pass) {
  // Declared before any lock so that evicted experts are freed unlocked.
  Evicted evicted;
  {
    MutexLock lock(&mu_);
    const auto it = entries_.find(key);
    if (it != entries_.end()) return JoinAsHitLocked(key, pass, &evicted);
  }
  // A miss. The sizer is caller code, so it runs unlocked.
  const uint64_t bytes = sizer_(key);
  if (options_.budget_bytes > 0 && bytes > options_.budget_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(key.ToString(), " needs ", bytes,
                     " bytes, more than the expert cache's whole budget of ",
                     options_.budget_bytes));
  }
  {
    MutexLock lock(&mu_);
    // Another thread may have started this load while we were unlocked.
    if (entries_.count(key) != 0) return JoinAsHitLocked(key, pass, &evicted);
    RecordAccessLocked(key, bytes, /*hit=*/false, pass, &evicted);
    for (;;) {
      const auto it = entries_.find(key);
      if (it != entries_.end()) {
        // Another thread's load started while we waited for room.
        --stats_.misses;
        ++stats_.hits;
        return JoinLocked(key, it->second.get());
      }
      if (MakeRoomLocked(bytes, /*speculative=*/false, &evicted)) break;
      changed_.Wait(&mu_);
    }
    StartLoadLocked(key, bytes, /*prefetch=*/false);
  }
  evicted.clear();  // return their memory before the loader allocates
  return Load(key, bytes);
}

void ExpertCache::RecordAccessLocked(const ExpertKey& key, uint64_t bytes,
                                     bool hit, int64_t pass, Evicted* evicted) {
  ++(hit ? stats_.hits : stats_.misses);
  ++usage_[key];
  if (options_.trace != nullptr) {
    options_.trace->Append(
        {absl::ToInt64Microseconds(options_.now() - created_), pass, key,
         bytes});
  }
  if (policy_ == nullptr) return;
  policy_->RecordAccess(key, bytes, hit);
  const std::optional<ResizeEvent> resize = policy_->MaybeResize();
  if (!resize.has_value()) return;
  ++(resize->grew() ? stats_.resizes_up : stats_.resizes_down);
  stats_.capacity_bytes = policy_->capacity_bytes();
  pending_resizes_.push_back(*resize);
  TrimToCapacityLocked(evicted);
}

void ExpertCache::NotifyResizes() {
  std::vector<ResizeEvent> events;
  {
    MutexLock lock(&mu_);
    if (pending_resizes_.empty()) return;
    events.swap(pending_resizes_);
  }
  if (options_.on_resize) {
    for (const ResizeEvent& e : events) options_.on_resize(e);
  }
}

// Warm-up may evict unpinned experts that are not on its list (e.g. those
// of start-up batches), never one it loaded itself: the list is in order
// of expected use.
int ExpertCache::Warm(const std::vector<ExpertKey>& keys) {
  const std::unordered_set<ExpertKey, ExpertKeyHash> listed(keys.begin(),
                                                            keys.end());
  int resident = 0;
  for (const ExpertKey& key : keys) {
    const uint64_t bytes = sizer_(key);
    Evicted evicted;
    {
      MutexLock lock(&mu_);
      if (entries_.count(key) != 0) {
        ++resident;
        continue;
      }
      if (policy_ != nullptr &&
          !MakeRoomForWarmLocked(bytes, listed, &evicted)) {
        break;
      }
      StartLoadLocked(key, bytes, /*prefetch=*/false);
    }
    evicted.clear();
    if (Load(key, bytes).ok()) ++resident;
  }
  return resident;
}

bool ExpertCache::MakeRoomForWarmLocked(
    uint64_t bytes, const std::unordered_set<ExpertKey, ExpertKeyHash>& listed,
    Evicted* evicted) {
  const uint64_t capacity = policy_->capacity_bytes();
  std::vector<ExpertKey> candidates;
  uint64_t candidate_bytes = 0;
  for (const ExpertKey& key : lru_) {
    if (listed.count(key) != 0) continue;
    candidates.push_back(key);
    candidate_bytes += entries_.at(key)->bytes;
  }
  const uint64_t used = stats_.resident_bytes + stats_.loading_bytes;
  if (used - candidate_bytes + bytes > capacity) return false;
  while (stats_.resident_bytes + stats_.loading_bytes + bytes > capacity) {
    const ExpertKey victim = policy_->ChooseVictim(candidates);
    candidates.erase(std::find(candidates.begin(), candidates.end(), victim));
    EvictLocked(victim, evicted);
  }
  return true;
}

std::vector<std::pair<ExpertKey, uint64_t>> ExpertCache::UsageCounts() const {
  MutexLock lock(&mu_);
  return {usage_.begin(), usage_.end()};
}

// Records the access after pinning, so that a resize it triggers cannot
// evict the expert being returned, and before waiting for a load.
absl::StatusOr<ExpertHandle> ExpertCache::JoinAsHitLocked(const ExpertKey& key,
                                                          int64_t pass,
                                                          Evicted* evicted) {
  Entry* entry = entries_.at(key).get();
  const uint64_t bytes = entry->bytes;
  // An expert the prefetch pool brought in for this access was not held by
  // the cache: a miss (counted also as prefetch_used), so the hit rate, and
  // the sizing decisions made from it, measure what memory retains.
  const bool hit = !entry->prefetched;
  return JoinLocked(
      key, entry, [&] { RecordAccessLocked(key, bytes, hit, pass, evicted); });
}

absl::StatusOr<ExpertHandle> ExpertCache::JoinLocked(
    const ExpertKey& key, Entry* entry,
    const std::function<void()>& after_pin) {
  if (entry->prefetched) {
    entry->prefetched = false;
    ++stats_.prefetch_used;
  }
  PinLocked(entry);
  if (after_pin) after_pin();
  if (entry->load == nullptr) return ExpertHandle(this, key, entry->value);
  // Our pin keeps the entry out of the LRU list once it is resident; if the
  // load fails, `entry` is gone and only `load` remains.
  const std::shared_ptr<LoadResult> load = entry->load;
  while (!load->done) changed_.Wait(&mu_);
  if (!load->status.ok()) return load->status;
  return ExpertHandle(this, key, entries_.at(key)->value);
}

bool ExpertCache::MakeRoomLocked(uint64_t bytes, bool speculative,
                                 Evicted* evicted) {
  if (policy_ == nullptr) return true;
  const uint64_t used = stats_.resident_bytes + stats_.loading_bytes;
  const uint64_t capacity = policy_->capacity_bytes();
  uint64_t evictable = lru_bytes_;
  if (speculative) {
    for (const ExpertKey& key : lru_) {
      if (policy_->IsAnnounced(key)) evictable -= entries_.at(key)->bytes;
    }
  }
  // Past the capacity only for demand loads that cannot fit otherwise.
  uint64_t limit = capacity;
  if (!speculative && used - evictable + bytes > capacity) {
    limit = options_.budget_bytes;
  }
  // Evict nothing unless that makes enough room: dropping experts and then
  // waiting anyway would only cost reloads.
  if (used - evictable + bytes > limit) return false;
  while (stats_.resident_bytes + stats_.loading_bytes + bytes > limit) {
    EvictVictimLocked(speculative, evicted);
  }
  return true;
}

void ExpertCache::TrimToCapacityLocked(Evicted* evicted) {
  while (!lru_.empty() && stats_.resident_bytes + stats_.loading_bytes >
                              policy_->capacity_bytes()) {
    EvictVictimLocked(/*speculative=*/false, evicted);
  }
}

void ExpertCache::EvictVictimLocked(bool speculative, Evicted* evicted) {
  std::vector<ExpertKey> candidates;
  candidates.reserve(lru_.size());
  for (const ExpertKey& key : lru_) {
    if (!speculative || !policy_->IsAnnounced(key)) candidates.push_back(key);
  }
  assert(!candidates.empty());
  EvictLocked(policy_->ChooseVictim(candidates), evicted);
}

void ExpertCache::EvictLocked(const ExpertKey& key, Evicted* evicted) {
  const auto it = entries_.find(key);
  Entry& entry = *it->second;
  lru_.erase(entry.lru_position);
  lru_bytes_ -= entry.bytes;
  stats_.resident_bytes -= entry.bytes;
  --stats_.resident_experts;
  ++stats_.evictions;
  if (entry.prefetched) ++stats_.prefetch_wasted;
  evicted->push_back(std::move(entry.value));
  entries_.erase(it);
}

void ExpertCache::StartLoadLocked(const ExpertKey& key, uint64_t bytes,
                                  bool prefetch) {
  auto entry = std::make_unique<Entry>();
  entry->bytes = bytes;
  entry->pins = 1;  // the loading thread's, handed to its handle
  entry->load = std::make_shared<LoadResult>();
  entry->prefetched = prefetch;
  entry->load_start = options_.now();
  entries_.emplace(key, std::move(entry));
  stats_.loading_bytes += bytes;
  stats_.peak_resident_bytes = std::max(
      stats_.peak_resident_bytes, stats_.resident_bytes + stats_.loading_bytes);
  assert(InvariantsHoldLocked());
}

absl::StatusOr<std::shared_ptr<CachedExpert>> ExpertCache::CallLoader(
    const ExpertKey& key, uint64_t bytes) {
  absl::StatusOr<std::shared_ptr<CachedExpert>> value;
  // An exception escaping here would leave the entry loading forever and
  // its waiters blocked, so it becomes an error like any other.
  try {
    value = loader_(key);
  } catch (const std::exception& e) {
    value = absl::InternalError(
        absl::StrCat("loader threw for ", key.ToString(), ": ", e.what()));
  } catch (...) {
    value =
        absl::InternalError(absl::StrCat("loader threw for ", key.ToString()));
  }
  if (value.ok() && (*value == nullptr || (*value)->bytes() > bytes)) {
    // A loader bug: the reservation would no longer cover the expert.
    value = absl::InternalError(absl::StrCat(
        "loader returned ", *value == nullptr ? 0 : (*value)->bytes(),
        " bytes for ", key.ToString(), ", more than the sizer's ", bytes,
        *value == nullptr ? " (a null expert)" : ""));
  }
  return value;
}

absl::StatusOr<ExpertHandle> ExpertCache::Load(const ExpertKey& key,
                                               uint64_t bytes) {
  absl::StatusOr<std::shared_ptr<CachedExpert>> value = CallLoader(key, bytes);
  MutexLock lock(&mu_);
  return FinishLoadLocked(key, std::move(value));
}

absl::StatusOr<ExpertHandle> ExpertCache::FinishLoadLocked(
    const ExpertKey& key, absl::StatusOr<std::shared_ptr<CachedExpert>> value) {
  Entry* entry = entries_.at(key).get();
  stats_.loading_bytes -= entry->bytes;
  const std::shared_ptr<LoadResult> load = std::move(entry->load);
  load->done = true;
  changed_.SignalAll();
  if (!value.ok()) {
    // Not cached: the next Acquire of this key loads again.
    load->status = value.status();
    ++stats_.load_failures;
    entries_.erase(key);
    assert(InvariantsHoldLocked());
    return value.status();
  }
  RecordLoadLatencyLocked(
      absl::ToDoubleSeconds(options_.now() - entry->load_start));
  entry->value = *std::move(value);
  stats_.resident_bytes += entry->bytes;
  ++stats_.resident_experts;
  ++stats_.pinned_experts;
  ++stats_.loads;
  if (policy_ != nullptr) policy_->NoteResident(key, entry->bytes);
  assert(InvariantsHoldLocked());
  return ExpertHandle(this, key, entry->value);
}

void ExpertCache::RecordLoadLatencyLocked(double seconds) {
  const std::vector<double>& bounds = options_.load_latency_bounds_ms;
  const size_t bucket =
      std::lower_bound(bounds.begin(), bounds.end(), seconds * 1e3) -
      bounds.begin();
  ++stats_.load_latency_counts[bucket];
  stats_.load_latency_sum_s += seconds;
}

void ExpertCache::PinLocked(Entry* entry) {
  // Only a resident entry can be unpinned: a loading one holds its loader's.
  if (entry->pins++ == 0) {
    lru_.erase(entry->lru_position);
    lru_bytes_ -= entry->bytes;
    ++stats_.pinned_experts;
  }
}

void ExpertCache::Release(const ExpertKey& key) {
  MutexLock lock(&mu_);
  Entry* entry = entries_.at(key).get();
  if (--entry->pins > 0) return;
  entry->lru_position = lru_.insert(lru_.end(), key);
  lru_bytes_ += entry->bytes;
  --stats_.pinned_experts;
  changed_.SignalAll();  // its bytes can be evicted now
  assert(InvariantsHoldLocked());
}

ExpertCacheStats ExpertCache::stats() const {
  MutexLock lock(&mu_);
  ExpertCacheStats stats = stats_;
  if (policy_ != nullptr) stats.window_hit_rate = policy_->window_hit_rate();
  return stats;
}

// The class comment's invariants, recomputed from the entries. O(entries),
// so only debug builds call it.
bool ExpertCache::InvariantsHoldLocked() const {
  uint64_t resident = 0, loading = 0, unpinned = 0;
  int resident_experts = 0, pinned_experts = 0;
  size_t lru_entries = 0;
  for (const auto& [key, entry] : entries_) {
    if (entry->load != nullptr) {
      loading += entry->bytes;
      continue;
    }
    resident += entry->bytes;
    ++resident_experts;
    if (entry->pins > 0) {
      ++pinned_experts;
    } else {
      unpinned += entry->bytes;
      ++lru_entries;
    }
  }
  const uint64_t budget = options_.budget_bytes;
  assert(policy_ == nullptr || policy_->capacity_bytes() <= budget);
  return resident == stats_.resident_bytes && loading == stats_.loading_bytes &&
         unpinned == lru_bytes_ && lru_entries == lru_.size() &&
         resident_experts == stats_.resident_experts &&
         pinned_experts == stats_.pinned_experts &&
         (budget == 0 || resident + loading <= budget);
}

}  // namespace edge
