// SimulatedCache: the common interface of the replacement policies cache_sim
// compares (lru_sim.h, s3fifo_sim.h, belady_sim.h, adaptive_sim.h). A
// simulated cache holds keys and their byte sizes only, no data.
//
// Every policy loads on a miss (demand paging): the requested expert always
// enters the cache unless it alone is larger than the capacity, and
// evictions make room for it first. So bytes_loaded is the bytes of the
// misses, and Belady's MIN is an upper bound on every policy's hits at the
// same capacity (exact for equal-sized experts, cache/sim/belady_sim.h).
//
// Not thread-safe; one replay per object.
#ifndef EDGE_CACHE_SIM_SIMULATED_CACHE_H_
#define EDGE_CACHE_SIM_SIMULATED_CACHE_H_

#include <cstdint>
#include <vector>

#include "cache/access_trace.h"

namespace edge::sim {

struct SimCounters {
  int64_t accesses = 0;
  int64_t hits = 0;
  uint64_t bytes_loaded = 0;  // sum of the missed experts' bytes.
  int64_t evictions = 0;
  uint64_t resident_bytes = 0;
  uint64_t peak_bytes = 0;  // max resident_bytes, after each insertion.

  double hit_rate() const {
    return accesses == 0 ? 0.0 : static_cast<double>(hits) / accesses;
  }
};

class SimulatedCache {
 public:
  virtual ~SimulatedCache() = default;

  // Serves access number `index` of the trace. REQUIRES: indices start at
  // 0 and grow by one per call (offline policies look ahead by index).
  // Returns true on a hit.
  virtual bool Access(int64_t index, const ExpertAccess& access) = 0;

  const SimCounters& counters() const { return counters_; }

 protected:
  void CountAccess(bool hit, uint64_t bytes) {
    ++counters_.accesses;
    if (hit) {
      ++counters_.hits;
    } else {
      counters_.bytes_loaded += bytes;
    }
  }
  void CountInsert(uint64_t bytes) {
    counters_.resident_bytes += bytes;
    if (counters_.resident_bytes > counters_.peak_bytes) {
      counters_.peak_bytes = counters_.resident_bytes;
    }
  }
  void CountEvict(uint64_t bytes) {
    counters_.resident_bytes -= bytes;
    ++counters_.evictions;
  }

 private:
  SimCounters counters_;
};

// Feeds the whole trace to `cache` in order; returns its counters.
inline SimCounters Replay(const std::vector<ExpertAccess>& trace,
                          SimulatedCache* cache) {
  for (size_t i = 0; i < trace.size(); ++i) {
    cache->Access(static_cast<int64_t>(i), trace[i]);
  }
  return cache->counters();
}

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_SIMULATED_CACHE_H_
