// The real edge_gateway process on 127.0.0.1, called over gRPC: what a
// camera client sees. Models come from CTest's engine.export_models fixture.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spng.h>
#include <turbojpeg.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <thread>

#include "engine/vmoe_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/gateway.grpc.pb.h"
#include "server/image_decoder.h"
#include "tests/testing/gateway_process.h"
#include "tests/testing/tensor_request.h"
#include "tests/testing/test_images.h"

namespace edge {
namespace {

using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;
using gateway::v1::InferenceGateway;
using test_support::EncodePng;
using test_support::GatewayProcess;
using test_support::MetricValue;
using test_support::RandomTensor;
using test_support::TensorRequest;
using test_support::TestModelDir;
using ::testing::HasSubstr;
using ::testing::Not;

std::string RandomRgb(int w, int h, int seed) {
  std::mt19937 rng(seed);
  std::string rgb(static_cast<size_t>(w) * h * 3, '\0');
  // Smooth gradients plus noise: JPEG-friendly, and not constant.
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) {
        rgb[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<char>(
            (x * 255 / w + y * (c + 1) * 7 + rng() % 16) % 256);
      }
    }
  }
  return rgb;
}

std::string EncodeJpeg(const std::string& rgb, int w, int h) {
  tjhandle tj = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  tjCompress2(tj, reinterpret_cast<const unsigned char*>(rgb.data()), w, 0, h,
              TJPF_RGB, &out, &size, TJSAMP_420, 90, 0);
  std::string jpeg(reinterpret_cast<char*>(out), size);
  tjFree(out);
  tjDestroy(tj);
  return jpeg;
}

// The fixture's server: tiny-image (32x32 input, image routing).
class GatewayTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags = {}) {
    flags.push_back("--model_dir=" + TestModelDir("tiny-image"));
    ASSERT_TRUE(server_.Start(flags)) << server_.log();
    channel_ = grpc::CreateChannel(server_.target(),
                                   grpc::InsecureChannelCredentials());
    stub_ = InferenceGateway::NewStub(channel_);
  }

  grpc::Status Classify(const ClassifyRequest& r, ClassifyResponse* out) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    return stub_->Classify(&ctx, r, out);
  }

  std::string Metrics() {
    return test_support::HttpGet(server_.metrics_port(), "/metrics");
  }

  GatewayProcess server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<InferenceGateway::Stub> stub_;
};

TEST_F(GatewayTest, InvalidConfigurationStopsStartupNamingTheField) {
  EXPECT_FALSE(server_.Start(
      {"--model_dir=" + TestModelDir("tiny-image"), "--max_batch_sise=4"}));
  EXPECT_THAT(server_.log(), HasSubstr("unknown configuration field "
                                       "'max_batch_sise'"));
  GatewayProcess missing_model;
  EXPECT_FALSE(missing_model.Start({"--model_dir=/nonexistent/model"}));
  EXPECT_THAT(missing_model.log(), HasSubstr("/nonexistent/model"));
}

// The gateway's environment, as its process sees it (after the re-exec
// that sets GOMP_SPINCOUNT for libgomp).
std::string EnvironOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ",
                   std::ios::binary);
  std::string env((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  std::replace(env.begin(), env.end(), '\0', '\n');
  return "\n" + env;
}

TEST_F(GatewayTest, EngineSpinCountIsSetBeforeOpenMpStarts) {
  StartServer();
  EXPECT_THAT(EnvironOf(server_.pid()), HasSubstr("\nGOMP_SPINCOUNT=1000\n"));
}

TEST_F(GatewayTest, OpenMpWaitVariablesOfTheUserWin) {
  setenv("OMP_WAIT_POLICY", "passive", 1);
  StartServer({"--engine_spin_count=5000"});
  unsetenv("OMP_WAIT_POLICY");
  const std::string env = EnvironOf(server_.pid());
  EXPECT_THAT(env, HasSubstr("\nOMP_WAIT_POLICY=passive\n"));
  EXPECT_THAT(env, Not(HasSubstr("GOMP_SPINCOUNT")));
}

TEST_F(GatewayTest, SpinCountMinusOneLeavesOpenMpsDefault) {
  StartServer({"--engine_spin_count=-1"});
  EXPECT_THAT(EnvironOf(server_.pid()), Not(HasSubstr("GOMP_SPINCOUNT")));
}

TEST_F(GatewayTest, HealthIsServing) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  grpc::ByteBuffer request, response;  // HealthCheckRequest{service: ""}
  grpc::Slice empty;
  request = grpc::ByteBuffer(&empty, 1);
  std::atomic<bool> done{false};
  grpc::Status status;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                    &request, &response, [&](grpc::Status s) {
                      status = s;
                      done = true;
                    });
  while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING (1)
}

