// ServerCredentials: the transport security of the gateway's gRPC port, from
// ServerConfig's tls_* fields.
//
//   tls_cert_file, tls_key_file  tls_client_ca_file  result
//   both empty                   empty               plaintext
//   both set                     empty               TLS; clients check us
//   both set                     set                 mutual TLS: a client
//                                                     must present a
//                                                     certificate signed by
//                                                     one of these CAs
//
// The PEM files are read and parsed here, once at start-up: gRPC itself only
// reports a bad certificate as a failed listen or a failed handshake, so
// checking here turns a missing, unreadable, malformed or mismatched file
// into a start-up error that names the field and the file. Files are read
// once; rotating certificates means restarting the gateway (a rolling
// update in Kubernetes).
//
// Thread-safe: pure functions.
#ifndef EDGE_SERVER_SERVER_CREDENTIALS_H_
#define EDGE_SERVER_SERVER_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"
#include "server/config.h"

namespace edge {

// REQUIRES: ValidateServerConfig(config) is OK (the tls_* fields come in
// the combinations above). NOT_FOUND / PERMISSION_DENIED for a file that
// cannot be read, INVALID_ARGUMENT for one that holds no usable PEM or a
// key that does not match the certificate; every message names the field
// and the path.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerConfig& config);

// One line for the start-up log: "plaintext", "TLS (certificate FILE)" or
// "mutual TLS (certificate FILE, client CA FILE)".
std::string DescribeTransportSecurity(const ServerConfig& config);

}  // namespace edge

#endif  // EDGE_SERVER_SERVER_CREDENTIALS_H_
