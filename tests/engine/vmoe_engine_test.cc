// VmoeEngine on real exported models (random weights; CTest's
// engine.export_models fixture writes them to $EDGE_TEST_MODELS). Number-for-
// number parity with PyTorch is tests/parity; this file checks what parity
// cannot: failure isolation, batch independence and the bounded cache.
#include "engine/vmoe_engine.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <set>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

namespace fs = std::filesystem;
using test_support::TempDir;
using ::testing::HasSubstr;

std::string ModelDir(const std::string& name) {
  const char* root = std::getenv("EDGE_TEST_MODELS");
  // Run through CTest, which exports the models and sets this.
  EXPECT_NE(root, nullptr) << "EDGE_TEST_MODELS is not set";
  return std::string(root ? root : "") + "/" + name;
}

std::vector<float> RandomImages(const ModelConfig& c, int batch, int seed) {
  std::vector<float> v(static_cast<size_t>(batch) * 3 * c.image_size *
                       c.image_size);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<ImageResult> RunOrDie(VmoeEngine& engine,
                                  const std::vector<float>& images, int batch) {
  auto r = engine.Run(images.data(), batch);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *std::move(r) : std::vector<ImageResult>();
}

void ExpectSameLogits(const ImageResult& a, const ImageResult& b) {
  ASSERT_TRUE(a.status.ok()) << a.status;
  ASSERT_TRUE(b.status.ok()) << b.status;
  ASSERT_EQ(a.logits.size(), b.logits.size());
  for (size_t i = 0; i < a.logits.size(); ++i) {
    EXPECT_NEAR(a.logits[i], b.logits[i], 1e-5) << "class " << i;
  }
}

std::unique_ptr<VmoeEngine> CreateOrDie(const std::string& dir,
                                        EngineOptions options = {}) {
  auto engine = VmoeEngine::Create(dir, options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// Damages one expert of the last MoE layer that some, but not all, of a
// batch's images use; only those images may fail, with `code` and the
// file's name, and the engine goes on serving the others.
void CheckExpertFailureIsIsolated(
    const std::function<void(const std::string&)>& damage,
    absl::StatusCode code) {
  TempDir tmp;
  const std::string dir = tmp.Join("model");
  fs::copy(ModelDir("tiny-image"), dir, fs::copy_options::recursive);
  auto intact = CreateOrDie(dir);
  ASSERT_NE(intact, nullptr);
  constexpr int kBatch = 8;
  const auto images = RandomImages(intact->config(), kBatch, 7);
  const auto want = RunOrDie(*intact, images, kBatch);
  ASSERT_EQ(want.size(), static_cast<size_t>(kBatch));

  const int layer = intact->config().moe.layers.back();
  int victim = -1;
  std::set<int> affected;
  for (int e = 0; e < intact->config().moe.num_experts && victim < 0; ++e) {
    affected.clear();
    for (int b = 0; b < kBatch; ++b) {
      for (const ExpertChoice& c : want[b].routing.back().image_choices) {
        if (c.expert == e) affected.insert(b);
      }
    }
    if (!affected.empty() && affected.size() < kBatch) victim = e;
  }
  ASSERT_GE(victim, 0) << "no expert used by only part of the batch";
  const std::string file = intact->manifest().ExpertFile(layer, victim);
  damage(intact->manifest().PathOf(file));

  auto damaged = CreateOrDie(dir);  // experts load lazily: creation succeeds.
  ASSERT_NE(damaged, nullptr);
  for (int attempt = 0; attempt < 2; ++attempt) {  // errors are not cached.
    const auto got = RunOrDie(*damaged, images, kBatch);
    for (int b = 0; b < kBatch; ++b) {
      if (affected.count(b)) {
        EXPECT_EQ(got[b].status.code(), code) << got[b].status;
        EXPECT_THAT(std::string(got[b].status.message()), HasSubstr(file));
        EXPECT_TRUE(got[b].logits.empty());
      } else {
        ExpectSameLogits(got[b], want[b]);
      }
    }
  }
  // Images that do not need the expert are answered on their own too.
  const size_t n = images.size() / kBatch;
  for (int b = 0; b < kBatch; ++b) {
    if (affected.count(b)) continue;
    std::vector<float> one(images.begin() + b * n,
                           images.begin() + (b + 1) * n);
    const auto single = RunOrDie(*damaged, one, 1);
    ASSERT_EQ(single.size(), 1u);
    ExpectSameLogits(single[0], want[b]);
  }
}

TEST(VmoeEngineTest, CorruptExpertFailsOnlyImagesRoutedToIt) {
  CheckExpertFailureIsIsolated(
      [](const std::string& path) {
        std::string bytes = test_support::ReadFileOrDie(path);
        bytes[bytes.size() / 2] ^= 0x01;  // one bit of one weight.
        test_support::WriteFileOrDie(path, bytes);
      },
      absl::StatusCode::kDataLoss);
}

TEST(VmoeEngineTest, MissingExpertFailsOnlyImagesRoutedToIt) {
  CheckExpertFailureIsIsolated(
      [](const std::string& path) { fs::remove(path); },
      absl::StatusCode::kNotFound);
}

// With ExpertFailurePolicy::kReroute the images routed to a corrupt expert
// are answered by a substitute, flagged degraded with the file named; the
// others are untouched.
TEST(VmoeEngineTest, RerouteServesImagesOfAFailedExpertDegraded) {
  TempDir tmp;
  const std::string dir = tmp.Join("model");
  fs::copy(ModelDir("tiny-image"), dir, fs::copy_options::recursive);
  auto intact = CreateOrDie(dir);
  ASSERT_NE(intact, nullptr);
  constexpr int kBatch = 8;
  const auto images = RandomImages(intact->config(), kBatch, 7);
  const auto want = RunOrDie(*intact, images, kBatch);
  const int layer = intact->config().moe.layers.back();
  const int victim = want[0].routing.back().image_choices[0].expert;
  const std::string file = intact->manifest().ExpertFile(layer, victim);
  fs::remove(intact->manifest().PathOf(file));

  EngineOptions options;
  options.expert_failure_policy = ExpertFailurePolicy::kReroute;
  auto damaged = CreateOrDie(dir, options);
  ASSERT_NE(damaged, nullptr);
  const auto got = RunOrDie(*damaged, images, kBatch);
  for (int b = 0; b < kBatch; ++b) {
    ASSERT_TRUE(got[b].status.ok()) << got[b].status;
    bool routed_to_victim = false;
    std::vector<int> chosen;
    for (const ExpertChoice& c : want[b].routing.back().image_choices) {
      routed_to_victim |= c.expert == victim;
      chosen.push_back(c.expert);
    }
    EXPECT_EQ(got[b].degraded, routed_to_victim) << "image " << b;
    if (!routed_to_victim) {
      ExpectSameLogits(got[b], want[b]);
      continue;
    }
    EXPECT_THAT(got[b].degraded_reason, HasSubstr(file));
    // The substitute is an expert the image had not chosen.
    const size_t at = got[b].degraded_reason.rfind("rerouted to expert ");
    ASSERT_NE(at, std::string::npos);
    const int substitute = std::stoi(got[b].degraded_reason.substr(at + 19));
    EXPECT_EQ(std::count(chosen.begin(), chosen.end(), substitute), 0);
    ASSERT_EQ(got[b].logits.size(), want[b].logits.size());
    EXPECT_NE(got[b].logits, want[b].logits);
  }
}

// Two MoE layers with image routing: after a warm-up the next-layer
// predictor makes guesses, and they are scored against what was used.
TEST(VmoeEngineTest, NextLayerPredictionsAreMadeAndScored) {
  EngineOptions options;
  options.cache.prefetch_threads = 1;
  auto engine = CreateOrDie(ModelDir("tiny-image"), options);
  ASSERT_NE(engine, nullptr);
  ASSERT_GE(engine->config().moe.layers.size(), 2u);
  const auto images = RandomImages(engine->config(), 8, 11);
  for (int i = 0; i < 12; ++i) RunOrDie(*engine, images, 8);
  const VmoeEngine::PrefetchPredictionStats s = engine->prediction_stats();
  EXPECT_GT(s.next_layer_experts, 0u);
  EXPECT_GT(s.guesses, 0u);
  // The same images every time: a learned predictor must be mostly right.
  EXPECT_GT(static_cast<double>(s.guesses_used) / s.guesses, 0.5);
}

// Token routing is per image (MODEL_SPEC), so an image's answer must not
// depend on what else is in its batch.
TEST(VmoeEngineTest, ResultsDoNotDependOnBatchNeighbours) {
  auto engine = CreateOrDie(ModelDir("tiny-token"));
  ASSERT_NE(engine, nullptr);
  constexpr int kBatch = 4;
  const auto images = RandomImages(engine->config(), kBatch, 3);
  const auto batched = RunOrDie(*engine, images, kBatch);
  const size_t n = images.size() / kBatch;
  for (int b = 0; b < kBatch; ++b) {
    std::vector<float> one(images.begin() + b * n,
                           images.begin() + (b + 1) * n);
    const auto alone = RunOrDie(*engine, one, 1);
    ExpectSameLogits(alone[0], batched[b]);
    for (size_t l = 0; l < alone[0].routing.size(); ++l) {
      EXPECT_EQ(alone[0].routing[l].token_kept,
                batched[b].routing[l].token_kept);
    }
  }
}

TEST(VmoeEngineTest, RejectsBatchSizeOutsideLimits) {
  EngineOptions options;
  options.max_batch_size = 2;
  auto engine = CreateOrDie(ModelDir("tiny-image"), options);
  ASSERT_NE(engine, nullptr);
  const auto images = RandomImages(engine->config(), 3, 1);
  EXPECT_EQ(engine->Run(images.data(), 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Run(images.data(), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// MODEL_SPEC's vmoe-s32-e32 (64 experts, ~537 MB) with a budget for a quarter
// of its experts, three threads running batches at once: resident bytes
// never pass the budget, and every answer equals the unbounded engine's.
TEST(VmoeEngineTest, BoundedCacheMatchesUnboundedUnderConcurrency) {
  const std::string dir = ModelDir("vmoe-s32-e32");
  constexpr int kBatches = 4;
  std::vector<std::vector<float>> inputs;
  std::vector<std::vector<ImageResult>> want;
  uint64_t expert_bytes = 0;
  {
    auto unbounded = CreateOrDie(dir);
    ASSERT_NE(unbounded, nullptr);
    for (int i = 0; i < kBatches; ++i) {
      inputs.push_back(RandomImages(unbounded->config(), 1, 100 + i));
      want.push_back(RunOrDie(*unbounded, inputs.back(), 1));
    }
    const ExpertCacheStats s = unbounded->cache_stats();
    ASSERT_GT(s.resident_experts, 0);
    expert_bytes = s.resident_bytes / s.resident_experts;
  }
  EngineOptions options;
  options.cache.budget_bytes = 16 * expert_bytes;  // 25% of 64 experts.
  auto bounded = CreateOrDie(dir, options);
  ASSERT_NE(bounded, nullptr);

  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatches; ++i) {
        const int which = (i + t) % kBatches;
        const auto got = RunOrDie(*bounded, inputs[which], 1);
        ASSERT_EQ(got.size(), 1u);
        ExpectSameLogits(got[0], want[which][0]);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const ExpertCacheStats s = bounded->cache_stats();
  EXPECT_LE(s.peak_resident_bytes, options.cache.budget_bytes);
  EXPECT_LE(s.resident_bytes, options.cache.budget_bytes);
  EXPECT_GT(s.evictions, 0u)
      << "the budget never bound; the test proves nothing";
}

}  // namespace
}  // namespace edge