TEST_F(GatewayTest, TensorLogitsEqualTheEngines) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto engine = VmoeEngine::Create(TestModelDir("tiny-image"));
  ASSERT_TRUE(engine.ok()) << engine.status();
  const int s = (*engine)->config().image_size;
  const auto t = RandomTensor(s, 5);
  const auto want = (*engine)->Run(t.data(), 1);
  ASSERT_TRUE(want.ok());
  ClassifyResponse got;
  ASSERT_TRUE(Classify(TensorRequest(t, s), &got).ok());
  ASSERT_EQ(got.logits_size(), (*engine)->config().num_classes);
  for (int i = 0; i < got.logits_size(); ++i) {
    EXPECT_NEAR(got.logits(i), (*want)[0].logits[i], 1e-4) << i;
  }
  EXPECT_EQ(got.top_size(), 5);
  EXPECT_EQ(got.experts_size(), 2);  // tiny-image has two MoE layers.
}

// A JPEG and a PNG classify; unary and stream answers equal each other and
// the engine's on the decoder's output for the same bytes.
TEST_F(GatewayTest, JpegAndPngMatchEngineInUnaryAndStream) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  auto engine = VmoeEngine::Create(TestModelDir("tiny-image"));
  ASSERT_TRUE(engine.ok());
  ImageDecoderOptions o;
  o.image_size = (*engine)->config().image_size;
  o.mean = (*engine)->manifest().mean();
  o.std = (*engine)->manifest().stddev();
  auto decoder = ImageDecoder::Create(o);
  ASSERT_TRUE(decoder.ok());
  const std::string rgb = RandomRgb(64, 48, 1);
  const std::vector<std::string> images{EncodeJpeg(rgb, 64, 48),
                                        EncodePng(rgb, 64, 48)};
  std::vector<ClassifyResponse> unary(2);
  for (int i = 0; i < 2; ++i) {
    std::vector<float> input(3 * o.image_size * o.image_size);
    ASSERT_TRUE((*decoder)->DecodeEncoded(images[i], input.data()).ok());
    const auto want = (*engine)->Run(input.data(), 1);
    ClassifyRequest r;
    r.set_encoded(images[i]);
    r.set_return_logits(true);
    r.set_request_id("img" + std::to_string(i));
    ASSERT_TRUE(Classify(r, &unary[i]).ok());
    EXPECT_EQ(unary[i].request_id(), r.request_id());
    for (int c = 0; c < unary[i].logits_size(); ++c) {
      EXPECT_NEAR(unary[i].logits(c), (*want)[0].logits[c], 1e-4);
    }
  }
  grpc::ClientContext ctx;
  auto stream = stub_->ClassifyStream(&ctx);
  for (int i = 0; i < 2; ++i) {
    ClassifyRequest r;
    r.set_encoded(images[i]);
    r.set_return_logits(true);
    r.set_request_id("img" + std::to_string(i));
    ASSERT_TRUE(stream->Write(r));
  }
  stream->WritesDone();
  std::map<std::string, ClassifyResponse> streamed;
  for (ClassifyResponse r; stream->Read(&r);) streamed[r.request_id()] = r;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(streamed.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& s = streamed["img" + std::to_string(i)];
    EXPECT_EQ(s.top(0).index(), unary[i].top(0).index());
    for (int c = 0; c < s.logits_size(); ++c) {
      EXPECT_NEAR(s.logits(c), unary[i].logits(c), 1e-4);
    }
  }
}

