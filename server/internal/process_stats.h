// The process's own resource figures, read from Linux's /proc: what the
// official Prometheus client libraries export as process_* metrics. No
// state; thread-safe.
#ifndef EDGE_SERVER_INTERNAL_PROCESS_STATS_H_
#define EDGE_SERVER_INTERNAL_PROCESS_STATS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edge {
namespace internal {

struct ProcessStats {
  double cpu_seconds = 0;            // user + system, since the start.
  double start_time_seconds = 0;     // since the Unix epoch.
  uint64_t resident_bytes = 0;       // RSS now.
  uint64_t resident_peak_bytes = 0;  // VmHWM: the largest RSS so far.
  uint64_t virtual_bytes = 0;
  int64_t open_fds = 0;
};

// Reads /proc/self/stat, /proc/self/status, /proc/self/fd and /proc/stat
// (boot time). UNAVAILABLE naming the file if one cannot be read or parsed
// (no /proc, as on non-Linux systems or in some sandboxes).
absl::StatusOr<ProcessStats> ReadProcessStats();

// The whole of a /proc or /sys file (they report size 0, so they are read
// as streams). UNAVAILABLE naming the path if it cannot be read.
absl::StatusOr<std::string> ReadProcFile(const std::string& path);

// The number after `key` on the first line of `text` that starts with it
// ("VmRSS:" in /proc/self/status, "btime" in /proc/stat,
// "hierarchical_memory_limit" in memory.stat). UNAVAILABLE naming `path`
// and the key when there is no such line or no number on it.
absl::StatusOr<uint64_t> FindKeyedNumber(const std::string& path,
                                         absl::string_view text,
                                         absl::string_view key);

}  // namespace internal
}  // namespace edge

#endif  // EDGE_SERVER_INTERNAL_PROCESS_STATS_H_
