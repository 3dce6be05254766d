// VmoeEngine on real exported models (random weights; CTest's
// engine.export_models fixture writes them to $EDGE_TEST_MODELS). Number-for-
// number parity with PyTorch is tests/parity; this file checks what parity
// cannot: failure isolation, batch independence and the bounded cache.
#include "engine/vmoe_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
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

// An expert of the last MoE layer that some, but not all, of `results`'
// images were routed to, and those images in `affected`; -1 if none.
int PartlyUsedExpert(const std::vector<ImageResult>& results, int num_experts,
                     std::set<int>* affected) {
  for (int e = 0; e < num_experts; ++e) {
    affected->clear();
    for (size_t b = 0; b < results.size(); ++b) {
      for (const ExpertChoice& c : results[b].routing.back().image_choices) {
        if (c.expert == e) affected->insert(static_cast<int>(b));
      }
    }
    if (!affected->empty() && affected->size() < results.size()) return e;
  }
  return -1;
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
  std::set<int> affected;
  const int victim =
      PartlyUsedExpert(want, intact->config().moe.num_experts, &affected);
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

// Sets every float of tensor `name` to `value` and writes the file's new
// SHA-256 into manifest.json: the model verifies, but its weights are
// absurd.
void OverwriteTensorKeepingItsHashValid(const std::string& dir,
                                        const std::string& name, float value) {
  auto manifest = ModelManifest::Load(dir);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  const TensorInfo* tensor = manifest->FindTensor(name);
  ASSERT_NE(tensor, nullptr) << name;
  ASSERT_EQ(tensor->dtype, DType::kF32);
  const std::string path = manifest->PathOf(tensor->file);
  std::string bytes = test_support::ReadFileOrDie(path);
  for (uint64_t i = 0; i < tensor->size_bytes; i += sizeof(float)) {
    std::memcpy(&bytes[tensor->offset_bytes + i], &value, sizeof(float));
  }
  test_support::WriteFileOrDie(path, bytes);
  const std::string manifest_path = dir + "/manifest.json";
  std::string json = test_support::ReadFileOrDie(manifest_path);
  const std::string old_hash = manifest->FindFile(tensor->file)->sha256;
  const size_t at = json.find(old_hash);
  ASSERT_NE(at, std::string::npos);
  json.replace(at, old_hash.size(), Sha256Hex(bytes.data(), bytes.size()));
  test_support::WriteFileOrDie(manifest_path, json);
}

// An expert whose file verifies but whose fc1 weights are 3e38 (near
// FLT_MAX): its products overflow to Inf, and Inf - Inf or Inf * 0 to NaN.
// The images routed to it must not be answered OK with NaN scores: they get
// DATA_LOSS naming the experts they used, under either failure policy
// (rerouting has no failed expert to replace); the others are served as
// before, and each refusal is counted.
TEST(VmoeEngineTest, NonFiniteLogitsAreDataLossNamingTheExpertsUsed) {
  TempDir tmp;
  const std::string dir = tmp.Join("model");
  fs::copy(ModelDir("tiny-image"), dir, fs::copy_options::recursive);
  constexpr int kBatch = 8;
  std::vector<float> images;
  std::vector<ImageResult> want;
  int layer = 0, victim = -1;
  std::set<int> affected;
  {
    auto intact = CreateOrDie(dir);
    ASSERT_NE(intact, nullptr);
    images = RandomImages(intact->config(), kBatch, 7);
    want = RunOrDie(*intact, images, kBatch);
    layer = intact->config().moe.layers.back();
    victim =
        PartlyUsedExpert(want, intact->config().moe.num_experts, &affected);
    ASSERT_GE(victim, 0) << "no expert used by only part of the batch";
  }
  ASSERT_NO_FATAL_FAILURE(OverwriteTensorKeepingItsHashValid(
      dir, ExpertTensorPrefix(layer, victim) + "fc1.weight", 3e38f));

  for (const ExpertFailurePolicy policy :
       {ExpertFailurePolicy::kFail, ExpertFailurePolicy::kReroute}) {
    EngineOptions options;
    options.expert_failure_policy = policy;
    auto engine = CreateOrDie(dir, options);
    ASSERT_NE(engine, nullptr);
    const auto got = RunOrDie(*engine, images, kBatch);
    ASSERT_EQ(got.size(), static_cast<size_t>(kBatch));
    for (int b = 0; b < kBatch; ++b) {
      SCOPED_TRACE(::testing::Message() << "image " << b);
      if (!affected.count(b)) {
        ExpectSameLogits(got[b], want[b]);
        continue;
      }
      EXPECT_EQ(got[b].status.code(), absl::StatusCode::kDataLoss);
      EXPECT_TRUE(got[b].logits.empty());
      std::set<int> used;
      for (const ExpertChoice& c : want[b].routing.back().image_choices) {
        used.insert(c.expert);
      }
      const std::string message(got[b].status.message());
      EXPECT_THAT(message, HasSubstr("non-finite logits (NaN or Inf): the "
                                     "weights or arithmetic produced "
                                     "non-finite values; experts used: "));
      EXPECT_THAT(message, HasSubstr(absl::StrCat("block ", layer, ": ",
                                                  absl::StrJoin(used, ", "))));
    }
    const VmoeEngine::IntegrityStats stats = engine->integrity_stats();
    EXPECT_EQ(stats.non_finite_results, affected.size());
    EXPECT_EQ(stats.expert_files.checksum_mismatches, 0u) << "it verified";
  }
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

// Token routing is per image (docs/model-spec.md), so an image's answer must
// not depend on what else is in its batch.
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

bool SameRouting(const ImageResult& a, const ImageResult& b) {
  if (a.routing.size() != b.routing.size()) return false;
  for (size_t l = 0; l < a.routing.size(); ++l) {
    const auto& x = a.routing[l];
    const auto& y = b.routing[l];
    if (x.image_choices.size() != y.image_choices.size() ||
        x.token_choices.size() != y.token_choices.size() ||
        x.token_kept != y.token_kept) {
      return false;
    }
    for (size_t i = 0; i < x.image_choices.size(); ++i) {
      if (x.image_choices[i].expert != y.image_choices[i].expert) return false;
    }
    for (size_t i = 0; i < x.token_choices.size(); ++i) {
      if (x.token_choices[i].expert != y.token_choices[i].expert) return false;
    }
  }
  return true;
}

// bf16 arithmetic changes the logits a little (bf16 keeps 8 significant
// bits; these models' logits are O(1)) and may flip a near-tie routing
// decision, which changes an image's logits legitimately. Images routed
// alike must stay close, and most images must route alike.
void ExpectBf16CloseToF32(const std::string& model) {
  auto f32 = CreateOrDie(ModelDir(model));
  EngineOptions options;
  options.compute_dtype = ComputeDtype::kBfloat16;
  auto bf16 = CreateOrDie(ModelDir(model), options);
  ASSERT_NE(f32, nullptr);
  ASSERT_NE(bf16, nullptr);
  EXPECT_EQ(bf16->precision(), "bf16");
  constexpr int kBatch = 32;
  const auto images = RandomImages(f32->config(), kBatch, 11);
  const auto want = RunOrDie(*f32, images, kBatch);
  const auto got = RunOrDie(*bf16, images, kBatch);
  ASSERT_EQ(got.size(), want.size());
  int alike = 0;
  float max_diff = 0;
  for (int b = 0; b < kBatch; ++b) {
    if (!SameRouting(got[b], want[b])) continue;
    ++alike;
    for (size_t i = 0; i < want[b].logits.size(); ++i) {
      max_diff =
          std::max(max_diff, std::abs(got[b].logits[i] - want[b].logits[i]));
    }
  }
  EXPECT_GE(alike, kBatch * 3 / 4) << "too many routing flips";
  EXPECT_LE(max_diff, 0.05f);
  EXPECT_GT(max_diff, 1e-5f) << "identical to float32: bf16 did not run";
}

TEST(VmoeEngineTest, Bf16ComputeStaysCloseToFloat32ImageRouting) {
  ExpectBf16CloseToF32("tiny-image");
}

TEST(VmoeEngineTest, Bf16ComputeStaysCloseToFloat32TokenRouting) {
  ExpectBf16CloseToF32("tiny-token");
}

TEST(VmoeEngineTest, RejectsUnknownComputeDtypeName) {
  EXPECT_EQ(ParseComputeDtype("bfloat16").value(), ComputeDtype::kBfloat16);
  EXPECT_EQ(ParseComputeDtype("f32").value(), ComputeDtype::kFloat32);
  EXPECT_EQ(ParseComputeDtype("fp16").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Experts stored as bf16 / int8 stay that size in the cache (plus biases
// and, for int8, a scale per output channel) and compute in it.
TEST(VmoeEngineTest, ReducedPrecisionExpertsShrinkTheCache) {
  std::map<std::string, double> bytes_per_expert;
  for (const std::string model :
       {"tiny-image", "tiny-image-bf16", "tiny-image-int8"}) {
    auto engine = CreateOrDie(ModelDir(model));
    ASSERT_NE(engine, nullptr);
    const auto images = RandomImages(engine->config(), 8, 5);
    for (const ImageResult& r : RunOrDie(*engine, images, 8)) {
      EXPECT_TRUE(r.status.ok()) << r.status;
      EXPECT_EQ(r.logits.size(), 10u);
    }
    const ExpertCacheStats s = engine->cache_stats();
    ASSERT_GT(s.resident_experts, 0);
    bytes_per_expert[model] =
        static_cast<double>(s.resident_bytes) / s.resident_experts;
  }
  const double f32 = bytes_per_expert["tiny-image"];
  EXPECT_LE(bytes_per_expert["tiny-image-bf16"], 0.55 * f32);
  EXPECT_LE(bytes_per_expert["tiny-image-int8"], 0.35 * f32);
  auto int8 = CreateOrDie(ModelDir("tiny-image-int8"));
  ASSERT_NE(int8, nullptr);
  EXPECT_EQ(int8->precision(), "float32/int8-experts");
}

// docs/model-spec.md's vmoe-s32-e32 (64 experts, ~537 MB) with a budget for a
// quarter of its experts, three threads running batches at once: resident
// bytes never pass the budget, and every answer equals the unbounded
// engine's.
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
