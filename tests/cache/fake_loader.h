// Test doubles for ExpertCache: an expert that is just a size, a
// loader/sizer with hooks to fail, block or misbehave, and a clock the test
// moves. Header-only, for tests/cache.
#ifndef EDGE_TESTS_CACHE_FAKE_LOADER_H_
#define EDGE_TESTS_CACHE_FAKE_LOADER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cache/expert_cache.h"
#include "common/sync.h"
#include "gtest/gtest.h"

namespace edge::cache_testing {

constexpr uint64_t kExpertBytes = 100;

class FakeExpert : public CachedExpert {
 public:
  FakeExpert(ExpertKey key, uint64_t bytes) : key_(key), bytes_(bytes) {}
  uint64_t bytes() const override { return bytes_; }
  const ExpertKey& key() const { return key_; }

 private:
  const ExpertKey key_;
  const uint64_t bytes_;
};

inline const FakeExpert& Fake(const ExpertHandle& handle) {
  return static_cast<const FakeExpert&>(handle.value());
}

// The cache's loader and sizer, with hooks to fail, block or misbehave.
// Counts loads per key and records a second load of a key that is still
// loading, which single-flight loading forbids. Thread-safe.
class FakeLoader {
 public:
  // Hooks; set before the cache is used.
  Notification* gate = nullptr;  // loads wait for it
  std::function<absl::Status(const ExpertKey&, int load_number)> fail;
  std::function<uint64_t(const ExpertKey&)> size = [](const ExpertKey&) {
    return kExpertBytes;
  };
  uint64_t extra_bytes = 0;  // returned beyond what the sizer announced
  bool return_null = false;
  bool throw_error = false;

  absl::StatusOr<std::shared_ptr<CachedExpert>> Load(const ExpertKey& key) {
    int load_number = 0;
    {
      MutexLock lock(&mu_);
      load_number = ++total_loads_;
      ++loads_[key];
      if (!in_flight_.emplace(key, true).second) concurrent_same_key_ = true;
    }
    if (gate != nullptr) gate->WaitForNotification();
    absl::Status status = fail ? fail(key, load_number) : absl::OkStatus();
    {
      MutexLock lock(&mu_);
      in_flight_.erase(key);
    }
    if (throw_error) throw std::runtime_error("disk on fire");
    if (!status.ok()) return status;
    if (return_null) return std::shared_ptr<CachedExpert>();
    return std::make_shared<FakeExpert>(key, size(key) + extra_bytes);
  }

  int loads(const ExpertKey& key) const {
    MutexLock lock(&mu_);
    const auto it = loads_.find(key);
    return it == loads_.end() ? 0 : it->second;
  }
  bool concurrent_same_key() const {
    MutexLock lock(&mu_);
    return concurrent_same_key_;
  }

 private:
  mutable Mutex mu_;
  int total_loads_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<ExpertKey, int> loads_ ABSL_GUARDED_BY(mu_);
  std::map<ExpertKey, bool> in_flight_ ABSL_GUARDED_BY(mu_);
  bool concurrent_same_key_ ABSL_GUARDED_BY(mu_) = false;
};

// ExpertCacheOptions::now for tests: time stands still until Advance().
// Thread-safe.
class FakeClock {
 public:
  absl::Time Now() const { return absl::FromUnixMicros(micros_.load()); }
  void Advance(absl::Duration by) { micros_ += absl::ToInt64Microseconds(by); }
  // The clock as the cache calls it; must not outlive this object.
  std::function<absl::Time()> Function() const {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> micros_{0};
};

inline std::unique_ptr<ExpertCache> MakeCache(uint64_t budget_bytes,
                                              FakeLoader* loader,
                                              ExpertCacheOptions options = {}) {
  options.budget_bytes = budget_bytes;
  absl::StatusOr<std::unique_ptr<ExpertCache>> cache = ExpertCache::Create(
      options, [loader](const ExpertKey& key) { return loader->Load(key); },
      [loader](const ExpertKey& key) { return loader->size(key); });
  EXPECT_TRUE(cache.ok()) << cache.status();
  return *std::move(cache);
}

// Acquires and at once releases `key`; true if it succeeded.
inline bool Touch(ExpertCache* cache, const ExpertKey& key) {
  absl::StatusOr<ExpertHandle> handle = cache->Acquire(key);
  return handle.ok() && Fake(*handle).key() == key;
}

// Polls `condition` for up to 10 s; for states another thread reaches.
template <typename Condition>
inline bool Eventually(Condition condition) {
  for (int i = 0; i < 10000; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace edge::cache_testing

#endif  // EDGE_TESTS_CACHE_FAKE_LOADER_H_
