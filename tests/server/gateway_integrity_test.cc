// Expert files that change on disk while the real edge_gateway serves
// (issue 13, "Survive the field", point 4): rewritten in place, replaced by
// rename, truncated. The cache budget holds two experts, so experts are
// evicted and loaded again all the time, and every reload must verify what
// it reads. In each case no answer is OK unless it equals the intact
// model's (or, under `reroute`, is flagged degraded), the gateway does not
// crash, the images that need the broken expert fail naming its file, the
// others are served, and restoring the file makes it serve again.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/vmoe_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/gateway.grpc.pb.h"
#include "tests/testing/gateway_process.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/tensor_request.h"

namespace edge {
namespace {

namespace fs = std::filesystem;
using gateway::v1::ClassifyResponse;
using gateway::v1::InferenceGateway;
using test_support::GatewayProcess;
using test_support::MetricValue;
using test_support::RandomTensor;
using test_support::ReadFileOrDie;
using test_support::TempDir;
using test_support::TensorRequest;
using test_support::TestModelDir;
using test_support::WriteFileOrDie;
using ::testing::HasSubstr;

constexpr int kSide = 32;   // tiny-image's input side.
constexpr int kImages = 8;  // seeds 0..7, one request each.
const char kIntegrity[] = "edge_gateway_expert_integrity_failures_total";

// A copy of tiny-image, its answers to kImages inputs, and an expert of its
// last MoE layer that some, not all, of them are routed to.
struct ModelCopy {
  std::string dir;
  std::string file;  // the victim's file, relative to dir.
  std::string path;  // the victim's file, absolute.
  std::string intact_bytes;
  std::set<int> affected;  // seeds routed to the victim.
  std::vector<ImageResult> want;
  uint64_t expert_bytes = 0;  // one expert in the cache.
};

void CopyModel(const TempDir& tmp, ModelCopy* out) {
  out->dir = tmp.Join("model");
  fs::copy(TestModelDir("tiny-image"), out->dir, fs::copy_options::recursive);
  auto engine = VmoeEngine::Create(out->dir);
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (int seed = 0; seed < kImages; ++seed) {
    const auto r = (*engine)->Run(RandomTensor(kSide, seed).data(), 1);
    ASSERT_TRUE(r.ok() && (*r)[0].status.ok());
    out->want.push_back((*r)[0]);
  }
  const ExpertCacheStats stats = (*engine)->cache_stats();
  ASSERT_GT(stats.resident_experts, 0);
  out->expert_bytes = stats.resident_bytes / stats.resident_experts;
  const int layer = (*engine)->config().moe.layers.back();
  for (int e = 0; e < (*engine)->config().moe.num_experts; ++e) {
    out->affected.clear();
    for (int seed = 0; seed < kImages; ++seed) {
      for (const ExpertChoice& c : out->want[seed].routing.back().image_choices)
        if (c.expert == e) out->affected.insert(seed);
    }
    if (!out->affected.empty() && out->affected.size() < size_t{kImages}) {
      out->file = (*engine)->manifest().ExpertFile(layer, e);
      break;
    }
  }
  ASSERT_FALSE(out->file.empty()) << "no expert used by only some images";
  out->path = (*engine)->manifest().PathOf(out->file);
  out->intact_bytes = ReadFileOrDie(out->path);
}

// Overwrites the second half of `path` with 0xff bytes (NaN as float32)
// in place: same inode, same size, as a botched copy or a failing card
// would leave it.
void RewriteSecondHalfInPlace(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0) << path;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  const std::string garbage(size - size / 2, '\xff');
  ASSERT_EQ(::pwrite(fd, garbage.data(), garbage.size(), size / 2),
            static_cast<ssize_t>(garbage.size()));
  ::close(fd);
}

// Writes `bytes` to a temporary name in `path`'s directory and renames it
// over `path`: the way deployments replace files atomically.
void RenameReplace(const std::string& path, const std::string& bytes) {
  const std::string temp = path + ".new";
  WriteFileOrDie(temp, bytes);
  ASSERT_EQ(std::rename(temp.c_str(), path.c_str()), 0);
}

enum class Expect { kIntact, kBrokenVictim };

// A gateway on the model copy with a two-expert cache budget.
class GatewayIntegrityTest : public ::testing::Test {
 protected:
  void Start(const std::string& policy) {
    ASSERT_NO_FATAL_FAILURE(CopyModel(tmp_, &model_));
    // Two experts: one image's top-2 of a layer fit, and the next image's
    // evict them, so the victim is loaded from disk again and again.
    ASSERT_TRUE(gateway_.Start(
        {"--model_dir=" + model_.dir, "--expert_failure_policy=" + policy,
         "--cache_budget_bytes=" + std::to_string(2 * model_.expert_bytes)}))
        << gateway_.log();
    stub_ = InferenceGateway::NewStub(grpc::CreateChannel(
        gateway_.target(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Classify(int seed, ClassifyResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    return stub_->Classify(
        &ctx, TensorRequest(RandomTensor(kSide, seed), kSide), out);
  }

  // An OK, not degraded answer must be the intact model's.
  void ExpectIntactAnswer(int seed, const ClassifyResponse& out) {
    ASSERT_FALSE(out.degraded()) << out.degraded_reason();
    const std::vector<float>& want = model_.want[seed].logits;
    ASSERT_EQ(static_cast<size_t>(out.logits_size()), want.size());
    for (int c = 0; c < out.logits_size(); ++c) {
      EXPECT_NEAR(out.logits(c), want[c], 1e-4) << "class " << c;
    }
  }

  // Asks for every image once. kIntact: all answered as the intact model
  // does. kBrokenVictim: the victim's images fail with DATA_LOSS naming
  // its file (`fail`) or are answered degraded naming it (`reroute`), the
  // others as the intact model does.
  void CheckAllImages(Expect expect, bool reroute = false) {
    for (int seed = 0; seed < kImages; ++seed) {
      SCOPED_TRACE(::testing::Message() << "image " << seed);
      ClassifyResponse out;
      const grpc::Status s = Classify(seed, &out);
      const bool broken =
          expect == Expect::kBrokenVictim && model_.affected.count(seed) != 0;
      if (!broken) {
        ASSERT_TRUE(s.ok()) << s.error_message();
        ExpectIntactAnswer(seed, out);
      } else if (reroute) {
        ASSERT_TRUE(s.ok()) << s.error_message();
        EXPECT_TRUE(out.degraded());
        EXPECT_THAT(out.degraded_reason(), HasSubstr(model_.file));
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS)
            << s.error_message();
        EXPECT_THAT(s.error_message(), HasSubstr(model_.file));
      }
    }
  }

  double Metric(const std::string& name, const std::string& labels = "") {
    return MetricValue(
        test_support::HttpGet(gateway_.metrics_port(), "/metrics"), name,
        labels);
  }

  // The gateway is still the process it was: a SIGBUS would have ended it.
  void ExpectCleanExit() {
    EXPECT_EQ(gateway_.Stop(SIGTERM), 0) << gateway_.log();
  }

  TempDir tmp_;
  ModelCopy model_;
  GatewayProcess gateway_;
  std::unique_ptr<InferenceGateway::Stub> stub_;
};

// The field report: loaded and verified once, evicted, then rewritten in
// place (same size, garbage second half). It used to be reloaded unchecked
// and answered OK with NaN scores; now every reload is verified.
TEST_F(GatewayIntegrityTest, InPlaceRewriteAfterEvictionIsRefused) {
  ASSERT_NO_FATAL_FAILURE(Start("fail"));
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  EXPECT_GT(Metric("edge_gateway_expert_cache_evictions_total"), 0);

  ASSERT_NO_FATAL_FAILURE(RewriteSecondHalfInPlace(model_.path));
  for (int round = 0; round < 2; ++round) {  // refusals are not cached.
    ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kBrokenVictim));
  }
  EXPECT_GE(Metric(kIntegrity, "\"checksum_mismatch\""),
            2 * model_.affected.size());
  EXPECT_EQ(Metric("edge_gateway_non_finite_results_total"), 0);

  WriteFileOrDie(model_.path, model_.intact_bytes);  // restored in place
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  ExpectCleanExit();
}

TEST_F(GatewayIntegrityTest, InPlaceRewriteUnderRerouteAnswersDegraded) {
  ASSERT_NO_FATAL_FAILURE(Start("reroute"));
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  ASSERT_NO_FATAL_FAILURE(RewriteSecondHalfInPlace(model_.path));
  ASSERT_NO_FATAL_FAILURE(
      CheckAllImages(Expect::kBrokenVictim, /*reroute=*/true));
  EXPECT_EQ(Metric("edge_gateway_degraded_responses_total"),
            model_.affected.size());
  WriteFileOrDie(model_.path, model_.intact_bytes);
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  ExpectCleanExit();
}

// Replaced by rename with another (well-formed, same-size) expert's file:
// a new inode, read anew at the next load and refused for its checksum;
// renaming the right file back serves again.
TEST_F(GatewayIntegrityTest, RenameReplacedFileIsRefusedUntilRestored) {
  ASSERT_NO_FATAL_FAILURE(Start("fail"));
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  std::string other;
  for (const auto& entry :
       fs::directory_iterator(fs::path(model_.path).parent_path())) {
    if (entry.path() != model_.path) {
      other = ReadFileOrDie(entry.path());
      if (other.size() == model_.intact_bytes.size()) break;
    }
  }
  ASSERT_EQ(other.size(), model_.intact_bytes.size());
  ASSERT_NE(other, model_.intact_bytes);

  ASSERT_NO_FATAL_FAILURE(RenameReplace(model_.path, other));
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kBrokenVictim));
  EXPECT_GE(Metric(kIntegrity, "\"checksum_mismatch\""),
            model_.affected.size());

