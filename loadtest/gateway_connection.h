// How edge-loadtest's clients reach the gateway: one channel, and so one
// TCP connection, per camera or unary client (a fleet of cameras does not
// share a connection, and sharing one would put every client behind a
// single HTTP/2 flow-control window), connected before the clock starts so
// that connection set-up is not measured as latency. Also the GetModelInfo
// call a run starts with.
//
// Stateless functions; gRPC channels are thread-safe.
#ifndef EDGE_LOADTEST_GATEWAY_CONNECTION_H_
#define EDGE_LOADTEST_GATEWAY_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "proto/gateway.pb.h"

namespace edge::loadtest {

// A channel of its own (local subchannel pool) to `target`. Does not
// connect; WaitForChannels() does.
std::shared_ptr<grpc::Channel> MakeClientChannel(const std::string& target);

// Connects every channel, waiting at most `timeout_ms` in all. UNAVAILABLE
// naming the target and how many channels did not connect.
absl::Status WaitForChannels(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels,
    const std::string& target, int64_t timeout_ms);

// GetModelInfo with a `timeout_ms` deadline; the gRPC error as an
// absl::Status (the codes are the same) naming the target.
absl::StatusOr<gateway::v1::ModelInfo> FetchModelInfo(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& target,
    int64_t timeout_ms);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_GATEWAY_CONNECTION_H_
