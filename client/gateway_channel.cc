#include "client/gateway_channel.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "client/image_files.h"
#include "common/status_macros.h"

namespace edge::client {
namespace {

// `path`'s bytes; an error names the flag it came from.
absl::StatusOr<std::string> ReadPemFlag(absl::string_view flag,
                                        const std::string& path) {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> pem = ReadFileBytes(path);
  if (!pem.ok()) {
    return absl::Status(pem.status().code(),
                        absl::StrCat("--", flag, ": ", pem.status().message()));
  }
  return pem;
}

bool UsesTls(const ConnectionOptions& options) {
  return !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
         !options.tls_key_file.empty() || !options.tls_server_name.empty();
}

// The only place that decides how the channel is secured: plaintext unless a
// --tls_* flag is given, then TLS, presenting a client certificate if one is
// given (the gateway's mutual TLS mode requires it).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ConnectionOptions& options) {
  if (!UsesTls(options)) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key must be given together");
  }
  grpc::SslCredentialsOptions ssl;
  ASSIGN_OR_RETURN(ssl.pem_root_certs,
                   ReadPemFlag("tls_ca", options.tls_ca_file));
  ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                   ReadPemFlag("tls_cert", options.tls_cert_file));
  ASSIGN_OR_RETURN(ssl.pem_private_key,
                   ReadPemFlag("tls_key", options.tls_key_file));
  return grpc::SslCredentials(ssl);
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
  // Only TLS checks names, and a server name alone already means TLS.
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.target, *credentials, args);
}

void SetDeadlineAfter(grpc::ClientContext* context, int64_t timeout_ms) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(timeout_ms));
}

void SetDeadline(grpc::ClientContext* context,
                 std::chrono::steady_clock::time_point deadline) {
  context->set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          deadline - std::chrono::steady_clock::now()));
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
