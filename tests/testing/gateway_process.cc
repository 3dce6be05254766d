#include "tests/testing/gateway_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <sstream>
#include <thread>

namespace edge {
namespace test_support {
namespace {

// Reads what is available on `fd` into `log`, waiting up to `ms`.
bool ReadSome(int fd, int ms, std::string* log) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) return false;
  char buf[4096];
  const ssize_t n = read(fd, buf, sizeof(buf));
  if (n <= 0) return false;
  log->append(buf, static_cast<size_t>(n));
  return true;
}

}  // namespace

GatewayProcess::~GatewayProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

bool GatewayProcess::Start(const std::vector<std::string>& flags) {
  const char* binary = std::getenv("EDGE_GATEWAY");
#ifdef EDGE_GATEWAY_BINARY
  if (binary == nullptr) binary = EDGE_GATEWAY_BINARY;
#endif
  if (binary == nullptr) {
    log_ = "EDGE_GATEWAY is not set";
    return false;
  }
  std::vector<std::string> args{binary, "--listen_address=127.0.0.1:0",
                                "--metrics_address=127.0.0.1:0"};
  args.insert(args.end(), flags.begin(), flags.end());
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return false;
  pid_ = fork();
  if (pid_ == 0) {
    if (!cgroup_procs_file_.empty()) {
      const std::string self = std::to_string(getpid());
      const int fd = open(cgroup_procs_file_.c_str(), O_WRONLY);
      if (fd < 0 || write(fd, self.data(), self.size()) < 0) _exit(126);
      close(fd);
    }
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  stderr_fd_ = pipe_fds[0];
  const std::regex serving(R"(serving .* port (\d+) metrics_port (\d+))");
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    if (std::regex_search(log_, m, serving)) {
      port_ = std::stoi(m[1]);
      metrics_port_ = std::stoi(m[2]);
      return true;
    }
    if (!ReadSome(stderr_fd_, 100, &log_) &&
        waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
  }
  return false;
}

int GatewayProcess::Stop(int signal, int timeout_ms) {
  if (pid_ <= 0) return -1;
  kill(pid_, signal);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    ReadSome(stderr_fd_, 20, &log_);
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      while (ReadSome(stderr_fd_, 0, &log_)) {
      }
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
  }
  return -1;
}

std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request =
        "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (write(fd, request.data(), request.size()) ==
        static_cast<ssize_t>(request.size())) {
      while (ReadSome(fd, 5000, &response)) {
      }
    }
  }
  close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

double MetricValue(const std::string& text, const std::string& name,
                   const std::string& labels) {
  double sum = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name, 0) != 0 || line.find(labels) == std::string::npos)
      continue;
    const char next = line[name.size()];
    if (next != '{' && next != ' ') continue;
    sum += std::stod(line.substr(line.rfind(' ') + 1));
  }
  return sum;
}

std::string TestModelDir(const std::string& name) {
  const char* root = std::getenv("EDGE_TEST_MODELS");
#ifdef EDGE_TEST_MODELS_DIR
  if (root == nullptr) root = EDGE_TEST_MODELS_DIR;
#endif
  return std::string(root != nullptr ? root : "") + "/" + name;
}

int RunWithInput(const std::string& command, const std::string& input,
                 std::string* output) {
  char path[] = "/tmp/edge_input_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return -1;
  const bool written = write(fd, input.data(), input.size()) ==
                       static_cast<ssize_t>(input.size());
  close(fd);
  int code = -1;
  if (written) {
    const std::string full = command + " < " + path + " 2>&1";
    FILE* pipe = popen(full.c_str(), "r");
    if (pipe != nullptr) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
      const int status = pclose(pipe);
      code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
  }
  unlink(path);
  return code;
}

}  // namespace test_support
}  // namespace edge
