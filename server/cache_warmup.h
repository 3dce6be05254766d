// Expert cache warm-up from a usage profile (cache/usage_profile.h), and the
// recorder that keeps the profile current, as edge_gateway uses them
// (--cache_profile, --cache_profile_interval_s).
//
// Start-up: after the engine exists and its primitives are warm, and
// before health turns SERVING, WarmCacheFromProfile() reads the profile
// and loads its most used experts, as many as the cache's capacity takes
// without evicting (ExpertCache::Warm), and logs how many experts and
// bytes that was and how long it took. It runs after the warm-up batches
// because they would evict what it loaded (those experts are the least
// recently used); the batches' own experts take part of the capacity
// instead, which warmup_batches=0 avoids when the budget is tight. A missing
// profile (first run) is normal; an unreadable or corrupt one, or one written
// for another model, is logged and ignored: the gateway starts anyway, cold,
// and the next write replaces the file.
//
// Serving: RecordCacheProfile() starts a UsageProfileRecorder that writes
// decay * (the counts loaded at start) + (the acquires since it started)
// every interval and once more at Stop() (shutdown). Acquires of the
// start-up warm-up batches, made before it starts, are left out: they are
// zero images, not traffic.
//
// Thread-compatible functions; the recorder is thread-safe.
#ifndef EDGE_SERVER_CACHE_WARMUP_H_
#define EDGE_SERVER_CACHE_WARMUP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache/usage_profile.h"
#include "engine/vmoe_engine.h"

namespace edge {

using LogLine = std::function<void(const std::string&)>;

// Reads `path` and warms `engine`'s cache with its most used experts of
// this model (keys the model does not have are skipped). Returns the
// profile's counts to carry over; empty when there was none usable.
UsageProfile WarmCacheFromProfile(const std::string& path, VmoeEngine& engine,
                                  const LogLine& log);

// Records `engine`'s expert usage from now on into `path` (periodic write
// errors are logged). REQUIRES: the recorder is stopped (Stop() or
// destroyed) before `engine` is destroyed.
absl::StatusOr<std::unique_ptr<UsageProfileRecorder>> RecordCacheProfile(
    const std::string& path, absl::Duration interval, UsageProfile previous,
    VmoeEngine* engine, const LogLine& log);

}  // namespace edge

#endif  // EDGE_SERVER_CACHE_WARMUP_H_
