#include "tools/cpp/scene_picker.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tools/cpp/random.h"

namespace edge {
namespace {

// Tags the ranking streams so they never coincide with a client's stream
// (both are derived from the same --seed).
constexpr uint64_t kRankingStream = 0x52414e4b494e4721ull;  // "RANKING!"

std::vector<int> ShuffledRanking(int scenes, uint64_t seed, int period) {
  std::vector<int> ranking(scenes);
  std::iota(ranking.begin(), ranking.end(), 0);
  std::mt19937_64 rng(SplitMix64(SplitMix64(seed ^ kRankingStream) + period));
  Shuffle(ranking, rng);
  return ranking;
}

}  // namespace

std::vector<double> ZipfCdf(int n, double alpha) {
  std::vector<double> cdf(n);
  double total = 0;
  for (int r = 0; r < n; ++r) {
    total += std::pow(r + 1.0, -alpha);
    cdf[r] = total;
  }
  for (double& p : cdf) p /= total;
  cdf.back() = 1.0;  // No rounding gap at the top.
  return cdf;
}

int DrawRank(const std::vector<double>& cdf, std::mt19937_64& rng) {
  const double u = UnitInterval(rng);
  const int rank = static_cast<int>(
      std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
  return std::min(rank, static_cast<int>(cdf.size()) - 1);
}

ScenePicker::ScenePicker(const ScenePickerOptions& options)
    : options_(options),
      rank_cdf_(ZipfCdf(options.scenes, options.zipf_alpha)) {
  const int periods =
      options.drift_period_s > 0
          ? 1 + static_cast<int>(options.horizon_s / options.drift_period_s)
          : 1;
  for (int p = 0; p < periods; ++p) {
    rankings_.push_back(ShuffledRanking(options.scenes, options.seed, p));
  }
}

int ScenePicker::Period(double elapsed_s) const {
  if (options_.drift_period_s <= 0 || elapsed_s <= 0) return 0;
  const double period = std::floor(elapsed_s / options_.drift_period_s);
  return static_cast<int>(
      std::min(period, static_cast<double>(rankings_.size() - 1)));
}

int ScenePicker::HomeOffset(int client) const {
  // Evenly spread: with more clients than scenes, several share a home.
  return static_cast<int>(static_cast<int64_t>(client) * options_.scenes /
                          options_.clients);
}

int ScenePicker::Pick(int client, double elapsed_s,
                      std::mt19937_64& rng) const {
  const int rank = DrawRank(rank_cdf_, rng);
  const std::vector<int>& ranking = rankings_[Period(elapsed_s)];
  return ranking[(rank + HomeOffset(client)) % options_.scenes];
}

std::mt19937_64 MakeClientRng(uint64_t seed, int client) {
  return std::mt19937_64(SplitMix64(seed + static_cast<uint64_t>(client)));
}

}  // namespace edge