  ASSERT_NO_FATAL_FAILURE(RenameReplace(model_.path, model_.intact_bytes));
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  ExpectCleanExit();
}

// Truncated while the gateway runs: first between requests (a size
// mismatch at the next load), then over and over while requests keep
// loading it, so truncations land during reads. No crash, no OK answer
// but the intact one, and the file serves again once restored.
TEST_F(GatewayIntegrityTest, TruncationWhileServingNeverCrashesOrLies) {
  ASSERT_NO_FATAL_FAILURE(Start("fail"));
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));

  ASSERT_EQ(::truncate(model_.path.c_str(), model_.intact_bytes.size() / 2), 0);
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kBrokenVictim));
  EXPECT_GE(Metric(kIntegrity, "\"size_mismatch\""), model_.affected.size());

  std::atomic<bool> stop{false};
  std::thread truncator([&] {
    // Alternates truncation and in-place restoring, for as long as the
    // requests below run.
    while (!stop.load()) {
      (void)::truncate(model_.path.c_str(), 4096);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      WriteFileOrDie(model_.path, model_.intact_bytes);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  int ok = 0, refused = 0;
  for (int i = 0; i < 60; ++i) {
    const int seed = i % kImages;
    ClassifyResponse out;
    const grpc::Status s = Classify(seed, &out);
    if (s.ok()) {
      ++ok;
      ExpectIntactAnswer(seed, out);
      continue;
    }
    ++refused;
    EXPECT_EQ(model_.affected.count(seed), 1u) << "image " << seed;
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(model_.file));
  }
  stop = true;
  truncator.join();
  EXPECT_GT(ok, 0);
  RecordProperty("refused_during_truncation", refused);

  WriteFileOrDie(model_.path, model_.intact_bytes);
  ASSERT_NO_FATAL_FAILURE(CheckAllImages(Expect::kIntact));
  ExpectCleanExit();
}

}  // namespace
}  // namespace edge
