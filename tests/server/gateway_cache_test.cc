// The expert cache as the real edge_gateway process exposes it: warm-up
// from a usage profile (--cache_profile), the access trace
// (--expert_trace_file) and the policies for an expert that cannot be
// loaded (--expert_failure_policy). Models come from CTest's
// engine.export_models fixture; damaged copies live in temporary dirs.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <iterator>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "cache/access_trace.h"
#include "cache/usage_profile.h"
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
using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;
using gateway::v1::InferenceGateway;
using test_support::GatewayProcess;
using test_support::MetricValue;
using test_support::RandomTensor;
using test_support::TempDir;
using test_support::TensorRequest;
using test_support::TestModelDir;
using ::testing::HasSubstr;

constexpr int kSide = 32;  // tiny-image's input side.
const char kCache[] = "edge_gateway_expert_cache_";

// One gateway on tiny-image (or `model_dir`) and a stub to call it.
class Gateway {
 public:
  bool Start(std::vector<std::string> flags,
             const std::string& model_dir = TestModelDir("tiny-image")) {
    flags.push_back("--model_dir=" + model_dir);
    if (!process_.Start(flags)) return false;
    stub_ = InferenceGateway::NewStub(grpc::CreateChannel(
        process_.target(), grpc::InsecureChannelCredentials()));
    return true;
  }
  grpc::Status Classify(int seed, ClassifyResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    return stub_->Classify(
        &ctx, TensorRequest(RandomTensor(kSide, seed), kSide), out);
  }
  std::string Metrics() {
    return test_support::HttpGet(process_.metrics_port(), "/metrics");
  }
  double Metric(const std::string& name, const std::string& labels = "") {
    return MetricValue(Metrics(), name, labels);
  }
  GatewayProcess& process() { return process_; }

 private:
  GatewayProcess process_;
  std::unique_ptr<InferenceGateway::Stub> stub_;
};

// Bytes one tiny-image expert occupies in the cache, from a running
// gateway that has some resident.
uint64_t ExpertBytes(Gateway& gateway) {
  const std::string m = gateway.Metrics();
  const double experts =
      MetricValue(m, kCache + std::string("resident_experts"));
  EXPECT_GT(experts, 0);
  return static_cast<uint64_t>(
      MetricValue(m, kCache + std::string("resident_bytes")) /
      std::max(experts, 1.0));
}

// Run 1 writes the profile at shutdown; run 2, with a budget of three
// experts and no warm-up batches, has the profile's three most used
// experts resident when it reports SERVING, before any request.
TEST(GatewayCacheTest, ProfileWrittenAtShutdownWarmsTheNextStart) {
  TempDir tmp;
  const std::string profile = tmp.Join("profile.csv");
  uint64_t expert_bytes = 0;
  {
    Gateway first;
    ASSERT_TRUE(first.Start(
        {"--cache_profile=" + profile, "--cache_profile_interval_s=0"}))
        << first.process().log();
    ClassifyResponse out;
    for (int seed = 0; seed < 24; ++seed) {
      ASSERT_TRUE(first.Classify(seed, &out).ok());
    }
    expert_bytes = ExpertBytes(first);
    EXPECT_FALSE(fs::exists(profile)) << "interval 0: written only at exit";
    ASSERT_EQ(first.process().Stop(SIGTERM), 0) << first.process().log();
    EXPECT_THAT(first.process().log(), HasSubstr("no usage profile at"));
    EXPECT_THAT(first.process().log(), HasSubstr("usage profile written"));
  }
  const auto written = ReadUsageProfile(profile);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->model, "tiny-image");
  double total = 0;
  for (const auto& [key, count] : written->counts) {
    EXPECT_TRUE(key.layer == 1 || key.layer == 3) << key.ToString();
    EXPECT_LT(key.expert, 4);
    total += count;
  }
  // 24 single-image batches, two MoE layers of top-2: 96 acquires; the
  // warm-up batches' zero images are not traffic and are left out.
  EXPECT_EQ(total, 24 * 2 * 2);
  ASSERT_GE(MostUsedFirst(*written).size(), 3u);

  Gateway second;
  ASSERT_TRUE(second.Start(
      {"--cache_profile=" + profile, "--warmup_batches=0",
       "--cache_budget_bytes=" + std::to_string(3 * expert_bytes)}))
      << second.process().log();
  const std::string m = second.Metrics();
  EXPECT_EQ(MetricValue(m, kCache + std::string("resident_experts")), 3);
  EXPECT_EQ(MetricValue(m, kCache + std::string("resident_bytes")),
            3 * expert_bytes);
  EXPECT_EQ(MetricValue(m, kCache + std::string("loads_total")), 3);
  EXPECT_EQ(MetricValue(m, kCache + std::string("misses_total")), 0);
  EXPECT_THAT(second.process().log(), HasSubstr("cache warm-up: loaded 3 "
                                                "experts"));
}

