// Tests of the synthetic trace generator: determinism, the trace's
// structure, and the statistics of its model (Zipf scene popularity, dwell,
// drift, expert skew, token routing) against their formulas.
#include "cache/sim/trace_generator.h"

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "cache/sim/internal/camera_fleet.h"
#include "cache/sim/internal/synthetic_router.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_model.h"
#include "tools/cpp/scene_picker.h"

namespace edge {
namespace {

TraceGeneratorOptions Small() {
  TraceGeneratorOptions o;
  o.batches = 300;
  return o;
}

// P(rank r) of Zipf(alpha) over n ranks.
std::vector<double> ZipfPmf(int n, double alpha) {
  const std::vector<double> cdf = ZipfCdf(n, alpha);
  std::vector<double> pmf(n);
  for (int r = 0; r < n; ++r) pmf[r] = cdf[r] - (r > 0 ? cdf[r - 1] : 0);
  return pmf;
}

bool SameTrace(const std::vector<ExpertAccess>& a,
               const std::vector<ExpertAccess>& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](const ExpertAccess& x, const ExpertAccess& y) {
                      return x.time_us == y.time_us && x.pass == y.pass &&
                             x.key == y.key && x.bytes == y.bytes;
                    });
}

TEST(TraceGeneratorTest, IsDeterministicFromTheSeed) {
  TraceGeneratorOptions o = Small();
  o.drift_batches = 50;
  auto a = GenerateTrace(o), b = GenerateTrace(o);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameTrace(*a, *b));
  o.seed = 2;
  auto c = GenerateTrace(o);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(SameTrace(*a, *c));
}

TEST(TraceGeneratorTest, EachPassIsOneLayersSortedExpertsInOrder) {
  TraceGeneratorOptions o = Small();
  o.routing_noise = 0;
  auto trace = GenerateTrace(o);
  ASSERT_TRUE(trace.ok());
  std::map<int64_t, std::vector<const ExpertAccess*>> passes;
  for (const ExpertAccess& a : *trace) passes[a.pass].push_back(&a);
  ASSERT_EQ(passes.size(), 600u);  // 300 batches x 2 MoE layers.
  int64_t last_time = -1;
  for (const auto& [pass, accesses] : passes) {
    const int layer = o.moe_layers[pass % 2];
    // 8 images x top 2 without noise: 2..16 distinct experts.
    EXPECT_GE(accesses.size(), 2u);
    EXPECT_LE(accesses.size(), 16u);
    for (size_t i = 0; i < accesses.size(); ++i) {
      EXPECT_EQ(accesses[i]->key.layer, layer);
      EXPECT_EQ(accesses[i]->bytes, 8398848u);
      EXPECT_EQ(accesses[i]->time_us, (pass / 2) * 100000 + (pass % 2) * 50000);
      if (i > 0) {
        EXPECT_LT(accesses[i - 1]->key.expert, accesses[i]->key.expert);
      }
    }
    EXPECT_GT(accesses[0]->time_us, last_time);
    last_time = accesses[0]->time_us;
  }
}

TEST(TraceGeneratorTest, ScenesFollowZipfWithoutDwell) {
  TraceGeneratorOptions o;
  o.scenes = 10;
  o.zipf_alpha = 1.0;
  o.cameras = 1;
  o.dwell = 0;
  internal::CameraFleet fleet(o);
  std::vector<int> counts(o.scenes);
  constexpr int kFrames = 100000;
  for (int f = 0; f < kFrames; ++f) ++counts[fleet.NextScene(0, 0)];
  // Scenes are ranked by a shuffle: compare sorted frequencies with ranks.
  std::sort(counts.rbegin(), counts.rend());
  const std::vector<double> pmf = ZipfPmf(o.scenes, o.zipf_alpha);
  for (int r = 0; r < o.scenes; ++r) {
    // 5 standard deviations of a binomial with p <= 0.35 at 1e5 frames.
    EXPECT_NEAR(counts[r] / double{kFrames}, pmf[r], 0.0076) << "rank " << r;
  }
}

