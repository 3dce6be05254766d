#include "server/memory_limit.h"

#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/internal/process_stats.h"

namespace edge {
namespace {

// cgroup v1 writes "no limit" as the largest page-aligned int64 (2^63 - 4096
// on 4 KiB pages); v2 writes "max". Anything at or above 2^62 is no limit:
// no machine has that much memory.
constexpr uint64_t kNoLimit = uint64_t{1} << 62;

std::optional<std::string> ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = internal::ReadProcFile(path);
  if (!text.ok()) return std::nullopt;
  return *std::move(text);
}

// A limit file's value: nullopt for "max", unreadable or no-limit values.
std::optional<uint64_t> ReadLimit(const std::string& path) {
  const std::optional<std::string> text = ReadFile(path);
  if (!text) return std::nullopt;
  uint64_t value = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &value) ||
      value >= kNoLimit || value == 0) {
    return std::nullopt;
  }
  return value;
}

// The number after `key` in the file (memory.stat, /proc/meminfo).
std::optional<uint64_t> ReadKeyedValue(const std::string& path,
                                       absl::string_view key) {
  const std::optional<std::string> text = ReadFile(path);
  if (!text) return std::nullopt;
  const absl::StatusOr<uint64_t> value =
      internal::FindKeyedNumber(path, *text, key);
  if (!value.ok()) return std::nullopt;
  return *value;
}

struct CgroupMount {
  std::string root;         // the hierarchy's path mounted there
  std::string mount_point;  // where it is mounted
};

// The mount of the cgroup2 hierarchy (`v1_controller` empty) or of the v1
// hierarchy carrying `v1_controller`, from /proc/self/mountinfo:
//   36 35 98:0 ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
std::optional<CgroupMount> FindMount(const std::string& root,
                                     absl::string_view v1_controller) {
  const std::optional<std::string> text =
      ReadFile(root + "/proc/self/mountinfo");
  if (!text) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash < 5 || dash + 3 >= f.size()) continue;
    const absl::string_view type = f[dash + 1];
    const bool wanted =
        v1_controller.empty()
            ? type == "cgroup2"
            : type == "cgroup" &&
                  absl::StrContains(absl::StrCat(",", f[dash + 3], ","),
                                    absl::StrCat(",", v1_controller, ","));
    if (wanted) return CgroupMount{std::string(f[3]), std::string(f[4])};
  }
  return std::nullopt;
}

// The process's path in a hierarchy, from /proc/self/cgroup lines
// "ID:CONTROLLERS:PATH" ("0::PATH" for v2).
std::optional<std::string> CgroupPath(const std::string& root,
                                      absl::string_view v1_controller) {
  const std::optional<std::string> text = ReadFile(root + "/proc/self/cgroup");
  if (!text) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    const bool wanted =
        v1_controller.empty()
            ? f[0] == "0" && f[1].empty()
            : absl::StrContains(absl::StrCat(",", f[1], ","),
                                absl::StrCat(",", v1_controller, ","));
    if (wanted) return std::string(f[2]);
  }
  return std::nullopt;
}

// The directory of the process's cgroup under the mount: the cgroup path
// relative to the mount's root. A container that mounts only its own cgroup
// at /sys/fs/cgroup shows a path outside the mount's root: then the mount
// point is the process's cgroup.
std::string CgroupDir(const std::string& root, const CgroupMount& mount,
                      const std::string& path) {
  std::string relative = path;
  if (mount.root != "/" && absl::StartsWith(path, mount.root)) {
    relative = path.substr(mount.root.size());
  } else if (mount.root != "/") {
    relative = "";
  }
  std::string dir = root + mount.mount_point;
  if (!relative.empty() && relative != "/") {
    const std::string candidate = dir + relative;
    if (ReadFile(candidate + "/cgroup.procs")) dir = candidate;
  }
  return dir;
}

std::optional<MemoryLimit> CgroupV2Limit(const std::string& root) {
  const std::optional<CgroupMount> mount = FindMount(root, "");
  const std::optional<std::string> path = CgroupPath(root, "");
  if (!mount || !path) return std::nullopt;
  std::string dir = CgroupDir(root, *mount, *path);
  const std::string top = root + mount->mount_point;
  std::optional<MemoryLimit> best;
  // Each ancestor's memory.max applies too; the hierarchy's root has none.
  while (true) {
    const std::string file = dir + "/memory.max";
    if (const std::optional<uint64_t> v = ReadLimit(file);
        v && (!best || *v < best->bytes)) {
      best = MemoryLimit{*v, "cgroup v2 " + file.substr(root.size())};
    }
    if (dir.size() <= top.size()) break;
    dir = dir.substr(0, dir.rfind('/'));
  }
  return best;
}

std::optional<MemoryLimit> CgroupV1Limit(const std::string& root) {
  const std::optional<CgroupMount> mount = FindMount(root, "memory");
  const std::optional<std::string> path = CgroupPath(root, "memory");
  if (!mount || !path) return std::nullopt;
  const std::string file = CgroupDir(root, *mount, *path) + "/memory.stat";
  const std::optional<uint64_t> v =
      ReadKeyedValue(file, "hierarchical_memory_limit ");
  if (!v || *v >= kNoLimit) return std::nullopt;
  return MemoryLimit{*v, "cgroup v1 " + file.substr(root.size()) +
                             " hierarchical_memory_limit"};
}

}  // namespace

absl::StatusOr<MemoryLimit> DetectMemoryLimit(const std::string& root) {
  if (std::optional<MemoryLimit> v2 = CgroupV2Limit(root)) return *v2;
  if (std::optional<MemoryLimit> v1 = CgroupV1Limit(root)) return *v1;
  const std::optional<uint64_t> total_kb =
      ReadKeyedValue(root + "/proc/meminfo", "MemTotal:");
  if (!total_kb) {
    return absl::UnavailableError(
        "cannot read /proc/meminfo to size the memory limit; set "
        "memory_limit_bytes");
  }
  return MemoryLimit{*total_kb * 1024 / 2,
                     "half of MemTotal (no cgroup memory limit)"};
}

uint64_t ResidentBytes() {
  return ReadKeyedValue("/proc/self/status", "VmRSS:").value_or(0) * 1024;
}

}  // namespace edge