// The control: without a profile nothing is resident at SERVING; with a
// corrupt one the gateway starts all the same, cold, and says why.
TEST(GatewayCacheTest, NoOrCorruptProfileStartsCold) {
  TempDir tmp;
  const std::string profile = tmp.Join("profile.csv");
  Gateway none;
  ASSERT_TRUE(none.Start({"--warmup_batches=0"})) << none.process().log();
  EXPECT_EQ(none.Metric(kCache + std::string("resident_experts")), 0);

  test_support::WriteFileOrDie(profile,
                               "# edge expert usage profile v1\n"
                               "model,tiny-image\n"
                               "layer,expert,count\n1,0,oops\n");
  Gateway corrupt;
  ASSERT_TRUE(
      corrupt.Start({"--cache_profile=" + profile, "--warmup_batches=0"}))
      << corrupt.process().log();
  EXPECT_EQ(corrupt.Metric(kCache + std::string("resident_experts")), 0);
  EXPECT_THAT(corrupt.process().log(),
              HasSubstr("ignoring the usage profile: INVALID_ARGUMENT: " +
                        profile + " line 4"));
  ClassifyResponse out;
  EXPECT_TRUE(corrupt.Classify(1, &out).ok());
}

TEST(GatewayCacheTest, TraceFileRecordsEveryAccess) {
  TempDir tmp;
  const std::string trace = tmp.Join("trace.csv");
  Gateway gateway;
  ASSERT_TRUE(gateway.Start({"--expert_trace_file=" + trace}))
      << gateway.process().log();
  ClassifyResponse out;
  for (int seed = 0; seed < 10; ++seed) {
    ASSERT_TRUE(gateway.Classify(seed, &out).ok());
  }
  const std::string m = gateway.Metrics();
  const double accesses = MetricValue(m, kCache + std::string("hits_total")) +
                          MetricValue(m, kCache + std::string("misses_total"));
  const uint64_t expert_bytes = ExpertBytes(gateway);
  ASSERT_EQ(gateway.process().Stop(SIGTERM), 0) << gateway.process().log();
  EXPECT_THAT(
      gateway.process().log(),
      HasSubstr("expert trace: " + std::to_string(static_cast<int>(accesses)) +
                " accesses recorded"));

  EXPECT_EQ(test_support::ReadFileOrDie(trace).rfind(
                "# edge expert access trace v1\n"
                "time_us,pass,layer,expert,bytes\n",
                0),
            0u);
  const auto read = ReadAccessTrace(trace);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), accesses);
  std::set<int64_t> passes;
  for (const ExpertAccess& a : *read) {
    EXPECT_TRUE(a.key.layer == 1 || a.key.layer == 3) << a.key.ToString();
    EXPECT_LT(a.key.expert, 4);
    EXPECT_EQ(a.bytes, expert_bytes);
    EXPECT_GE(a.time_us, 0);
    passes.insert(a.pass);
  }
  // Warm-up (2 batches of sizes 1 and 16) plus 10 requests, two MoE
  // layers each: one pass per layer per batch.
  EXPECT_EQ(passes.size(), (2 * 2 + 10) * 2u);
}

// The sizing fields reach the cache: it starts at cache_min_bytes (one
// byte, less than an expert), misses, sees that a larger shadow cache
// would hit, grows (logging each resize with its reason) and counts it;
// prefetch_threads=0 turns prefetch off.
TEST(GatewayCacheTest, ResizesAreLoggedAndCountedAndPrefetchCanBeOff) {
  Gateway gateway;
  ASSERT_TRUE(gateway.Start(
      {"--cache_budget_bytes=10000000", "--cache_min_bytes=1",
       "--cache_window_accesses=16", "--cache_resize_interval_accesses=16",
       "--prefetch_threads=0", "--warmup_batches=0"}))
      << gateway.process().log();
  ClassifyResponse out;
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(gateway.Classify(i, &out).ok());
  const std::string m = gateway.Metrics();
  const std::string resizes = kCache + std::string("resizes_total");
  const double ups = MetricValue(m, resizes, "\"up\"");
  const double downs = MetricValue(m, resizes, "\"down\"");
  EXPECT_GE(ups, 1);
  EXPECT_GT(MetricValue(m, kCache + std::string("capacity_bytes")), 1);
  EXPECT_EQ(MetricValue(m, kCache + std::string("prefetch_issued_total")), 0);
  ASSERT_EQ(gateway.process().Stop(SIGTERM), 0);
  const std::string& log = gateway.process().log();
  EXPECT_THAT(log, HasSubstr("expert cache grew from 1 to "));
  // One log line per resize, each with its reason after the colon.
  const std::regex line(R"(expert cache (grew|shrank) from \d+ to \d+ bytes )"
                        R"(after \d+ accesses: \S.*)");
  const auto lines =
      std::distance(std::sregex_iterator(log.begin(), log.end(), line),
                    std::sregex_iterator());
  EXPECT_EQ(lines, ups + downs);
}

// A copy of tiny-image with one expert of its last MoE layer damaged: one
// that some, not all, of `images` are routed to (found with an in-process
// engine on the intact copy).
struct DamagedModel {
  std::string dir;
  std::string file;               // the damaged expert, relative to dir.
  std::set<int> affected;         // seeds of the images routed to it.
  std::vector<ImageResult> want;  // the intact model's answers, by seed.
};