// Field inputs (issue 13): a CMYK camera JPEG is converted and served; a
// PNG whose last IDAT fails its CRC is refused, not classified from
// whatever the damaged data inflated to.
TEST_F(GatewayTest, CmykJpegIsServedAndPngCrcErrorIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const int w = 64, h = 48;
  std::string cmyk(static_cast<size_t>(w) * h * 4, '\0');
  for (size_t i = 0; i < cmyk.size(); ++i) cmyk[i] = static_cast<char>(i % 251);
  tjhandle tj = tjInitCompress();
  unsigned char* jpeg = nullptr;
  unsigned long size = 0;
  ASSERT_EQ(tjCompress2(tj, reinterpret_cast<const unsigned char*>(cmyk.data()),
                        w, 0, h, TJPF_CMYK, &jpeg, &size, TJSAMP_444, 90, 0),
            0);
  ClassifyRequest r;
  r.set_encoded(std::string(reinterpret_cast<char*>(jpeg), size));
  tjFree(jpeg);
  tjDestroy(tj);
  ClassifyResponse out;
  const grpc::Status served = Classify(r, &out);
  EXPECT_TRUE(served.ok()) << served.error_message();
  EXPECT_GT(out.top_size(), 0);

  std::string png = EncodePng(RandomRgb(w, h, 5), w, h);
  const size_t iend = png.rfind("IEND");
  ASSERT_NE(iend, std::string::npos);
  png[iend - 5] ^= 0x01;  // the CRC of the chunk before IEND: the last IDAT
  r.set_encoded(png);
  const grpc::Status refused = Classify(r, &out);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("CRC"));
}

TEST_F(GatewayTest, BadInputIsInvalidArgumentAndServingGoesOn) {
  ASSERT_NO_FATAL_FAILURE(StartServer({"--max_image_bytes=100000"}));
  const std::string rgb = RandomRgb(64, 48, 2);
  const std::string png = EncodePng(rgb, 64, 48);
  std::vector<std::pair<std::string, ClassifyRequest>> bad;
  ClassifyRequest r;
  r.set_encoded("this is not an image");
  bad.push_back({"unknown format", r});
  r.set_encoded(png.substr(0, png.size() / 2));
  bad.push_back({"truncated PNG", r});
  std::string corrupt = EncodeJpeg(rgb, 64, 48);
  for (size_t i = corrupt.size() / 3; i < corrupt.size() - 2; i += 7)
    corrupt[i] ^= 0x5a;
  r.set_encoded(corrupt);
  bad.push_back({"corrupt JPEG", r});
  r.set_encoded(std::string(200000, 'x'));
  bad.push_back({"oversized", r});
  bad.push_back({"wrong tensor shape", TensorRequest(RandomTensor(16, 1), 16)});
  r.Clear();
  bad.push_back({"no image", r});
  for (const auto& [what, request] : bad) {
    ClassifyResponse out;
    const grpc::Status s = Classify(request, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << what << ": " << s.error_message();
    EXPECT_FALSE(s.error_message().empty()) << what;
  }
  ClassifyRequest good;
  good.set_encoded(png);
  ClassifyResponse out;
  EXPECT_TRUE(Classify(good, &out).ok());
  // In a stream, a bad frame is answered with its own status; the stream
  // goes on and the next frame is classified.
  grpc::ClientContext ctx;
  auto stream = stub_->ClassifyStream(&ctx);
  ClassifyRequest bad_frame;
  bad_frame.set_request_id("bad");
  bad_frame.set_encoded("garbage");
  good.set_request_id("good");
  ASSERT_TRUE(stream->Write(bad_frame));
  ASSERT_TRUE(stream->Write(good));
  stream->WritesDone();
  std::map<std::string, ClassifyResponse> got;
  for (ClassifyResponse resp; stream->Read(&resp);)
    got[resp.request_id()] = resp;
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(got["bad"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got["good"].status().code(), 0);
  EXPECT_GT(got["good"].top_size(), 0);
}

TEST_F(GatewayTest, MetricsPassPromtoolAndCountersMove) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::string before = Metrics();
  const std::string key = "method=\"Classify\"";
  const double ok_before =
      MetricValue(before, "edge_gateway_requests_total", key);
  ClassifyRequest r;
  r.set_encoded(EncodePng(RandomRgb(40, 40, 3), 40, 40));
  ClassifyResponse out;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Classify(r, &out).ok());
  int experts_per_answer = 0;  // image routing: one activation per choice
  for (const auto& layer : out.experts()) {
    experts_per_answer += layer.experts_size();
  }
  ASSERT_GT(experts_per_answer, 0);
  r.set_encoded("junk");
  EXPECT_FALSE(Classify(r, &out).ok());
  const std::string after = Metrics();
  EXPECT_EQ(MetricValue(after, "edge_gateway_requests_total",
                        "code=\"OK\",method=\"Classify\"") -
                MetricValue(before, "edge_gateway_requests_total",
                            "code=\"OK\",method=\"Classify\""),
            3);
  EXPECT_EQ(MetricValue(after, "edge_gateway_requests_total", key) - ok_before,
            4);
  EXPECT_GT(MetricValue(after, "edge_gateway_expert_cache_loads_total"), 0);
  const std::string activations = "edge_gateway_expert_activations_total";
  // MetricValue without labels sums every series of the counter.
  EXPECT_EQ(MetricValue(after, activations) - MetricValue(before, activations),
            3 * experts_per_answer);
  EXPECT_GT(MetricValue(after, "process_resident_memory_bytes"), 0);
  std::string promtool;
  EXPECT_EQ(
      test_support::RunWithInput("promtool check metrics", after, &promtool), 0)
      << promtool;
}

