#include "loadtest/metrics_scrape.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edge::loadtest {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Closes the descriptor on every return path.
class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  const int fd_;
};

// Milliseconds left until `deadline`, at least 0.
int MsLeft(SteadyClock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - SteadyClock::now());
  return static_cast<int>(std::max<int64_t>(left.count(), 0));
}

// Waits for `events` on fd; false on timeout or error.
bool WaitFor(int fd, short events, SteadyClock::time_point deadline) {
  pollfd p = {fd, events, 0};
  int ready;
  do {
    ready = poll(&p, 1, MsLeft(deadline));
  } while (ready < 0 && errno == EINTR);
  return ready == 1 && (p.revents & (events | POLLHUP)) != 0;
}

absl::StatusOr<int> Connect(const LoopbackAddress& address,
                            SteadyClock::time_point deadline) {
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(address.port);
  if (getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", address.host));
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int rc = fd < 0 ? -1 : connect(fd, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  if (rc != 0 && fd >= 0 && errno == EINPROGRESS &&
      WaitFor(fd, POLLOUT, deadline)) {
    int error = 0;
    socklen_t size = sizeof(error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size);
    rc = error == 0 ? 0 : -1;
  }
  if (rc != 0) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", address.host, ":", address.port));
  }
  return fd;
}

absl::Status SendAll(int fd, absl::string_view data,
                     SteadyClock::time_point deadline) {
  while (!data.empty()) {
    if (!WaitFor(fd, POLLOUT, deadline)) {
      return absl::UnavailableError("timed out sending the request");
    }
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    }
    if (n > 0) data.remove_prefix(n);
  }
  return absl::OkStatus();
}

// Everything the server sends until it closes the connection.
absl::StatusOr<std::string> ReceiveAll(int fd,
                                       SteadyClock::time_point deadline) {
  std::string answer;
  char buffer[16384];
  for (;;) {
    if (!WaitFor(fd, POLLIN, deadline)) {
      return absl::UnavailableError("timed out reading the answer");
    }
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) return answer;
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
    }
    if (n > 0) answer.append(buffer, n);
  }
}

// The body of a complete HTTP/1.x answer with status 200.
absl::StatusOr<std::string> BodyOf(const std::string& answer) {
  const size_t head_end = answer.find("\r\n\r\n");
  const absl::string_view status_line =
      absl::string_view(answer).substr(0, answer.find("\r\n"));
  if (head_end == std::string::npos ||
      !absl::StartsWith(status_line, "HTTP/")) {
    return absl::InternalError("malformed HTTP answer");
  }
  const std::vector<absl::string_view> words = absl::StrSplit(status_line, ' ');
  if (words.size() < 2 || words[1] != "200") {
    return absl::InternalError(absl::StrCat("HTTP answer '", status_line, "'"));
  }
  const std::string head = absl::AsciiStrToLower(answer.substr(0, head_end));
  if (absl::StrContains(head, "transfer-encoding: chunked")) {
    // Not sent to an HTTP/1.0 request (RFC 9112, 7.1); refuse, do not guess.
    return absl::InternalError("unexpected chunked answer to HTTP/1.0");
  }
  return answer.substr(head_end + 4);
}

}  // namespace

absl::StatusOr<std::string> HttpGet(const LoopbackHttpUrl& url,
                                    int64_t timeout_ms) {
  const auto deadline =
      SteadyClock::now() + std::chrono::milliseconds(timeout_ms);
  absl::StatusOr<int> fd = Connect(url.address, deadline);
  if (!fd.ok()) return fd.status();
  Socket socket(*fd);
  const std::string request =
      absl::StrCat("GET ", url.path, " HTTP/1.0\r\nHost: ", url.address.host,
                   ":", url.address.port, "\r\nConnection: close\r\n\r\n");
  if (absl::Status s = SendAll(socket.fd(), request, deadline); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> answer = ReceiveAll(socket.fd(), deadline);
  if (!answer.ok()) return answer.status();
  return BodyOf(*answer);
}

absl::StatusOr<double> SumSamples(absl::string_view exposition,
                                  absl::string_view name) {
  double sum = 0;
  bool found = false;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (!absl::ConsumePrefix(&line, name)) continue;
    // `name` must end here: "foo_sum" is not a sample of "foo".
    if (line.empty() || (line[0] != '{' && line[0] != ' ')) continue;
    if (line[0] == '{') {
      // Skip the labels; a '}' inside a quoted label value does not count.
      bool quoted = false;
      size_t i = 1;
      for (; i < line.size() && (quoted || line[i] != '}'); ++i) {
        if (line[i] == '\\')
          ++i;
        else if (line[i] == '"')
          quoted = !quoted;
      }
      line.remove_prefix(std::min(i + 1, line.size()));
    }
    line = absl::StripLeadingAsciiWhitespace(line);
    const absl::string_view value = line.substr(0, line.find(' '));
    double parsed = 0;
    if (!absl::SimpleAtod(value, &parsed)) continue;
    sum += parsed;
    found = true;
  }
  if (!found) return absl::NotFoundError(absl::StrCat("no metric ", name));
  return sum;
}

absl::StatusOr<ServerCounters> ScrapeServerCounters(const std::string& url,
                                                    int64_t timeout_ms) {
  absl::StatusOr<LoopbackHttpUrl> parsed =
      ParseLoopbackHttpUrl(url, "--metrics_url");
  if (!parsed.ok()) return parsed.status();
  absl::StatusOr<std::string> body = HttpGet(*parsed, timeout_ms);
  if (!body.ok()) {
    return absl::Status(
        body.status().code(),
        absl::StrCat("GET ", url, ": ", body.status().message()));
  }
  ServerCounters counters;
  const std::pair<const char*, double*> fields[] = {
      {"edge_gateway_expert_cache_hits_total", &counters.cache_hits},
      {"edge_gateway_expert_cache_misses_total", &counters.cache_misses},
      {"edge_gateway_batch_size_sum", &counters.batch_size_sum},
      {"edge_gateway_batch_size_count", &counters.batch_size_count},
  };
  for (const auto& [name, field] : fields) {
    absl::StatusOr<double> value = SumSamples(*body, name);
    if (!value.ok()) return value.status();
    *field = *value;
  }
  return counters;
}

}  // namespace edge::loadtest
