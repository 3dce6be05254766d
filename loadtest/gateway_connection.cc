#include "loadtest/gateway_connection.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "proto/gateway.grpc.pb.h"

namespace edge::loadtest {

std::shared_ptr<grpc::Channel> MakeClientChannel(const std::string& target) {
  grpc::ChannelArguments args;
  // Without this, channels with equal arguments share one subchannel, i.e.
  // one TCP connection for the whole fleet.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A load test is short: notice a restarted server within a second rather
  // than after gRPC's default backoff of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   args);
}

absl::Status WaitForChannels(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const std::string& target, int64_t timeout_ms) {
  const auto deadline =
      std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms);
  int failed = 0;
  for (const std::shared_ptr<grpc::Channel>& channel : channels) {
    if (!channel->WaitForConnected(deadline)) ++failed;
  }
  if (failed == 0) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(failed, " of ", channels.size(), " connections to ", target,
                   " not established within ", timeout_ms, " ms"));
}

absl::StatusOr<gateway::v1::ModelInfo> FetchModelInfo(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& target,
    int64_t timeout_ms) {
  auto stub = gateway::v1::InferenceGateway::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(timeout_ms));
  gateway::v1::ModelInfo info;
  const grpc::Status status =
      stub->GetModelInfo(&context, gateway::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) {
    return absl::Status(
        static_cast<absl::StatusCode>(status.error_code()),
        absl::StrCat("GetModelInfo on ", target, ": ", status.error_message()));
  }
  return info;
}

}  // namespace edge::loadtest
