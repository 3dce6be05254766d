// How edge-client reaches the gateway: the channel (target, credentials,
// reconnect policy), per-call deadlines, and the mapping of gRPC outcomes to
// absl::Status so the commands handle one error type. edge-loadtest uses
// the deadlines and the code names too. Stateless functions; the returned
// channel is thread-safe (gRPC channels are).
#ifndef EDGE_CLIENT_GATEWAY_CHANNEL_H_
#define EDGE_CLIENT_GATEWAY_CHANNEL_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace edge::client {

struct ConnectionOptions {
  // host:port (or any gRPC target URI, e.g. unix:/run/edge.sock).
  std::string target = "127.0.0.1:50051";
  // Deadline of each unary call; streams derive theirs from it.
  int64_t timeout_ms = 10000;
  // Cap on gRPC's reconnect backoff. gRPC's default (120 s) suits long-lived
  // clients; a CLI waiting for a server that is starting up should notice it
  // within about a second.
  int max_reconnect_backoff_ms = 1000;
  // PEM files. Any of them (or tls_server_name) set means TLS. tls_ca_file: the
  // CAs that may sign the gateway's certificate ("" = gRPC's default roots).
  // tls_cert_file and tls_key_file (together): this client's certificate,
  // for a gateway that requires mutual TLS.
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name the gateway's certificate must carry, instead of --target's
  // host: for a port-forward to 127.0.0.1, or a probe inside the pod.
  std::string tls_server_name;
};

// INVALID_ARGUMENT if the options cannot describe a channel (empty target,
// non-positive timeout, a TLS certificate without its key or the reverse);
// the error of reading a TLS file, naming its flag. Does not connect: gRPC
// connects (and does the TLS handshake) on the first call.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateGatewayChannel(
    const ConnectionOptions& options);

// Sets `context`'s deadline to now + timeout_ms.
void SetDeadlineAfter(grpc::ClientContext* context, int64_t timeout_ms);

// Sets `context`'s deadline to `deadline`, a time on the steady clock (the
// one clients schedule frames on; gRPC takes the system clock).
void SetDeadline(grpc::ClientContext* context,
                 std::chrono::steady_clock::time_point deadline);

// The same code and message as an absl::Status (the codes are identical).
absl::Status ToAbslStatus(const grpc::Status& status);

// The canonical name of a gRPC / google.rpc code ("UNAVAILABLE"), or
// "CODE_<n>" for a number outside the canonical range.
std::string StatusCodeName(int code);

}  // namespace edge::client

#endif  // EDGE_CLIENT_GATEWAY_CHANNEL_H_
