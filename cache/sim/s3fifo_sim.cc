#include "cache/sim/s3fifo_sim.h"

#include <algorithm>

namespace edge::sim {
namespace {

// The paper's S share: 10% of the cache, chosen on its traces.
constexpr uint64_t kSmallShareDivisor = 10;
// Counters are two bits.
constexpr int kMaxFreq = 3;

}  // namespace

S3FifoSim::S3FifoSim(uint64_t capacity_bytes)
    : capacity_bytes_(capacity_bytes),
      small_bytes_(capacity_bytes / kSmallShareDivisor) {}

bool S3FifoSim::Access(int64_t, const ExpertAccess& access) {
  auto it = entries_.find(access.key);
  const bool hit = it != entries_.end();
  CountAccess(hit, access.bytes);
  if (hit) {
    it->second.freq = std::min(it->second.freq + 1, kMaxFreq);
    return true;
  }
  if (access.bytes > capacity_bytes_) return false;
  while (counters().resident_bytes + access.bytes > capacity_bytes_) {
    EvictOne();
  }
  entries_[access.key] = Entry{access.bytes, 0};
  Push(Forget(access.key) ? Queue::kMain : Queue::kSmall, access.key,
       access.bytes);
  CountInsert(access.bytes);
  return false;
}

void S3FifoSim::EvictOne() {
  const bool small_first = !small_.keys.empty() &&
                           (small_.bytes >= small_bytes_ || main_.keys.empty());
  if (small_first && EvictFromSmall()) return;
  EvictFromMain();
}

bool S3FifoSim::EvictFromSmall() {
  while (!small_.keys.empty()) {
    const ExpertKey key = small_.keys.front();
    small_.keys.pop_front();
    Entry& entry = entries_[key];
    small_.bytes -= entry.bytes;
    if (entry.freq >= 1) {
      entry.freq = 0;
      Push(Queue::kMain, key, entry.bytes);
      continue;
    }
    Remember(key, entry.bytes);
    CountEvict(entry.bytes);
    entries_.erase(key);
    return true;
  }
  return false;
}

void S3FifoSim::EvictFromMain() {
  // Terminates: every pass over a key lowers its counter.
  while (true) {
    const ExpertKey key = main_.keys.front();
    main_.keys.pop_front();
    Entry& entry = entries_[key];
    if (entry.freq > 0) {
      --entry.freq;
      main_.keys.push_back(key);
      continue;
    }
    main_.bytes -= entry.bytes;
    CountEvict(entry.bytes);
    entries_.erase(key);
    return;
  }
}

void S3FifoSim::Push(Queue queue, const ExpertKey& key, uint64_t bytes) {
  Fifo& fifo = queue == Queue::kSmall ? small_ : main_;
  fifo.keys.push_back(key);
  fifo.bytes += bytes;
}

void S3FifoSim::Remember(const ExpertKey& key, uint64_t bytes) {
  ghost_.keys.push_back(key);
  ghost_.bytes += bytes;
  ghosts_[key] = Ghost{std::prev(ghost_.keys.end()), bytes};
  // The ghost remembers as many bytes of keys as M's share holds.
  while (ghost_.bytes > capacity_bytes_ - small_bytes_) {
    const ExpertKey oldest = ghost_.keys.front();
    ghost_.bytes -= ghosts_[oldest].bytes;
    ghosts_.erase(oldest);
    ghost_.keys.pop_front();
  }
}

bool S3FifoSim::Forget(const ExpertKey& key) {
  auto it = ghosts_.find(key);
  if (it == ghosts_.end()) return false;
  ghost_.bytes -= it->second.bytes;
  ghost_.keys.erase(it->second.position);
  ghosts_.erase(it);
  return true;
}

}  // namespace edge::sim
