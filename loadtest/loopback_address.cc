#include "loadtest/loopback_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace edge::loadtest {
namespace {

constexpr char kAllowed[] = "127.0.0.0/8, localhost or [::1]";

bool IsLoopbackHost(const std::string& host) {
  if (absl::AsciiStrToLower(host) == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return std::memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
  }
  return false;
}

absl::Status Refuse(absl::string_view flag, absl::string_view text,
                    absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " '", text, "': ", why,
                   "; edge-loadtest only targets loopback (", kAllowed, ")"));
}

}  // namespace

absl::StatusOr<LoopbackAddress> ParseLoopbackHostPort(absl::string_view text,
                                                      absl::string_view flag) {
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return Refuse(flag, text, "expected HOST:PORT");
  }
  absl::string_view host = text.substr(0, colon);
  const bool bracketed =
      absl::StartsWith(host, "[") && absl::EndsWith(host, "]");
  if (bracketed) host = host.substr(1, host.size() - 2);
  // An unbracketed IPv6 address would make "HOST:PORT" ambiguous.
  if (!bracketed && absl::StrContains(host, ':')) {
    return Refuse(flag, text, "write IPv6 hosts in brackets, e.g. [::1]:50051");
  }
  LoopbackAddress address;
  address.host = std::string(host);
  if (!IsLoopbackHost(address.host)) {
    return Refuse(flag, text,
                  absl::StrCat("host '", address.host, "' is not loopback"));
  }
  if (!absl::SimpleAtoi(text.substr(colon + 1), &address.port) ||
      address.port < 1 || address.port > 65535) {
    return Refuse(flag, text, "PORT must be 1..65535");
  }
  return address;
}

absl::StatusOr<LoopbackHttpUrl> ParseLoopbackHttpUrl(absl::string_view text,
                                                     absl::string_view flag) {
  constexpr absl::string_view kScheme = "http://";
  if (!absl::StartsWith(text, kScheme)) {
    return Refuse(flag, text, "expected http://HOST:PORT/PATH");
  }
  absl::string_view rest = text.substr(kScheme.size());
  const size_t slash = rest.find('/');
  LoopbackHttpUrl url;
  if (slash != absl::string_view::npos)
    url.path = std::string(rest.substr(slash));
  absl::StatusOr<LoopbackAddress> address =
      ParseLoopbackHostPort(rest.substr(0, slash), flag);
  if (!address.ok()) return address.status();
  url.address = *std::move(address);
  return url;
}

}  // namespace edge::loadtest
