// Expert access traces: what the expert cache was asked for, and when.
//
// A trace is a CSV file, one access per line after a header:
//
//   # edge expert access trace v1
//   time_us,pass,layer,expert,bytes
//   0,0,5,17,8392704
//   ...
//
// `time_us` counts from the start of recording; `pass` numbers one MoE
// layer pass of one batch (the router decided all of the pass's experts at
// once, so a replay may announce them together: AdaptivePolicy::BeginPass);
// accesses of concurrent batches may interleave, so a pass's accesses need
// not be contiguous. `bytes` is the expert's size in the cache. Lines
// starting with '#' are comments.
//
// The gateway records with AccessTraceWriter (--expert_trace_file); the
// synthetic generator (cache/sim/trace_generator.h) and cache_sim read and
// write the same format.
#ifndef EDGE_CACHE_ACCESS_TRACE_H_
#define EDGE_CACHE_ACCESS_TRACE_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "cache/expert_key.h"
#include "common/sync.h"

namespace edge {

struct ExpertAccess {
  int64_t time_us = 0;
  int64_t pass = 0;
  ExpertKey key;
  uint64_t bytes = 0;
};

// Reads a whole trace. INVALID_ARGUMENT naming the line for a malformed
// line; NOT_FOUND if the file cannot be opened.
absl::StatusOr<std::vector<ExpertAccess>> ReadAccessTrace(
    const std::string& path);
// Writes `accesses` to `path` (replacing it).
absl::Status WriteAccessTrace(const std::string& path,
                              const std::vector<ExpertAccess>& accesses);

// Appends accesses to a trace file as they happen. Thread-safe. Lines are
// buffered by stdio and flushed by Flush() and the destructor; a write
// error stops recording and is reported by Flush().
class AccessTraceWriter {
 public:
  // Creates (truncates) `path` and writes the header.
  static absl::StatusOr<std::unique_ptr<AccessTraceWriter>> Create(
      const std::string& path);
  ~AccessTraceWriter();

  void Append(const ExpertAccess& access) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Flush() ABSL_LOCKS_EXCLUDED(mu_);
  int64_t appended() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  AccessTraceWriter(std::string path, std::FILE* file);

  const std::string path_;
  mutable Mutex mu_;
  std::FILE* file_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  int64_t appended_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace edge

#endif  // EDGE_CACHE_ACCESS_TRACE_H_