void DamageOneExpert(const TempDir& tmp, int images, DamagedModel* out) {
  out->dir = tmp.Join("model");
  fs::copy(TestModelDir("tiny-image"), out->dir, fs::copy_options::recursive);
  auto engine = VmoeEngine::Create(out->dir);
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (int seed = 0; seed < images; ++seed) {
    const auto r = (*engine)->Run(RandomTensor(kSide, seed).data(), 1);
    ASSERT_TRUE(r.ok() && (*r)[0].status.ok());
    out->want.push_back((*r)[0]);
  }
  const int layer = (*engine)->config().moe.layers.back();
  for (int e = 0; e < (*engine)->config().moe.num_experts; ++e) {
    out->affected.clear();
    for (int seed = 0; seed < images; ++seed) {
      for (const ExpertChoice& c : out->want[seed].routing.back().image_choices)
        if (c.expert == e) out->affected.insert(seed);
    }
    if (!out->affected.empty() && out->affected.size() < size_t(images)) {
      out->file = (*engine)->manifest().ExpertFile(layer, e);
      break;
    }
  }
  ASSERT_FALSE(out->file.empty()) << "no expert used by only some images";
  const std::string path = (*engine)->manifest().PathOf(out->file);
  engine->reset();
  std::string bytes = test_support::ReadFileOrDie(path);
  bytes[bytes.size() / 2] ^= 0x01;  // one bit of one weight.
  test_support::WriteFileOrDie(path, bytes);
}

// A gateway with `policy` on a model with one damaged expert.
class DamagedExpertTest : public ::testing::Test {
 protected:
  static constexpr int kImages = 8;
  void Start(const std::string& policy) {
    ASSERT_NO_FATAL_FAILURE(DamageOneExpert(tmp_, kImages, &model_));
    ASSERT_TRUE(
        gateway_.Start({"--expert_failure_policy=" + policy}, model_.dir))
        << gateway_.process().log();
  }

  TempDir tmp_;
  DamagedModel model_;
  Gateway gateway_;
};

TEST_F(DamagedExpertTest, RerouteAnswersDegradedAndCountsIt) {
  ASSERT_NO_FATAL_FAILURE(Start("reroute"));
  Gateway& gateway = gateway_;
  const DamagedModel& model = model_;
  for (int seed = 0; seed < kImages; ++seed) {
    ClassifyResponse out;
    const grpc::Status s = gateway.Classify(seed, &out);
    ASSERT_TRUE(s.ok()) << seed << ": " << s.error_message();
    const bool affected = model.affected.count(seed) != 0;
    EXPECT_EQ(out.degraded(), affected) << seed;
    if (affected) {
      EXPECT_THAT(out.degraded_reason(), HasSubstr(model.file));
      EXPECT_THAT(out.degraded_reason(), HasSubstr("rerouted to expert"));
    } else {
      EXPECT_EQ(out.degraded_reason(), "");
      ASSERT_EQ(static_cast<size_t>(out.logits_size()),
                model.want[seed].logits.size());
      for (int c = 0; c < out.logits_size(); ++c) {
        EXPECT_NEAR(out.logits(c), model.want[seed].logits[c], 1e-4);
      }
    }
  }
  const std::string m = gateway.Metrics();
  EXPECT_EQ(MetricValue(m, "edge_gateway_degraded_responses_total"),
            model.affected.size());
  EXPECT_EQ(MetricValue(m, "edge_gateway_requests_total",
                        "code=\"OK\",method=\"Classify\""),
            kImages);
  EXPECT_GE(MetricValue(m, kCache + std::string("load_failures_total")),
            model.affected.size());
}

TEST_F(DamagedExpertTest, FailAnswersDataLossNamingTheFileAndKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(Start("fail"));
  Gateway& gateway = gateway_;
  const DamagedModel& model = model_;
  for (int round = 0; round < 2; ++round) {  // errors are not cached.
    for (int seed = 0; seed < kImages; ++seed) {
      ClassifyResponse out;
      const grpc::Status s = gateway.Classify(seed, &out);
      if (model.affected.count(seed) != 0) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << seed;
        EXPECT_THAT(s.error_message(), HasSubstr(model.file));
      } else {
        EXPECT_TRUE(s.ok()) << seed << ": " << s.error_message();
        EXPECT_FALSE(out.degraded());
      }
    }
  }
  const std::string m = gateway.Metrics();
  EXPECT_EQ(MetricValue(m, "edge_gateway_degraded_responses_total"), 0);
  EXPECT_EQ(MetricValue(m, "edge_gateway_requests_total",
                        "code=\"DATA_LOSS\",method=\"Classify\""),
            2 * model.affected.size());
}

TEST(GatewayCacheTest, UnknownFailurePolicyStopsStartupNamingTheField) {
  Gateway gateway;
  EXPECT_FALSE(gateway.Start({"--expert_failure_policy=retry"}));
  EXPECT_THAT(gateway.process().log(),
              HasSubstr("INVALID_ARGUMENT: expert_failure_policy must be "
                        "\"fail\" or \"reroute\", got \"retry\""));
}

}  // namespace
}  // namespace edge
