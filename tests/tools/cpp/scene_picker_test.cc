// Tests of the camera/scene popularity model shared by edge-loadtest and
// the expert trace generator.
#include "tools/cpp/scene_picker.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"

namespace edge {
namespace {

TEST(ZipfCdfTest, FollowsThePowerLaw) {
  const std::vector<double> cdf = ZipfCdf(4, 1.0);
  // Weights 1, 1/2, 1/3, 1/4 over their sum 25/12.
  EXPECT_NEAR(cdf[0], 12.0 / 25, 1e-12);
  EXPECT_NEAR(cdf[1] - cdf[0], 6.0 / 25, 1e-12);
  EXPECT_NEAR(cdf[2] - cdf[1], 4.0 / 25, 1e-12);
  EXPECT_EQ(cdf[3], 1.0);
  const std::vector<double> uniform = ZipfCdf(5, 0);
  for (int r = 0; r < 5; ++r) EXPECT_NEAR(uniform[r], (r + 1) / 5.0, 1e-12);
}

TEST(ZipfCdfTest, DrawRankMatchesTheCdf) {
  const std::vector<double> cdf = ZipfCdf(8, 1.2);
  std::mt19937_64 rng = MakeClientRng(7, 0);
  std::vector<int> counts(8);
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) ++counts[DrawRank(cdf, rng)];
  double previous = 0;
  for (int r = 0; r < 8; ++r) {
    // 5 standard deviations of a binomial with p <= 0.5 at 1e5 draws: 0.008.
    EXPECT_NEAR(counts[r] / double{kDraws}, cdf[r] - previous, 0.008) << r;
    previous = cdf[r];
  }
}

TEST(ScenePickerTest, IsReproducibleAndFavoursEachCamerasHome) {
  ScenePickerOptions options;
  options.scenes = 16;
  options.zipf_alpha = 3;  // Steep: the home scene dominates.
  options.clients = 4;
  const ScenePicker picker(options);
  std::set<int> favourites;
  for (int camera = 0; camera < 4; ++camera) {
    std::mt19937_64 a = MakeClientRng(1, camera), b = MakeClientRng(1, camera);
    std::map<int, int> counts;
    for (int i = 0; i < 1000; ++i) {
      const int scene = picker.Pick(camera, 0, a);
      EXPECT_EQ(scene, picker.Pick(camera, 0, b));
      ++counts[scene];
    }
    auto top = std::max_element(
        counts.begin(), counts.end(),
        [](const auto& x, const auto& y) { return x.second < y.second; });
    EXPECT_GT(top->second, 700);  // 1 / zeta(3) = 83% at rank 0.
    favourites.insert(top->first);
  }
  EXPECT_EQ(favourites.size(), 4u);
}

TEST(ScenePickerTest, DriftMovesTheHotSet) {
  ScenePickerOptions options;
  options.scenes = 64;
  options.zipf_alpha = 5;
  options.drift_period_s = 1;
  options.horizon_s = 10;
  const ScenePicker picker(options);
  EXPECT_EQ(picker.Period(0.5), 0);
  EXPECT_EQ(picker.Period(3.2), 3);
  EXPECT_EQ(picker.Period(99), 10);  // Past the horizon: the last ranking.
  std::mt19937_64 rng = MakeClientRng(1, 0);
  std::set<int> hot;
  for (double t = 0.5; t < 10; t += 1) hot.insert(picker.Pick(0, t, rng));
  EXPECT_GT(hot.size(), 5u);
}

}  // namespace
}  // namespace edge
