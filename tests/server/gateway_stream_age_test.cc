// A ClassifyStream older than max_stream_age_ms, against the real
// edge_gateway on 127.0.0.1 whose connections also age out
// (max_connection_age_ms): the gateway stops reading, answers every frame
// it read exactly once, and ends the stream UNAVAILABLE saying why; gRPC
// does not cut the stream when its connection's GOAWAY comes; a new stream
// then works.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/gateway.grpc.pb.h"
#include "server/gateway_service.h"
#include "tests/testing/gateway_process.h"
#include "tests/testing/tensor_request.h"

namespace edge {
namespace {

using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;
using gateway::v1::InferenceGateway;
using test_support::GatewayProcess;
using test_support::MetricValue;
using test_support::RandomTensor;
using test_support::TensorRequest;
using test_support::TestModelDir;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// The connection's GOAWAY comes first (1 s, +-10%), the stream's age later.
constexpr int kConnectionAgeMs = 1000;
constexpr int kStreamAgeMs = 2500;

struct StreamRun {
  grpc::Status status;
  int sent = 0;
  std::map<std::string, int> answers;  // request_id -> times answered.
  int errors = 0;                      // answers with a non-OK frame status.
  double seconds = 0;
};

// Writes frames "0", "1", ... every 5 ms (200 frames/s; the tiny model
// keeps up) until the server ends the stream, reading answers meanwhile.
StreamRun StreamUntilEnded(InferenceGateway::Stub& stub) {
  StreamRun run;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const Clock::time_point start = Clock::now();
  auto stream = stub.ClassifyStream(&ctx);
  std::thread reader([&] {
    for (ClassifyResponse r; stream->Read(&r);) {
      ++run.answers[r.request_id()];
      if (r.status().code() != 0) ++run.errors;
    }
  });
  ClassifyRequest request = TensorRequest(RandomTensor(32, 1), 32);
  for (;; ++run.sent) {
    request.set_request_id(std::to_string(run.sent));
    if (!stream->Write(request)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  reader.join();
  run.status = stream->Finish();
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return run;
}

TEST(GatewayStreamAgeTest, OldStreamEndsSayingWhyAfterAnsweringItsFrames) {
  GatewayProcess server;
  ASSERT_TRUE(server.Start(
      {"--model_dir=" + TestModelDir("tiny-image"),
       "--max_connection_age_ms=" + std::to_string(kConnectionAgeMs),
       "--max_stream_age_ms=" + std::to_string(kStreamAgeMs)}))
      << server.log();
  auto channel =
      grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials());
  auto stub = InferenceGateway::NewStub(channel);

  const StreamRun run = StreamUntilEnded(*stub);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << run.status.error_message();
  EXPECT_THAT(run.status.error_message(), HasSubstr(kStreamMaxAgeMessage));
  EXPECT_THAT(run.status.error_message(), HasSubstr("reopen the stream"));
  // Past the connection's GOAWAY, ended by the gateway at the stream's age
  // (plus the last answers), not cut by gRPC.
  EXPECT_GE(run.seconds, kStreamAgeMs / 1000.0);
  EXPECT_LT(run.seconds, kStreamAgeMs / 1000.0 + 5);
  EXPECT_EQ(run.errors, 0);

  // The gateway reads frames in order and stops at its age: the answered
  // frames are the first ones sent, each answered once, and they are all
  // the answers the gateway produced for the stream.
  const int answered = static_cast<int>(run.answers.size());
  EXPECT_GT(answered, 100) << "the stream ran " << run.seconds << " s";
  EXPECT_LE(answered, run.sent);
  for (int i = 0; i < answered; ++i) {
    const auto it = run.answers.find(std::to_string(i));
    ASSERT_NE(it, run.answers.end()) << "frame " << i << " unanswered";
    EXPECT_EQ(it->second, 1) << "frame " << i;
  }
  const std::string key = "method=\"ClassifyStream\"";
  EXPECT_EQ(
      MetricValue(test_support::HttpGet(server.metrics_port(), "/metrics"),
                  "edge_gateway_requests_total", key),
      answered);

  // A new stream, on the channel whose first connection got its GOAWAY,
  // is served and ends OK when the client half-closes before its age.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->ClassifyStream(&ctx);
  ClassifyRequest request = TensorRequest(RandomTensor(32, 2), 32);
  for (int i = 0; i < 3; ++i) {
    request.set_request_id("again" + std::to_string(i));
    ASSERT_TRUE(stream->Write(request));
  }
  stream->WritesDone();
  int again = 0;
  for (ClassifyResponse r; stream->Read(&r);) again += r.status().code() == 0;
  const grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(again, 3);
}

}  // namespace
}  // namespace edge