// Both say the routing the same way (ModelConfig::routing_name()).
TEST_F(GatewayTest, ModelInfoAndMetricNameTheRoutingAlike) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  gateway::v1::ModelInfo info;
  ASSERT_TRUE(
      stub_->GetModelInfo(&ctx, gateway::v1::GetModelInfoRequest(), &info)
          .ok());
  EXPECT_EQ(info.routing(), "image");
  EXPECT_EQ(MetricValue(Metrics(), "edge_gateway_model_info",
                        "routing=\"" + info.routing() + "\""),
            1);
}

// Issue 13's overload case: 100 served calls, then 300 refused ones
// (INVALID_ARGUMENT at admission, in microseconds). The served latency
// figures (code="OK") stay those of the 100 served calls, as the server
// timed them (timing.total_us); the refusals are counted apart.
TEST_F(GatewayTest, RefusalsDoNotMoveTheServedLatency) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const ClassifyRequest served = TensorRequest(RandomTensor(32, 9), 32);
  std::vector<double> served_s;
  for (int i = 0; i < 100; ++i) {
    ClassifyResponse out;
    ASSERT_TRUE(Classify(served, &out).ok());
    served_s.push_back(out.timing().total_us() * 1e-6);
  }
  std::sort(served_s.begin(), served_s.end());
  ClassifyRequest refused;  // no image: refused at admission.
  for (int i = 0; i < 300; ++i) {
    ClassifyResponse out;
    ASSERT_EQ(Classify(refused, &out).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  const std::string metrics = Metrics();
  const std::string ok = "code=\"OK\",method=\"Classify\"";
  const std::string bad = "code=\"INVALID_ARGUMENT\",method=\"Classify\"";
  const std::string h = "edge_gateway_request_duration_seconds";
  const std::string s = "edge_gateway_request_latency_seconds";
  EXPECT_EQ(MetricValue(metrics, h + "_count", ok), 100);
  EXPECT_EQ(MetricValue(metrics, h + "_count", bad), 300);
  EXPECT_EQ(MetricValue(metrics, s + "_count", ok), 100);
  EXPECT_EQ(MetricValue(metrics, s + "_count", bad), 0);
  // The summary's rank errors are 0.5% (P50) and 0.1% (P99) of 100
  // answers: P50 lies among the middle served times, P99 among the top
  // ones. The service times a call from its handler, the pipeline from
  // admission: 1 ms of slack covers the difference.
  const double p50 = MetricValue(metrics, s, ok + ",quantile=\"0.5\"");
  const double p99 = MetricValue(metrics, s, ok + ",quantile=\"0.99\"");
  EXPECT_GE(p50, served_s[45]);
  EXPECT_LE(p50, served_s[55] + 0.001);
  EXPECT_GE(p99, served_s[95]);
  EXPECT_LE(p99, served_s[99] + 0.001);
}

std::string CodesText(const std::map<grpc::StatusCode, int>& codes) {
  std::string out;
  for (const auto& [code, count] : codes) {
    out += std::to_string(code) + ":" + std::to_string(count) + " ";
  }
  return out;
}

// Runs `n` unary calls at once; returns the count of each status code.
std::map<grpc::StatusCode, int> Flood(InferenceGateway::Stub& stub, int n,
                                      const ClassifyRequest& request) {
  std::vector<grpc::ClientContext> contexts(n);
  std::vector<ClassifyResponse> responses(n);
  std::mutex mu;
  std::condition_variable cv;
  std::map<grpc::StatusCode, int> codes;
  int finished = 0;
  for (int i = 0; i < n; ++i) {
    contexts[i].set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(60));
    stub.async()->Classify(&contexts[i], &request, &responses[i],
                           [&](grpc::Status s) {
                             std::lock_guard<std::mutex> lock(mu);
                             ++codes[s.error_code()];
                             ++finished;
                             cv.notify_all();
                           });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == n; });
  return codes;
}

