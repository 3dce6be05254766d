// Unary mode: closed-loop clients (see load_drivers.h), and MakeRequest,
// which both drivers use.
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "loadtest/load_drivers.h"
#include "proto/gateway.grpc.pb.h"

namespace edge::loadtest {
namespace {

struct UnaryClientResult {
  ClientLog log;
  int64_t send_end_ns = 0;
};

// Client `client`'s loop: send, wait for the answer (or the deadline),
// repeat until the run's end or the budget is spent.
void RunUnaryClient(const LoadContext& context, int client,
                    UnaryClientResult* result) {
  const LoadTestOptions& options = *context.options;
  auto stub = gateway::v1::InferenceGateway::NewStub(context.channels[client]);
  std::mt19937_64 rng = MakeClientRng(options.seed, client);
  const Clock::time_point end =
      context.start + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(options.duration_s));
  for (;;) {
    const Clock::time_point now = Clock::now();
    // Sending ends at `end` even though the last answer comes later, and
    // when the budget runs out, at that moment.
    if (now >= end) {
      result->send_end_ns = SinceStartNs(context, end);
      return;
    }
    if (!context.budget->TryTake()) {
      result->send_end_ns = SinceStartNs(context, now);
      return;
    }
    RequestRecord record;
    record.client = client;
    record.start_ns = record.sent_ns = SinceStartNs(context, now);
    record.scene = context.picker->Pick(client, record.start_ns * 1e-9, rng);
    const int64_t index = result->log.Add(record);
    grpc::ClientContext call;
    call.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(options.timeout_ms));
    gateway::v1::ClassifyResponse response;
    const grpc::Status status = stub->Classify(
        &call, MakeRequest(context, client, record.scene, index), &response);
    result->log.Answer(index, SinceStartNs(context, Clock::now()),
                       status.error_code(), status.ok() ? &response : nullptr);
  }
}

}  // namespace

gateway::v1::ClassifyRequest MakeRequest(const LoadContext& context, int client,
                                         int scene, int64_t index) {
  gateway::v1::ClassifyRequest request = (*context.frames)[scene].image;
  request.set_request_id(absl::StrCat(index));
  request.set_camera_id(absl::StrCat("cam-", client));
  // Unary calls also carry the gRPC deadline; streams have only this.
  request.set_timeout_us(static_cast<uint64_t>(context.options->timeout_ms) *
                         1000);
  return request;
}

DriverResult RunUnaryDriver(const LoadContext& context) {
  const int clients = context.options->concurrency;
  std::vector<UnaryClientResult> results(clients);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back(
        [&context, c, &results] { RunUnaryClient(context, c, &results[c]); });
  }
  for (std::thread& thread : threads) thread.join();

  DriverResult result;
  for (UnaryClientResult& client : results) {
    std::vector<RequestRecord> records = client.log.TakeRecords();
    result.records.insert(result.records.end(), records.begin(), records.end());
    result.send_end_ns = std::max(result.send_end_ns, client.send_end_ns);
  }
  return result;
}

}  // namespace edge::loadtest
