#include "cache/expert_cache.h"

#include <algorithm>
#include <cassert>
#include <exception>
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
  if (!loader || !sizer) {
    return absl::InvalidArgumentError("ExpertCache needs a loader and a sizer");
  }
  return std::unique_ptr<ExpertCache>(
      new ExpertCache(options, std::move(loader), std::move(sizer)));
}

ExpertCache::ExpertCache(ExpertCacheOptions options, ExpertLoader loader,
                         ExpertSizer sizer)
    : options_(options), loader_(std::move(loader)), sizer_(std::move(sizer)) {
  stats_.budget_bytes = options_.budget_bytes;
}

ExpertCache::~ExpertCache() = default;

absl::StatusOr<ExpertHandle> ExpertCache::Acquire(const ExpertKey& key) {
  {
    absl::MutexLock lock(&mu_);
    const auto it = entries_.find(key);
    if (it != entries_.end()) return JoinLocked(key, it->second.get());
  }
  // A miss. The sizer is caller code, so it runs unlocked.
  const uint64_t bytes = sizer_(key);
  if (options_.budget_bytes > 0 && bytes > options_.budget_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(key.ToString(), " needs ", bytes,
                     " bytes, more than the expert cache's whole budget of ",
                     options_.budget_bytes));
  }
  // Declared before the lock so that evicted experts are freed unlocked.
  std::vector<std::shared_ptr<CachedExpert>> evicted;
  {
    absl::MutexLock lock(&mu_);
    for (;;) {
      // Another thread may have started this load while we were unlocked.
      const auto it = entries_.find(key);
      if (it != entries_.end()) return JoinLocked(key, it->second.get());
      if (MakeRoomLocked(bytes, &evicted)) break;
      changed_.Wait(&mu_);
    }
    StartLoadLocked(key, bytes);
  }
  evicted.clear();  // return their memory before the loader allocates
  return Load(key, bytes);
}

absl::StatusOr<ExpertHandle> ExpertCache::JoinLocked(const ExpertKey& key,
                                                     Entry* entry) {
  ++stats_.hits;
  PinLocked(entry);
  if (entry->load == nullptr) return ExpertHandle(this, key, entry->value);
  // Our pin keeps the entry out of the LRU list once it is resident; if the
  // load fails, `entry` is gone and only `load` remains.
  const std::shared_ptr<LoadResult> load = entry->load;
  while (!load->done) changed_.Wait(&mu_);
  if (!load->status.ok()) return load->status;
  return ExpertHandle(this, key, entries_.at(key)->value);
}

bool ExpertCache::MakeRoomLocked(
    uint64_t bytes, std::vector<std::shared_ptr<CachedExpert>>* evicted) {
  const uint64_t budget = options_.budget_bytes;
  if (budget == 0) return true;
  const uint64_t used = stats_.resident_bytes + stats_.loading_bytes;
  // Evict nothing unless that makes enough room: dropping experts and then
  // waiting anyway would only cost reloads.
  if (used - lru_bytes_ + bytes > budget) return false;
  while (stats_.resident_bytes + stats_.loading_bytes + bytes > budget) {
    EvictOldestLocked(evicted);
  }
  return true;
}

void ExpertCache::EvictOldestLocked(
    std::vector<std::shared_ptr<CachedExpert>>* evicted) {
  assert(!lru_.empty());
  const auto it = entries_.find(lru_.front());
  lru_.pop_front();
  Entry& entry = *it->second;
  lru_bytes_ -= entry.bytes;
  stats_.resident_bytes -= entry.bytes;
  --stats_.resident_experts;
  ++stats_.evictions;
  evicted->push_back(std::move(entry.value));
  entries_.erase(it);
}

void ExpertCache::StartLoadLocked(const ExpertKey& key, uint64_t bytes) {
  auto entry = std::make_unique<Entry>();
  entry->bytes = bytes;
  entry->pins = 1;  // the loading thread's, handed to its handle
  entry->load = std::make_shared<LoadResult>();
  entries_.emplace(key, std::move(entry));
  ++stats_.misses;
  stats_.loading_bytes += bytes;
  stats_.peak_resident_bytes = std::max(
      stats_.peak_resident_bytes, stats_.resident_bytes + stats_.loading_bytes);
  assert(InvariantsHoldLocked());
}

absl::StatusOr<ExpertHandle> ExpertCache::Load(const ExpertKey& key,
                                               uint64_t bytes) {
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
  absl::MutexLock lock(&mu_);
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
  entry->value = *std::move(value);
  stats_.resident_bytes += entry->bytes;
  ++stats_.resident_experts;
  ++stats_.pinned_experts;
  ++stats_.loads;
  assert(InvariantsHoldLocked());
  return ExpertHandle(this, key, entry->value);
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
  absl::MutexLock lock(&mu_);
  Entry* entry = entries_.at(key).get();
  if (--entry->pins > 0) return;
  entry->lru_position = lru_.insert(lru_.end(), key);
  lru_bytes_ += entry->bytes;
  --stats_.pinned_experts;
  changed_.SignalAll();  // its bytes can be evicted now
  assert(InvariantsHoldLocked());
}

ExpertCacheStats ExpertCache::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
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
  return resident == stats_.resident_bytes && loading == stats_.loading_bytes &&
         unpinned == lru_bytes_ && lru_entries == lru_.size() &&
         resident_experts == stats_.resident_experts &&
         pinned_experts == stats_.pinned_experts &&
         (budget == 0 || resident + loading <= budget);
}

}  // namespace edge
