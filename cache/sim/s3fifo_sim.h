// S3FifoSim: S3-FIFO (Yang et al., "FIFO queues are all you need for cache
// eviction", SOSP 2023), a recent policy that beats LRU on skewed
// workloads, as cache_sim's "modern policy" reference.
//
// Three FIFO queues: small S (10% of the capacity), main M (the rest) and
// a ghost G of keys recently evicted from S (no data; as many bytes of
// keys as M's share). A missed key enters M if it is in G (it was evicted
// from S too early), else S. A hit increments the key's counter, capped at
// 3. Eviction, while the new key does not fit: from S if S holds at least
// its share (or M is empty), else from M.
//   S: the oldest key moves to M if it was hit while in S (counter >= 1,
//      libCacheSim's default move-to-main threshold), else leaves for G.
//   M: the oldest key with counter > 0 is reinserted with counter - 1
//      (CLOCK-like second chances), one with counter 0 is evicted.
// Sizes are bytes, so with the budgets of MoE experts (a few to a few
// dozen) S's share may be smaller than one expert: S then holds at most
// the newest expert, a one-entry probation.
#ifndef EDGE_CACHE_SIM_S3FIFO_SIM_H_
#define EDGE_CACHE_SIM_S3FIFO_SIM_H_

#include <list>
#include <unordered_map>

#include "cache/sim/simulated_cache.h"

namespace edge::sim {

class S3FifoSim final : public SimulatedCache {
 public:
  explicit S3FifoSim(uint64_t capacity_bytes);

  bool Access(int64_t index, const ExpertAccess& access) override;

 private:
  enum class Queue { kSmall, kMain };
  struct Entry {
    uint64_t bytes = 0;
    int freq = 0;  // hits since it entered its queue, capped at 3.
  };
  struct Fifo {
    std::list<ExpertKey> keys;  // oldest first.
    uint64_t bytes = 0;
  };

  void EvictOne();
  // Empties S until one key was evicted (true) or S is empty (false).
  bool EvictFromSmall();
  void EvictFromMain();
  void Push(Queue queue, const ExpertKey& key, uint64_t bytes);
  void Remember(const ExpertKey& key, uint64_t bytes);  // into the ghost.
  // True if `key` was in the ghost (and takes it out).
  bool Forget(const ExpertKey& key);

  const uint64_t capacity_bytes_;
  const uint64_t small_bytes_;  // S's share.
  Fifo small_, main_, ghost_;
  std::unordered_map<ExpertKey, Entry, ExpertKeyHash> entries_;
  struct Ghost {
    std::list<ExpertKey>::iterator position;
    uint64_t bytes = 0;
  };
  std::unordered_map<ExpertKey, Ghost, ExpertKeyHash> ghosts_;
};

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_S3FIFO_SIM_H_
