#include "cache/adaptive_policy.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

#include "absl/strings/str_format.h"

namespace edge {
namespace {

constexpr int kRankings = 3;
constexpr int kSizes = 3;  // capacity - step, capacity, capacity + step
constexpr int kSmaller = 0, kCurrent = 1, kLarger = 2;

int ShadowIndex(AdaptivePolicy::Ranking ranking, int size) {
  return static_cast<int>(ranking) * kSizes + size;
}

// Bit 0 of a window entry is the real cache's hit; bit 1 + s shadow s's.
constexpr uint16_t kRealBit = 1;
uint16_t ShadowBit(int shadow) { return static_cast<uint16_t>(2u << shadow); }
static_assert(1 + kRankings * kSizes <= 16, "window bits must fit");

// Weight of one new reuse distance in the learned first-reuse prior; 0.1
// averages over the last ~10 new experts.
constexpr double kPriorSmoothing = 0.1;
// The leader changes only when another ranking leads it by more than this
// fraction of the window, so near-ties do not flip it every access.
constexpr double kLeaderMargin = 0.01;
// Growth steps double per consecutive growth up to 1 << this.
constexpr int kMaxGrowShift = 2;

}  // namespace

// A key-only simulation of one ranking at one capacity.
class AdaptivePolicy::Shadow {
 public:
  Shadow(const AdaptivePolicy* policy, Ranking ranking, uint64_t capacity)
      : policy_(policy), ranking_(ranking), capacity_(capacity) {}

  // True on a hit; on a miss inserts `key`, evicting by the ranking.
  bool Access(const ExpertKey& key, uint64_t bytes) {
    if (keys_.count(key) != 0) return true;
    while (!keys_.empty() && used_ + bytes > capacity_) EvictOne();
    keys_.emplace(key, bytes);
    used_ += bytes;
    return false;
  }

  void SetCapacity(uint64_t capacity) {
    capacity_ = capacity;
    while (used_ > capacity_ && !keys_.empty()) EvictOne();
  }
  void CopyContents(const Shadow& other) {
    keys_ = other.keys_;
    used_ = other.used_;
    SetCapacity(capacity_);
  }
  uint64_t capacity() const { return capacity_; }

 private:
  void EvictOne() {
    auto victim = keys_.begin();
    auto worst = policy_->EvictionRank(ranking_, victim->first);
    for (auto it = std::next(keys_.begin()); it != keys_.end(); ++it) {
      const auto rank = policy_->EvictionRank(ranking_, it->first);
      if (rank > worst) worst = rank, victim = it;
    }
    used_ -= victim->second;
    keys_.erase(victim);
  }

