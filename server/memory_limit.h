// The memory the gateway may use, and what it is now using.
//
// An edge box runs the gateway under a hard limit: a container's cgroup
// (docker-compose `mem_limit`, a Kubernetes pod's `resources.limits.memory`)
// whose OOM killer ends the process the moment it goes over. The gateway
// reads that limit at start-up and derives from it what it admits
// (server/memory_budget.h), so that a burst is refused or made to wait
// instead of killing the process.
//
// Where the limit comes from, first match wins:
//   1. cgroup v2: memory.max of the process's cgroup and of each ancestor
//      up to the hierarchy's root (the smallest wins: a parent's limit
//      applies to its children), found through /proc/self/cgroup ("0::/p")
//      and the cgroup2 mount in /proc/self/mountinfo;
//   2. cgroup v1: memory.stat's hierarchical_memory_limit of the process's
//      memory cgroup (the kernel already folds the ancestors' limits in);
//   3. no limit set ("max", or v1's 2^63 rounded to a page): half of
//      MemTotal from /proc/meminfo. Half, because a box without a cgroup
//      limit still runs other things (the camera agents, the OS): the JVM's
//      default heap takes a quarter, Kubernetes' eviction thresholds leave
//      10-15%; half keeps a single-purpose box useful without claiming it.
//
// Thread-safety: pure functions; `root` lets tests point them at a fake
// /proc and /sys tree.
#ifndef EDGE_SERVER_MEMORY_LIMIT_H_
#define EDGE_SERVER_MEMORY_LIMIT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace edge {

struct MemoryLimit {
  uint64_t bytes = 0;
  // Where `bytes` came from, for the start-up log: a file path and what it
  // said ("cgroup v2 /sys/fs/cgroup/x/memory.max"), or "half of MemTotal".
  std::string source;
};

// The limit as described above. UNAVAILABLE if not even /proc/meminfo can
// be read. `root` prefixes every path ("" = the real file system).
absl::StatusOr<MemoryLimit> DetectMemoryLimit(const std::string& root = "");

// The process's resident set size now (VmRSS of /proc/self/status), 0 if
// it cannot be read.
uint64_t ResidentBytes();

}  // namespace edge

#endif  // EDGE_SERVER_MEMORY_LIMIT_H_
