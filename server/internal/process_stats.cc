#include "server/internal/process_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace edge {
namespace internal {
namespace {

// Field numbers of /proc/[pid]/stat, as proc(5) counts them (from 1).
constexpr int kUtimeField = 14;      // clock ticks in user mode.
constexpr int kStimeField = 15;      // clock ticks in kernel mode.
constexpr int kStartTimeField = 22;  // clock ticks after boot.
constexpr int kVsizeField = 23;      // bytes.
constexpr int kRssField = 24;        // pages.
// The first field after "pid (comm)" is field 3, the state.
constexpr int kFirstFieldAfterComm = 3;

absl::Status ParseError(absl::string_view path, absl::string_view what) {
  return absl::UnavailableError(
      absl::StrCat("cannot parse ", what, " in ", path));
}

// Seconds since the Unix epoch at which the system booted.
absl::StatusOr<uint64_t> ReadBootTimeSeconds() {
  constexpr const char* kPath = "/proc/stat";
  ASSIGN_OR_RETURN(const std::string text, ReadProcFile(kPath));
  return FindKeyedNumber(kPath, text, "btime");
}

// CPU time, start time and memory from /proc/self/stat.
absl::Status ReadStat(ProcessStats* stats) {
  constexpr const char* kPath = "/proc/self/stat";
  ASSIGN_OR_RETURN(const std::string text, ReadProcFile(kPath));
  // comm may hold spaces and parentheses; it ends at the last ')'.
  const size_t comm_end = text.rfind(')');
  if (comm_end == std::string::npos) return ParseError(kPath, "comm");
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(text).substr(comm_end + 1),
                     absl::ByAnyChar(" \n"), absl::SkipEmpty());
  auto field = [&](int number, uint64_t* value) {
    const size_t index = number - kFirstFieldAfterComm;
    return index < fields.size() && absl::SimpleAtoi(fields[index], value);
  };
  uint64_t utime = 0, stime = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
  if (!field(kUtimeField, &utime) || !field(kStimeField, &stime) ||
      !field(kStartTimeField, &start_ticks) || !field(kVsizeField, &vsize) ||
      !field(kRssField, &rss_pages)) {
    return ParseError(kPath, "fields 14-24");
  }
  ASSIGN_OR_RETURN(const uint64_t boot_time_seconds, ReadBootTimeSeconds());
  const double ticks_per_second = sysconf(_SC_CLK_TCK);
  stats->cpu_seconds = (utime + stime) / ticks_per_second;
  stats->start_time_seconds =
      boot_time_seconds + start_ticks / ticks_per_second;
  stats->virtual_bytes = vsize;
  stats->resident_bytes = rss_pages * sysconf(_SC_PAGESIZE);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CountOpenFds() {
  constexpr const char* kPath = "/proc/self/fd";
  DIR* dir = opendir(kPath);
  if (dir == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot list ", kPath));
  }
  int64_t entries = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++entries;  // skip "." and ".."
  }
  closedir(dir);
  // The listing includes the descriptor opendir() held while reading it.
  return entries - 1;
}

}  // namespace

absl::StatusOr<std::string> ReadProcFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<uint64_t> FindKeyedNumber(const std::string& path,
                                         absl::string_view text,
                                         absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, key)) continue;
    std::vector<absl::string_view> words =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    uint64_t value = 0;
    if (words.empty() || !absl::SimpleAtoi(words[0], &value)) break;
    return value;
  }
  return ParseError(path, key);
}

absl::StatusOr<ProcessStats> ReadProcessStats() {
  ProcessStats stats;
  RETURN_IF_ERROR(ReadStat(&stats));
  constexpr const char* kStatusPath = "/proc/self/status";
  ASSIGN_OR_RETURN(const std::string status_text, ReadProcFile(kStatusPath));
  ASSIGN_OR_RETURN(const uint64_t peak_kib,
                   FindKeyedNumber(kStatusPath, status_text, "VmHWM:"));
  stats.resident_peak_bytes = peak_kib * 1024;  // status reports "kB" = KiB.
  ASSIGN_OR_RETURN(stats.open_fds, CountOpenFds());
  return stats;
}

}  // namespace internal
}  // namespace edge