  const AdaptivePolicy* const policy_;
  const Ranking ranking_;
  uint64_t capacity_;
  std::unordered_map<ExpertKey, uint64_t, ExpertKeyHash> keys_;
  uint64_t used_ = 0;
};

AdaptivePolicy::AdaptivePolicy(const AdaptivePolicyOptions& options)
    : options_(options),
      capacity_bytes_(options.min_bytes == 0 ? options.max_bytes
                                             : options.min_bytes),
      window_hits_(1 + kRankings * kSizes, 0) {
  assert(options.max_bytes > 0);
  assert(options.min_bytes <= options.max_bytes);
  assert(options.grow_below <= options.shrink_above);
  for (int r = 0; r < kRankings; ++r) {
    for (int s = 0; s < kSizes; ++s) {
      shadows_.push_back(std::make_unique<Shadow>(this, static_cast<Ranking>(r),
                                                  options.max_bytes));
    }
  }
  RebuildShadows();
}

AdaptivePolicy::~AdaptivePolicy() = default;

void AdaptivePolicy::BeginPass(int layer, const std::vector<ExpertKey>& keys) {
  if (passes_.count(layer) == 0) AddLayer(layer);
  ++passes_[layer];
  current_layer_ = layer;
  for (const ExpertKey& key : keys) ++announced_[key];
}

// The automatic step is at least the largest expert seen (a smaller step
// changes nothing), so it is recomputed when a larger expert appears.
void AdaptivePolicy::NoteBytes(const ExpertKey& key, uint64_t bytes) {
  uint64_t& known = bytes_[key];
  known = std::max(known, bytes);
  if (options_.step_bytes == 0 && bytes > step_bytes_) RebuildShadows();
}

void AdaptivePolicy::AddLayer(int layer) {
  layer_order_.insert(
      std::upper_bound(layer_order_.begin(), layer_order_.end(), layer), layer);
  passes_[layer] = 0;
  if (current_layer_ < 0) current_layer_ = layer;
}

bool AdaptivePolicy::IsAnnounced(const ExpertKey& key) const {
  const auto it = announced_.find(key);
  return it != announced_.end() && it->second > 0;
}

void AdaptivePolicy::RecordAccess(const ExpertKey& key, uint64_t bytes,
                                  bool hit) {
  if (passes_.count(key.layer) == 0) AddLayer(key.layer);
  NoteBytes(key, bytes);
  uint16_t bits = hit ? kRealBit : 0;
  for (size_t s = 0; s < shadows_.size(); ++s) {
    if (shadows_[s]->Access(key, bytes)) bits |= ShadowBit(s);
  }
  window_.push_back(bits);
  for (size_t b = 0; b < window_hits_.size(); ++b) {
    window_hits_[b] += (bits >> b) & 1;
  }
  if (static_cast<int>(window_.size()) > options_.window_accesses) {
    for (size_t b = 0; b < window_hits_.size(); ++b) {
      window_hits_[b] -= (window_.front() >> b) & 1;
    }
    window_.pop_front();
  }

  // Statistics after the shadows, which ranked the other keys as of before
  // this access.
  const int64_t pass = passes_[key.layer];
  auto [it, first_access] = keys_.try_emplace(key);
  KeyStats& stats = it->second;
  if (!first_access) {
    const double distance = static_cast<double>(pass - stats.last_pass);
    if (distance > 0) {
      if (stats.reuse_passes < 0) {
        stats.reuse_passes = distance;
        first_reuse_passes_ +=
            kPriorSmoothing * (distance - first_reuse_passes_);
      } else {
        stats.reuse_passes +=
            options_.reuse_smoothing * (distance - stats.reuse_passes);
      }
    }
  }
  stats.frequency = DecayedFrequency(stats) + 1;
  stats.last_pass = pass;
  stats.last_access = accesses_++;
  const auto announced = announced_.find(key);
  if (announced != announced_.end() && --announced->second <= 0) {
    announced_.erase(announced);
  }

  if (!options_.adaptive_ranking) return;
  // Hits at the current size decide; on a tie (e.g. both 0 in a loop one
  // expert too large) the hits one step larger, where the better ranking
  // shows first.
  const auto score = [this](Ranking r) {
    return std::make_pair(WindowHits(ShadowIndex(r, kCurrent)),
                          WindowHits(ShadowIndex(r, kLarger)));
  };
  const int margin = static_cast<int>(kLeaderMargin * window_.size());
  const auto ahead = [margin](std::pair<int, int> a, std::pair<int, int> b) {
    return a.first > b.first + margin ||
           (a.first == b.first && a.second > b.second + margin);
  };
  // The best ranking that leads the current leader by the margin, if any.
  Ranking next = leader_;
  for (int r = 0; r < kRankings; ++r) {
    const Ranking candidate = static_cast<Ranking>(r);
    if (ahead(score(candidate), score(leader_)) &&
        (next == leader_ || score(candidate) > score(next))) {
      next = candidate;
    }
  }
  leader_ = next;
}

double AdaptivePolicy::DecayedFrequency(const KeyStats& stats) const {
  const double age = static_cast<double>(accesses_ - stats.last_access);
  return stats.frequency *
         std::exp2(-age / options_.frequency_half_life_accesses);
}

void AdaptivePolicy::NoteResident(const ExpertKey& key, uint64_t bytes) {
  if (passes_.count(key.layer) == 0) AddLayer(key.layer);
  NoteBytes(key, bytes);
  auto [it, inserted] = keys_.try_emplace(key);
  if (!inserted) return;
  it->second.last_pass = passes_[key.layer];
  it->second.last_access = accesses_;
}

std::pair<double, int64_t> AdaptivePolicy::EvictionRank(
    Ranking ranking, const ExpertKey& key) const {
  constexpr double kKeep = -std::numeric_limits<double>::infinity();
  const KeyStats& stats = keys_.at(key);
  if (IsAnnounced(key)) return {kKeep, 0};
  if (ranking == Ranking::kLru)
    return {-static_cast<double>(stats.last_access), 0};
  if (ranking == Ranking::kFrequency) {
    // Fewest (decayed) accesses first; ties to the most recently used, which
    // keeps a stable subset of equally popular experts.
    return {-DecayedFrequency(stats), stats.last_access};
  }

  // Passes of its layer until the expert is predicted to be needed again.
  const double age =
      static_cast<double>(passes_.at(key.layer) - stats.last_pass);
  const double reuse =
      stats.reuse_passes >= 0 ? stats.reuse_passes : first_reuse_passes_;
  double passes_ahead = age < reuse ? reuse - age : age + 1;
  // Layer steps from the current layer to the key's next pass: a layer
  // later in this batch is reached before the current layer comes round.
  const auto position = [this](int layer) {
    return std::lower_bound(layer_order_.begin(), layer_order_.end(), layer) -
           layer_order_.begin();
  };
  const int layers = static_cast<int>(layer_order_.size());
  const int offset = static_cast<int>(
      (position(key.layer) - position(current_layer_) + layers) % layers);
  if (offset > 0) passes_ahead -= 1;
  const double steps = passes_ahead * layers + (offset == 0 ? layers : offset);
  // Ties (a loop: every expert reused every pass) go to the most recently
  // used, which keeps a stable subset resident as MIN does.
  return {steps, stats.last_access};
}

ExpertKey AdaptivePolicy::ChooseVictim(
    const std::vector<ExpertKey>& evictable) const {
  assert(!evictable.empty());
  const ExpertKey* victim = &evictable.front();
  auto worst = EvictionRank(leader_, *victim);
  for (const ExpertKey& key : evictable) {
    const auto rank = EvictionRank(leader_, key);
    if (rank > worst) worst = rank, victim = &key;
  }
  return *victim;
}

double AdaptivePolicy::window_hit_rate() const {
  if (window_.empty()) return 0;
  return static_cast<double>(window_hits_[0]) / window_.size();
}

int AdaptivePolicy::WindowHits(int shadow) const {
  return window_hits_[1 + shadow];
}

std::optional<ResizeEvent> AdaptivePolicy::MaybeResize() {
  const uint64_t min_bytes =
      options_.min_bytes == 0 ? options_.max_bytes : options_.min_bytes;
  if (min_bytes >= options_.max_bytes) return std::nullopt;
  const int64_t since = accesses_ - last_resize_access_;
  const int window = static_cast<int>(window_.size());
  if (since < options_.resize_interval_accesses ||
      window < options_.resize_interval_accesses) {
    return std::nullopt;
  }
  // Shadow hits count only since the last resize (RebuildShadows clears
  // them), so `since` bounds the sample.
  const double sample = static_cast<double>(std::min<int64_t>(since, window));
  // What a resize would buy or cost with the best ranking at each size
  // (the leader follows within a window).
  const auto best = [this](int size) {
    int hits = WindowHits(ShadowIndex(Ranking::kLru, size));
    if (!options_.adaptive_ranking) return hits;
    for (Ranking r : {Ranking::kReuse, Ranking::kFrequency}) {
      hits = std::max(hits, WindowHits(ShadowIndex(r, size)));
    }
    return hits;
  };
  const double gain = (best(kLarger) - best(kCurrent)) / sample;
  const double loss = (best(kCurrent) - best(kSmaller)) / sample;
  const double hit_rate = window_hit_rate();
  ResizeEvent event;
  event.access_index = accesses_;
  event.from_bytes = capacity_bytes_;
  if (hit_rate < options_.grow_below && capacity_bytes_ < options_.max_bytes &&
      gain >= options_.min_gain) {
    // Consecutive growths double the step (up to 4x), so a cache that
    // starts small reaches a large working set in a few intervals instead
    // of losing hits for one interval per step.
    const uint64_t steps = uint64_t{1} << std::min(grow_streak_, kMaxGrowShift);
    event.to_bytes =
        std::min(options_.max_bytes, capacity_bytes_ + steps * step_bytes_);
    event.reason = absl::StrFormat(
        "hit rate %.3f < grow_below %.3f and one step (%d bytes) more would "
        "add %.1f%% hits; growing %d bytes",
        hit_rate, options_.grow_below, step_bytes_, 100 * gain,
        event.to_bytes - event.from_bytes);
    ++grow_streak_;
  } else if (hit_rate > options_.shrink_above && capacity_bytes_ > min_bytes &&
             loss <= options_.max_loss) {
    event.to_bytes = std::max(
        min_bytes, capacity_bytes_ - std::min(capacity_bytes_, step_bytes_));
    event.reason = absl::StrFormat(
        "hit rate %.3f > shrink_above %.3f and -%d bytes would cost %.1f%% "
        "hits",
        hit_rate, options_.shrink_above, event.from_bytes - event.to_bytes,
        100 * loss);
    grow_streak_ = 0;
  } else {
    grow_streak_ = 0;
    return std::nullopt;
  }
  capacity_bytes_ = event.to_bytes;
  last_resize_access_ = accesses_;
  RebuildShadows();
  return event;
}

// Points the shadows at capacity - step, capacity, capacity + step (within
// [0, max_bytes]); the current-size shadow keeps the contents of the shadow
// nearest its new size, and shadow hit counts restart.
void AdaptivePolicy::RebuildShadows() {
  uint64_t largest = 0;
  for (const auto& [key, bytes] : bytes_) largest = std::max(largest, bytes);
  step_bytes_ = options_.step_bytes > 0
                    ? options_.step_bytes
                    : std::max<uint64_t>({largest, options_.max_bytes / 16, 1});
  const uint64_t sizes[kSizes] = {
      capacity_bytes_ - std::min(capacity_bytes_, step_bytes_), capacity_bytes_,
      std::min(options_.max_bytes, capacity_bytes_ + step_bytes_)};
  for (int r = 0; r < kRankings; ++r) {
    Shadow* nearest[kSizes];
    for (int s = 0; s < kSizes; ++s) {
      // The old shadow whose capacity is closest to the new size s.
      Shadow* best = nullptr;
      for (int o = 0; o < kSizes; ++o) {
        Shadow* old = shadows_[ShadowIndex(static_cast<Ranking>(r), o)].get();
        const auto distance = [&](const Shadow* x) {
          return x->capacity() > sizes[s] ? x->capacity() - sizes[s]
                                          : sizes[s] - x->capacity();
        };
        if (best == nullptr || distance(old) < distance(best)) best = old;
      }
      nearest[s] = best;
    }
    std::vector<std::unique_ptr<Shadow>> rebuilt;
    for (int s = 0; s < kSizes; ++s) {
      auto shadow =
          std::make_unique<Shadow>(this, static_cast<Ranking>(r), sizes[s]);
      shadow->CopyContents(*nearest[s]);
      rebuilt.push_back(std::move(shadow));
    }
    for (int s = 0; s < kSizes; ++s) {
      shadows_[ShadowIndex(static_cast<Ranking>(r), s)] = std::move(rebuilt[s]);
    }
  }
  for (uint16_t& bits : window_) bits &= kRealBit;
  std::fill(window_hits_.begin() + 1, window_hits_.end(), 0);
}

}  // namespace edge
