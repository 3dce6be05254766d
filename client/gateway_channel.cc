#include "client/gateway_channel.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace edge::client {
namespace {

// The only place that decides how the channel is secured. The gateway speaks
// plaintext for now; TLS (--tls_ca/--tls_cert/--tls_key) belongs here as
// grpc::SslCredentials built from fields added to ConnectionOptions.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ConnectionOptions& /*options*/) {
  return grpc::InsecureChannelCredentials();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateGatewayChannel(
    const ConnectionOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("--target must not be empty");
  }
  if (options.timeout_ms <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--timeout_ms must be positive, got ", options.timeout_ms));
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      MakeChannelCredentials(options);
  if (!credentials.ok()) return credentials.status();

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              options.max_reconnect_backoff_ms);
  // gRPC waits the initial backoff before the first retry whatever the cap,
  // so keep it within the cap too.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::min(options.max_reconnect_backoff_ms, 1000));
  return grpc::CreateCustomChannel(options.target, *credentials, args);
}

void SetDeadlineAfter(grpc::ClientContext* context, int64_t timeout_ms) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(timeout_ms));
}

absl::Status ToAbslStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::string StatusCodeName(int code) {
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? absl::StrCat("CODE_", code) : name;
}

}  // namespace edge::client