TEST_F(GatewayTest, ExpiredDeadlineIsNotComputed) {
  // A batch waits up to 200 ms to fill, so a 1 ms budget cannot be met.
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--max_batch_size=8", "--max_queue_delay_us=200000"}));
  ClassifyRequest r = TensorRequest(RandomTensor(32, 1), 32);
  r.set_timeout_us(1000);
  ClassifyResponse out;
  const grpc::Status s = Classify(r, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_message();
  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, "edge_gateway_requests_total",
                        "code=\"DEADLINE_EXCEEDED\""),
            1);
  EXPECT_EQ(MetricValue(metrics, "edge_gateway_batch_size_count"), 0)
      << "the expired request must not be computed";
}

// timeout_us is a uint64: budgets whose sum with the clock overflows int64
// (2^63-1, 2^64-1 us) mean no deadline and are served, like 2^62 us (about
// 146,000 years), unary and in a stream.
TEST_F(GatewayTest, HugeTimeoutsAreServed) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  const std::vector<uint64_t> timeouts = {
      uint64_t{std::numeric_limits<int64_t>::max()},
      std::numeric_limits<uint64_t>::max(), uint64_t{1} << 62};
  ClassifyRequest r = TensorRequest(RandomTensor(32, 8), 32);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub_->ClassifyStream(&ctx);
  for (const uint64_t timeout : timeouts) {
    r.set_timeout_us(timeout);
    r.set_request_id(std::to_string(timeout));
    ClassifyResponse out;
    const grpc::Status s = Classify(r, &out);
    EXPECT_TRUE(s.ok()) << timeout << " us: " << s.error_message();
    EXPECT_GT(out.top_size(), 0) << timeout;
    ASSERT_TRUE(stream->Write(r));
  }
  stream->WritesDone();
  std::map<std::string, ClassifyResponse> streamed;
  for (ClassifyResponse resp; stream->Read(&resp);) {
    streamed[resp.request_id()] = resp;
  }
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_EQ(streamed.size(), timeouts.size());
  for (const auto& [id, resp] : streamed) {
    EXPECT_EQ(resp.status().code(), 0)
        << id << " us: " << resp.status().message();
  }
  EXPECT_EQ(MetricValue(Metrics(), "edge_gateway_requests_total",
                        "code=\"DEADLINE_EXCEEDED\""),
            0);
}