TEST(TraceGeneratorTest, DwellKeepsTheSceneAtTheExpectedRate) {
  TraceGeneratorOptions o;
  o.scenes = 8;
  o.zipf_alpha = 0.5;
  o.cameras = 3;
  o.dwell = 0.9;
  internal::CameraFleet fleet(o);
  double same_draw = 0;  // P(two independent draws give the same scene)
  for (double p : ZipfPmf(o.scenes, o.zipf_alpha)) same_draw += p * p;
  int same = 0, pairs = 0;
  for (int camera = 0; camera < o.cameras; ++camera) {
    int previous = fleet.NextScene(camera, 0);
    for (int f = 1; f < 30000; ++f, ++pairs) {
      const int scene = fleet.NextScene(camera, 0);
      same += scene == previous ? 1 : 0;
      previous = scene;
    }
  }
  const double expected = o.dwell + (1 - o.dwell) * same_draw;
  EXPECT_NEAR(same / double(pairs), expected, 0.01);
}

TEST(TraceGeneratorTest, DriftChangesTheHotScene) {
  TraceGeneratorOptions o;
  o.scenes = 64;
  o.zipf_alpha = 4;  // Steep: rank 0 is 92% of the frames.
  o.cameras = 1;
  o.dwell = 0;
  o.drift_batches = 10;
  o.batches = 100;
  internal::CameraFleet fleet(o);
  std::set<int> hot;
  for (int period = 0; period < 10; ++period) {
    std::map<int, int> counts;
    for (int f = 0; f < 200; ++f) ++counts[fleet.NextScene(0, period * 10 + 5)];
    hot.insert(
        std::max_element(counts.begin(), counts.end(), [](auto& a, auto& b) {
          return a.second < b.second;
        })->first);
  }
  EXPECT_GE(hot.size(), 6u);  // 10 shuffles of 64 scenes rarely repeat.
}

TEST(TraceGeneratorTest, ExpertPopularityIsSkewed) {
  TraceGeneratorOptions o;
  o.scenes = 4000;
  o.expert_alpha = 1.0;
  const internal::SyntheticRouter router(o);
  std::vector<int> scenes_per_expert(o.num_experts);
  for (int s = 0; s < o.scenes; ++s) {
    const std::vector<int>& experts = router.SceneExperts(s, 0);
    ASSERT_EQ(experts.size(), 2u);
    EXPECT_NE(experts[0], experts[1]);
    for (int e : experts) ++scenes_per_expert[e];
  }
  std::sort(scenes_per_expert.rbegin(), scenes_per_expert.rend());
  // Zipf(1) over 32: the top expert has 32x the last one's weight.
  EXPECT_GT(scenes_per_expert.front(), 8 * scenes_per_expert.back());
}

TEST(TraceGeneratorTest, TokenRoutingTouchesMostExperts) {
  TraceGeneratorOptions o = Small();
  auto image = GenerateTrace(o);
  o.routing = Routing::kToken;
  auto token = GenerateTrace(o);
  ASSERT_TRUE(image.ok() && token.ok());
  const double passes = o.batches * 2.0;
  EXPECT_LT(image->size() / passes, 16);
  // 8 images x 49 tokens x 2 choices over 32 skewed experts.
  EXPECT_GT(token->size() / passes, 0.9 * o.num_experts);
}

TEST(TraceGeneratorTest, RejectsOptionsOutOfRange) {
  TraceGeneratorOptions o;
  o.top_k = 33;
  EXPECT_EQ(GenerateTrace(o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = TraceGeneratorOptions();
  o.dwell = 1.5;
  EXPECT_FALSE(ValidateTraceGeneratorOptions(o).ok());
  o = TraceGeneratorOptions();
  o.moe_layers.clear();
  EXPECT_FALSE(ValidateTraceGeneratorOptions(o).ok());
}

TEST(TraceGeneratorTest, TakesTheShapeFromAModelDirectory) {
  test_support::TempDir dir;
  test_support::TestModelSpec spec;  // block 1: 4 experts, D 8, F 16.
  ASSERT_TRUE(test_support::WriteTestModel(dir.path(),
                                           test_support::MakeTestManifest(spec))
                  .ok());
  auto manifest = ModelManifest::Load(dir.path());
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  TraceGeneratorOptions o;
  ASSERT_TRUE(ApplyModelShape(*manifest, &o).ok());
  EXPECT_EQ(o.moe_layers, std::vector<int>{1});
  EXPECT_EQ(o.num_experts, 4);
  EXPECT_EQ(o.top_k, 2);
  EXPECT_EQ(o.tokens, 4);
  EXPECT_EQ(o.expert_bytes, 4u * (16 * 8 + 16 + 8 * 16 + 8));
  auto trace = GenerateTrace(o);
  ASSERT_TRUE(trace.ok());
  for (const ExpertAccess& a : *trace) EXPECT_LT(a.key.expert, 4);
}

}  // namespace
}  // namespace edge
