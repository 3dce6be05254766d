// Small hand-written traces for the simulated caches' tests. Header-only.
#ifndef EDGE_TESTS_CACHE_SIM_SIM_TRACES_H_
#define EDGE_TESTS_CACHE_SIM_SIM_TRACES_H_

#include <cstdint>
#include <vector>

#include "cache/access_trace.h"
#include "cache/sim/simulated_cache.h"

namespace edge::sim::testing {

// Every expert of layer 0, `bytes` each, one pass per access.
inline std::vector<ExpertAccess> Trace(const std::vector<int>& experts,
                                       uint64_t bytes = 1) {
  std::vector<ExpertAccess> trace;
  for (size_t i = 0; i < experts.size(); ++i) {
    ExpertAccess a;
    a.time_us = static_cast<int64_t>(i);
    a.pass = static_cast<int64_t>(i);
    a.key = ExpertKey{0, experts[i]};
    a.bytes = bytes;
    trace.push_back(a);
  }
  return trace;
}

// `rounds` passes over experts 0..n-1 in order.
inline std::vector<ExpertAccess> Loop(int n, int rounds, uint64_t bytes = 1) {
  std::vector<int> experts;
  for (int r = 0; r < rounds; ++r) {
    for (int e = 0; e < n; ++e) experts.push_back(e);
  }
  return Trace(experts, bytes);
}

// Replays and returns the hits; checks capacity at every access.
inline int64_t Hits(const std::vector<ExpertAccess>& trace,
                    SimulatedCache* cache, uint64_t capacity_bytes) {
  for (size_t i = 0; i < trace.size(); ++i) {
    cache->Access(static_cast<int64_t>(i), trace[i]);
    if (cache->counters().resident_bytes > capacity_bytes) return -1;
  }
  return cache->counters().hits;
}

}  // namespace edge::sim::testing

#endif  // EDGE_TESTS_CACHE_SIM_SIM_TRACES_H_
