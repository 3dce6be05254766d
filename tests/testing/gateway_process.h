// GatewayProcess: runs the real edge_gateway binary on loopback for
// integration tests, with ports chosen by the kernel (port 0) and read from
// the server's "serving ... port P metrics_port M" log line.
// Not thread-safe; one per test.
#ifndef EDGE_TESTS_TESTING_GATEWAY_PROCESS_H_
#define EDGE_TESTS_TESTING_GATEWAY_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

namespace edge {
namespace test_support {

class GatewayProcess {
 public:
  GatewayProcess() = default;
  GatewayProcess(const GatewayProcess&) = delete;
  GatewayProcess& operator=(const GatewayProcess&) = delete;
  ~GatewayProcess();  // SIGKILLs a server still running.

  // Starts $EDGE_GATEWAY with `flags` plus loopback listen addresses on
  // port 0; waits (up to 60 s) for the serving line. False if the server
  // exits or never serves; log() says why.
  bool Start(const std::vector<std::string>& flags);
  // Sends `signal` and waits for exit; returns the exit code (or 128+signal
  // if killed by one), -1 on timeout.
  int Stop(int signal, int timeout_ms = 30000);

  // Before Start(): the child moves itself into this cgroup (its
  // cgroup.procs file) before it executes the gateway; "" = stay.
  void set_cgroup_procs_file(std::string path) {
    cgroup_procs_file_ = std::move(path);
  }

  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  int metrics_port() const { return metrics_port_; }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string cgroup_procs_file_;
  int stderr_fd_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
  std::string log_;
};

// GET http://127.0.0.1:`port``path`; the body, or "" on failure.
std::string HttpGet(int port, const std::string& path);

// Sum of the samples of metric `name` (exactly that series name) whose
// label text contains `labels`, in a text exposition.
double MetricValue(const std::string& text, const std::string& name,
                   const std::string& labels = "");

// The exported test model `name`: under $EDGE_TEST_MODELS, else the build
// tree's test-models directory compiled in as EDGE_TEST_MODELS_DIR.
std::string TestModelDir(const std::string& name);

// Runs `command` with `input` on stdin; returns its exit code and sets
// `*output` to what it printed (stdout and stderr).
int RunWithInput(const std::string& command, const std::string& input,
                 std::string* output);

}  // namespace test_support
}  // namespace edge

#endif  // EDGE_TESTS_TESTING_GATEWAY_PROCESS_H_
