// AdaptivePolicy: decides which expert the cache evicts and how many bytes
// the cache may hold, from the stream of expert accesses.
//
// Why not plain LRU. An MoE forward pass visits its MoE layers in order and,
// in each, every expert the batch was routed to. With per-token routing a
// batch touches nearly every expert of every layer, so the access stream is
// a loop larger than the cache and LRU evicts exactly the expert needed
// next (hit rate ~0). With image routing and cameras that keep looking at
// the same scene the stream has strong recency instead, which LRU handles
// well. And where a few experts are simply more popular than the rest (the
// gateway's own token-routed traces), frequency wins. This policy therefore
// runs three rankings and follows whichever has been scoring best:
//
//   - LRU: evict the least recently used expert.
//   - Reuse prediction (an online approximation of Belady's MIN): for each
//     expert estimate when it is next needed: its smoothed reuse distance
//     (in passes of its layer) minus its age, or, once overdue, its age
//     again; new experts use the learned first-reuse distance. Convert to
//     "layer steps from now" so an expert of a layer that runs next in this
//     batch ranks before one of a layer that just ran, and evict the one
//     needed last. On a loop this keeps a stable subset (like MIN); on a
//     popularity-skewed stream it approximates LFU.
//   - Frequency: evict the expert with the fewest accesses, counted with
//     exponential decay (half-life `frequency_half_life_accesses`) so that
//     popularity drift is followed; ties go to the most recently used. A
//     newcomer counts 1 and is the next victim unless it comes back: the
//     admission filter of TinyLFU, without its sketch (a few hundred keys
//     are counted exactly).
//
// Every ranking protects experts announced for the pass in progress
// (BeginPass: the router's decision is known before the experts run) and
// not yet accessed by it.
//
// "Scoring better" is measured with shadow caches: key-only simulations of
// each ranking at the current capacity, fed the same accesses. The same
// shadows one step smaller and one step larger tell what a resize would
// cost or buy, which drives adaptive sizing:
//
//   every `resize_interval_accesses` at most, over the last
//   `window_accesses` accesses, comparing at each size the ranking whose
//   shadow scored best there:
//     grow                 if hit rate < grow_below and one step larger
//                          scored at least min_gain (fraction of the
//                          window) more hits; by step_bytes, doubled at
//                          each consecutive growth up to 4 * step_bytes,
//                          so a cache that starts small reaches a large
//                          working set in a few intervals;
//     shrink by step_bytes if hit rate > shrink_above and one step smaller
//                          lost at most max_loss.
//   Capacity stays within [min_bytes, max_bytes].
//
// So compulsory misses (every shadow misses them too) and a working set
// larger than max_bytes with nothing to gain (a larger shadow does no
// better) do not make the cache grow, and grow_below < shrink_above plus the
// minimum interval keep it from oscillating. Shadow state is a few hundred
// keys, so the bookkeeping is O(keys) per miss and O(1) per hit.
//
// Not thread-safe: ExpertCache calls it under its own mutex; cache_sim
// calls it from one thread.
#ifndef EDGE_CACHE_ADAPTIVE_POLICY_H_
#define EDGE_CACHE_ADAPTIVE_POLICY_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/expert_key.h"

namespace edge {

struct AdaptivePolicyOptions {
  // Hard upper limit on the capacity; > 0.
  uint64_t max_bytes = 0;
  // Lower limit and starting capacity: the cache grows from here only as
  // far as the shadows show that memory pays. Equal to max_bytes (or 0,
  // read as max_bytes) disables sizing.
  uint64_t min_bytes = 0;
  // Resize step; 0 picks max(largest expert seen, max_bytes / 16): one
  // expert is the smallest step that changes anything, 1/16 of the range
  // lets the cache cross it within a few intervals.
  uint64_t step_bytes = 0;
  // Hit-rate thresholds with a gap between them (hysteresis). 0.95 /
  // 0.98: an expert load costs several batches' worth of compute on an
  // edge box (tens of MB from flash), so while memory up to max_bytes
  // still buys hits it is worth taking; above 98% the last step of memory
  // is usually idle.
  double grow_below = 0.95;
  double shrink_above = 0.98;
  // Sliding window of the hit rate, in accesses. 512 is a few dozen
  // batches of a 2-8 layer MoE model: long enough to average over scene
  // changes, short enough to follow drift within seconds.
  int window_accesses = 512;
  // Minimum accesses between two resizes, so the shadows of the new size
  // have seen enough traffic before the next decision.
  int resize_interval_accesses = 256;
  // Growth must buy at least this fraction of the window in extra hits.
  // 0.5%: a step of one expert in a loop over 64 experts (vmoe-s32-e32)
  // buys 1/64 = 1.6%; compulsory misses and a working set beyond reach
  // buy exactly 0, so the threshold only has to clear sampling noise.
  double min_gain = 0.005;
  // Shrinking may lose at most this fraction of the window (0.5%).
  double max_loss = 0.005;
  // false: rank by LRU only (no reuse prediction, no shadows to follow).
  bool adaptive_ranking = true;
  // Weight of the newest reuse distance in an expert's smoothed distance.
  double reuse_smoothing = 0.5;
  // Half-life of the frequency ranking's access counts. 4096 accesses is
  // 8 windows: long enough that a popular expert outlives a burst of
  // newcomers, short enough to follow drift over a few hundred batches.
  int frequency_half_life_accesses = 4096;
};

struct ResizeEvent {
  int64_t access_index = 0;  // accesses seen when it happened.
  uint64_t from_bytes = 0;
  uint64_t to_bytes = 0;
  // e.g. "hit rate 0.620 < grow_below 0.950 and one step (8398848 bytes)
  // more would add 1.6% hits; growing 16797696 bytes".
  std::string reason;
  bool grew() const { return to_bytes > from_bytes; }
};

class AdaptivePolicy {
 public:
  enum class Ranking { kLru, kReuse, kFrequency };

