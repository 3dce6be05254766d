// Expert usage profiles: how often each expert was used, kept across runs so
// that a restarted gateway can load its most used experts before it serves
// (ExpertCache::Warm) instead of paying a cold miss for each.
//
// A profile is a CSV file:
//
//   # edge expert usage profile v1
//   model,fashion-vmoe
//   layer,expert,count
//   2,1,1520
//   ...
//
// `count` is a decayed number of acquires: each run writes
// decay * (the counts it started from) + (its own counts), so the profile
// follows the traffic of the last few runs, not only the last one, and a
// scene that stopped a few restarts ago fades out. Counts are real numbers.
// Lines starting with '#' are comments.
//
// UsageProfileRecorder writes a profile periodically and once more when
// stopped. Every write goes to a temporary file in the same directory that
// is then renamed over the profile, so a crash or a full disk leaves the
// previous profile intact, never a half-written one.
#ifndef EDGE_CACHE_USAGE_PROFILE_H_
#define EDGE_CACHE_USAGE_PROFILE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache/expert_key.h"
#include "common/sync.h"

namespace edge {

struct UsageProfile {
  std::string model;  // the manifest name the counts belong to.
  std::map<ExpertKey, double> counts;
};

// NOT_FOUND if `path` does not exist; INVALID_ARGUMENT naming the file and
// line for anything malformed (a truncated or foreign file).
absl::StatusOr<UsageProfile> ReadUsageProfile(const std::string& path);
// Writes atomically (temporary file + rename). Errors name the file.
absl::Status WriteUsageProfile(const std::string& path,
                               const UsageProfile& profile);

// Keys by descending count, ties by ascending key; zero counts omitted.
std::vector<ExpertKey> MostUsedFirst(const UsageProfile& profile);

// decay * previous + current, over the union of their keys; the model
// name is `previous.model`.
UsageProfile MergeUsage(
    const UsageProfile& previous, double decay,
    const std::vector<std::pair<ExpertKey, uint64_t>>& current);

struct UsageProfileRecorderOptions {
  std::string path;   // the profile file; required.
  std::string model;  // written as the profile's model.
  // Time between periodic writes; 0 writes only in Stop(). A minute bounds
  // what a crash loses while costing one small write (a few KB).
  absl::Duration interval = absl::Seconds(60);
  // Weight of the counts the run started from (previous). 0.5: a run's
  // traffic counts half after one restart and ~6% after four.
  double decay = 0.5;
  // Counts loaded at start-up (empty if there was no usable profile).
  UsageProfile previous;
  // Called, with the recorder's lock held, with a periodic write's
  // error (the recorder keeps going). May be empty.
  std::function<void(const absl::Status&)> on_error;
};

// Periodically writes MergeUsage(previous, decay, usage()) to `path`.
// `usage` returns this run's counts (e.g. ExpertCache::UsageCounts); it is
// called from the recorder's thread and from Stop(), so it must be
// thread-safe. Thread-safe.
class UsageProfileRecorder {
 public:
  using UsageSource =
      std::function<std::vector<std::pair<ExpertKey, uint64_t>>()>;

  // INVALID_ARGUMENT for an empty path, a negative interval or a decay
  // outside [0, 1]. Starts the thread when interval > 0.
  static absl::StatusOr<std::unique_ptr<UsageProfileRecorder>> Create(
      UsageProfileRecorderOptions options, UsageSource usage);
  ~UsageProfileRecorder();  // Stop() if not called.

  // Stops the thread and writes the profile a last time; returns that
  // write's status. Later calls do nothing and return OK.
  absl::Status Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Writes now; the status of that write.
  absl::Status WriteNow() ABSL_LOCKS_EXCLUDED(mu_);
  // Successful writes so far.
  int64_t writes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  UsageProfileRecorder(UsageProfileRecorderOptions options, UsageSource usage);
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const UsageProfileRecorderOptions options_;
  const UsageSource usage_;

  // Held while writing, so writes (the thread's, WriteNow's, Stop's) never
  // share the temporary file.
  mutable Mutex mu_;
  CondVar stop_;  // signalled when stopped_ turns true.
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  int64_t writes_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace edge

#endif  // EDGE_CACHE_USAGE_PROFILE_H_