// The case: a full batch occupies the engine (vmoe-s32-e32 with cold
// experts: every expert is loaded and verified from disk, hundreds of ms),
// and a request with a 1 ms budget arrives behind it. It must be answered
// DEADLINE_EXCEEDED without being computed; the full batch is answered OK.
TEST_F(GatewayTest, OneMillisecondDeadlineBehindFullBatchExpires) {
  ASSERT_TRUE(server_.Start({"--model_dir=" + TestModelDir("vmoe-s32-e32"),
                             "--max_batch_size=4", "--max_queue_delay_us=0",
                             "--warmup_batches=0"}))
      << server_.log();
  auto stub = InferenceGateway::NewStub(grpc::CreateChannel(
      server_.target(), grpc::InsecureChannelCredentials()));
  constexpr int kSide = 224;
  std::map<grpc::StatusCode, int> batch_codes;
  std::thread full_batch([&] {
    batch_codes = Flood(*stub, 4, TensorRequest(RandomTensor(kSide, 6), kSide));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ClassifyRequest late = TensorRequest(RandomTensor(kSide, 7), kSide);
  late.set_timeout_us(1000);
  grpc::ClientContext ctx;
  ClassifyResponse out;
  const grpc::Status s = stub->Classify(&ctx, late, &out);
  full_batch.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_message();
  EXPECT_EQ(batch_codes[grpc::StatusCode::OK], 4);
  const std::string metrics = Metrics();
  EXPECT_EQ(MetricValue(metrics, "edge_gateway_batch_size_sum"), 4)
      << "the late request must not be computed";
}

// A flood beyond max_queue_size: the excess is refused UNAVAILABLE at once,
// everything admitted is answered OK, and nothing is lost.
TEST_F(GatewayTest, FloodBeyondQueueIsUnavailableAndNothingIsDropped) {
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--max_batch_size=4", "--max_queue_size=8",
                   "--max_queue_delay_us=50000"}));
  constexpr int kRequests = 200;
  auto codes = Flood(*stub_, kRequests, TensorRequest(RandomTensor(32, 2), 32));
  EXPECT_GT(codes[grpc::StatusCode::UNAVAILABLE], 0);
  EXPECT_GT(codes[grpc::StatusCode::OK], 0);
  EXPECT_EQ(codes[grpc::StatusCode::OK] + codes[grpc::StatusCode::UNAVAILABLE],
            kRequests);
}

TEST_F(GatewayTest, ConcurrentClientsAreBatched) {
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--max_batch_size=16", "--max_queue_delay_us=5000"}));
  auto codes = Flood(*stub_, 64, TensorRequest(RandomTensor(32, 3), 32));
  EXPECT_EQ(codes[grpc::StatusCode::OK], 64);
  const std::string metrics = Metrics();
  const double batches = MetricValue(metrics, "edge_gateway_batch_size_count");
  const double singles =
      MetricValue(metrics, "edge_gateway_batch_size_bucket", "le=\"1\"");
  EXPECT_GT(batches, singles) << "no batch held more than one image";
  EXPECT_LT(batches, 64);
}

// SIGTERM under load: every admitted request is answered (OK, or
// UNAVAILABLE if it arrived after the drain began), and the exit code is 0.
TEST_F(GatewayTest, SigtermUnderLoadAnswersEverythingAndExitsZero) {
  ASSERT_NO_FATAL_FAILURE(
      StartServer({"--max_batch_size=4", "--max_queue_delay_us=20000"}));
  std::map<grpc::StatusCode, int> codes;
  std::thread load([&] {
    codes = Flood(*stub_, 100, TensorRequest(RandomTensor(32, 4), 32));
  });
  // "Under load": SIGTERM only once the gateway holds admitted requests.
  for (int i = 0; i < 1000; ++i) {
    if (MetricValue(Metrics(), "edge_gateway_inflight_requests") > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(server_.Stop(SIGTERM), 0) << server_.log();
  load.join();
  EXPECT_GT(codes[grpc::StatusCode::OK], 0);
  EXPECT_EQ(codes[grpc::StatusCode::OK] + codes[grpc::StatusCode::UNAVAILABLE],
            100)
      << "some requests got neither an answer nor a refusal: "
      << CodesText(codes);
  EXPECT_THAT(server_.log(), HasSubstr("draining"));
}

}  // namespace
}  // namespace edge