  // REQUIRES: options.max_bytes > 0, min_bytes <= max_bytes,
  // grow_below <= shrink_above.
  explicit AdaptivePolicy(const AdaptivePolicyOptions& options);
  ~AdaptivePolicy();

  // A pass of MoE block `layer` is about to access `keys`.
  void BeginPass(int layer, const std::vector<ExpertKey>& keys);
  // `key` (of `bytes` bytes) was accessed; `hit` says whether the real
  // cache had it. Call before evicting on its behalf.
  void RecordAccess(const ExpertKey& key, uint64_t bytes, bool hit);
  // `key` became resident without an access (prefetch, warm-up): ranks it
  // as a new expert from now on, if it has no history.
  void NoteResident(const ExpertKey& key, uint64_t bytes);
  // Applies the sizing rule (class comment); returns the resize, if any.
  // The caller evicts down to the new capacity.
  std::optional<ResizeEvent> MaybeResize();

  // The entry of `evictable` (resident, unpinned) to evict first.
  // REQUIRES: !evictable.empty().
  ExpertKey ChooseVictim(const std::vector<ExpertKey>& evictable) const;
  // True if `key` is announced by a pass in progress and not yet accessed.
  bool IsAnnounced(const ExpertKey& key) const;

  uint64_t capacity_bytes() const { return capacity_bytes_; }
  const AdaptivePolicyOptions& options() const { return options_; }
  Ranking leader() const { return leader_; }
  // Hits / accesses over the last window_accesses (0 before any access).
  double window_hit_rate() const;
  int64_t accesses() const { return accesses_; }

 private:
  class Shadow;
  struct KeyStats {
    int64_t last_pass = 0;     // pass number (of its layer) last accessed.
    int64_t last_access = 0;   // global access index, for LRU order.
    double reuse_passes = -1;  // smoothed reuse distance; < 0: unknown.
    double frequency = 0;      // decayed access count as of last_access.
  };

  // Lower is evicted later. Lexicographic: (predicted steps, recency).
  std::pair<double, int64_t> EvictionRank(Ranking ranking,
                                          const ExpertKey& key) const;
  // stats.frequency decayed to now.
  double DecayedFrequency(const KeyStats& stats) const;
  void AddLayer(int layer);
  void NoteBytes(const ExpertKey& key, uint64_t bytes);
  void RebuildShadows();
  int WindowHits(int shadow) const;

  const AdaptivePolicyOptions options_;
  uint64_t capacity_bytes_;
  uint64_t step_bytes_;
  // LRU until the shadows show reuse prediction doing better.
  Ranking leader_ = Ranking::kLru;

  std::unordered_map<ExpertKey, KeyStats, ExpertKeyHash> keys_;
  std::unordered_map<ExpertKey, uint64_t, ExpertKeyHash> bytes_;
  std::unordered_map<int, int64_t> passes_;  // passes begun, per layer.
  std::vector<int> layer_order_;             // layers in first-seen order.
  int current_layer_ = -1;
  // Announced for the pass in progress and not accessed yet, with counts
  // (concurrent batches may announce the same expert).
  std::unordered_map<ExpertKey, int, ExpertKeyHash> announced_;
  double first_reuse_passes_ = 4;  // learned prior for new experts.

  int64_t accesses_ = 0;
  int64_t last_resize_access_ = 0;
  int grow_streak_ = 0;  // consecutive growths, for the step doubling
  // Per access in the window: bit 0 the real cache's hit, bit 1 + s
  // shadow s's hit. Shadows: [ranking][size], size 0/1/2 = -step/0/+step.
  std::deque<uint16_t> window_;
  std::vector<int> window_hits_;  // per bit
  std::vector<std::unique_ptr<Shadow>> shadows_;
};

}  // namespace edge

#endif  // EDGE_CACHE_ADAPTIVE_POLICY_H_
