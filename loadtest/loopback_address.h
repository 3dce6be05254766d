// Parsing the addresses edge-loadtest may talk to, and refusing every one
// that is not on this machine. A load generator pointed at the wrong host is
// a denial-of-service tool, so the check is an allow-list: 127.0.0.0/8,
// "localhost" and [::1], nothing else (no DNS names, no unix: or scheme
// prefixes, no wildcard addresses). Stateless and thread-safe.
#ifndef EDGE_LOADTEST_LOOPBACK_ADDRESS_H_
#define EDGE_LOADTEST_LOOPBACK_ADDRESS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace edge::loadtest {

struct LoopbackAddress {
  std::string host;  // As written, without brackets: "127.0.0.1", "::1".
  int port = 0;      // 1..65535.
};

// "HOST:PORT" or "[::1]:PORT" with a loopback HOST. INVALID_ARGUMENT, with
// `flag` and the text in the message, for anything else.
absl::StatusOr<LoopbackAddress> ParseLoopbackHostPort(absl::string_view text,
                                                      absl::string_view flag);

struct LoopbackHttpUrl {
  LoopbackAddress address;
  std::string path = "/";  // Starts with '/'.
};

// "http://HOST:PORT/PATH" (PATH optional) with a loopback HOST. No https:
// the gateway's /metrics endpoint speaks plain HTTP.
absl::StatusOr<LoopbackHttpUrl> ParseLoopbackHttpUrl(absl::string_view text,
                                                     absl::string_view flag);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_LOOPBACK_ADDRESS_H_
