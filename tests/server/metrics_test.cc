#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace edge {
namespace {

using ::testing::HasSubstr;
using Method = GatewayMetrics::Method;
using Stage = GatewayMetrics::Stage;

constexpr int kOk = 0;
constexpr int kDeadlineExceeded = 4;

// "name{labels}" -> value, for every sample line of a text exposition.
std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> samples;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    samples[line.substr(0, space)] = std::strtod(&line[space + 1], nullptr);
  }
  return samples;
}

// Samples whose series name (before any '{') is `name`.
int CountSeries(const std::map<std::string, double>& samples,
                const std::string& name) {
  int count = 0;
  for (const auto& [series, value] : samples) {
    if (series.substr(0, series.find('{')) == name) ++count;
  }
  return count;
}

GatewayMetricsOptions LocalOptions() {
  GatewayMetricsOptions options;
  options.listen_address = "";
  options.model_name = "vmoe-tiny-224";
  options.precision = "float32";
  options.routing = "image";
  options.moe_layers = {{7, 8}, {9, 8}, {11, 8}};
  return options;
}

std::unique_ptr<GatewayMetrics> MakeMetrics(GatewayMetricsOptions options) {
  auto metrics = GatewayMetrics::Create(std::move(options));
  EXPECT_TRUE(metrics.ok()) << metrics.status();
  return metrics.ok() ? std::move(*metrics) : nullptr;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr.
};

// `/usr/bin/promtool check metrics` with `text` on stdin.
CommandResult RunPromtool(const std::string& text) {
  // A unique file: ctest runs each test case as its own process, in
  // parallel with -j.
  std::string path = testing::TempDir() + "/metrics_test_XXXXXX";
  const int fd = mkstemp(path.data());
  CommandResult result;
  if (fd < 0) return result;
  close(fd);
  std::ofstream(path) << text;
  const std::string command =
      "/usr/bin/promtool check metrics < '" + path + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) {
    result.output.append(buffer, n);
  }
  const int status = pclose(pipe);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  std::remove(path.c_str());
  return result;
}

// Whether `response` holds the headers and the Content-Length bytes of
// body they announce.
bool ResponseComplete(const std::string& response) {
  const size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return false;
  const std::string kLength = "Content-Length: ";
  const size_t length = response.find(kLength);
  if (length == std::string::npos || length > body) return false;
  const size_t body_bytes =
      std::strtoul(&response[length + kLength.size()], nullptr, 10);
  return response.size() >= body + 4 + body_bytes;
}

// The raw HTTP/1.0 response to GET `path` on 127.0.0.1:`port`; "" if the
// connection fails.
std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  const timeval timeout{10, 0};  // a hung server fails the test, not CI.
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  std::string response;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address),
              sizeof(address)) == 0) {
    const std::string request = "GET " + path +
                                " HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                                "Connection: close\r\n\r\n";
    if (send(fd, request.data(), request.size(), 0) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[4096];
      // civetweb keeps the socket open for a while after answering, so
      // stop at Content-Length rather than at end of stream.
      while (!ResponseComplete(response)) {
        const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        response.append(buffer, n);
      }
    }
  }
  close(fd);
  return response;
}

TEST(GatewayMetricsTest, CountsRequestsByMethodAndCodeName) {
  auto metrics = MakeMetrics(LocalOptions());
  metrics->RecordRequest(Method::kClassify, kOk, 0.003);
  metrics->RecordRequest(Method::kClassify, kOk, 0.003);
  metrics->RecordRequest(Method::kClassify, kDeadlineExceeded, 0.5);
  metrics->RecordRequest(Method::kClassifyStream, kOk, 0.01);
  metrics->RecordRequest(Method::kGetModelInfo, 99, 0.001);  // out of range

  const auto samples = ParseSamples(metrics->Serialize());
  const std::string name = "edge_gateway_requests_total";
  EXPECT_EQ(samples.at(name + R"({code="OK",method="Classify"})"), 2);
  EXPECT_EQ(
      samples.at(name + R"({code="DEADLINE_EXCEEDED",method="Classify"})"), 1);
  EXPECT_EQ(samples.at(name + R"({code="OK",method="ClassifyStream"})"), 1);
  EXPECT_EQ(samples.at(name + R"({code="UNKNOWN",method="GetModelInfo"})"), 1);
  // Every method x code exists from the start, named as absl names codes.
  EXPECT_EQ(CountSeries(samples, name), 3 * 17);
  for (int code = 0; code <= 16; ++code) {
    const std::string code_name =
        absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    EXPECT_EQ(samples.count(name + "{code=\"" + code_name +
                            "\",method=\"GetModelInfo\"}"),
              1u)
        << code_name;
  }
}

TEST(GatewayMetricsTest, RequestDurationHistogramAndLatencySummary) {
  auto metrics = MakeMetrics(LocalOptions());
  // 0.1, 0.2, ..., 100 ms: P50 = 50 ms, P99 = 99 ms.
  for (int i = 1; i <= 1000; ++i) {
    metrics->RecordRequest(Method::kClassify, kOk, i / 10000.0);
  }
  const auto samples = ParseSamples(metrics->Serialize());
  const std::string h = "edge_gateway_request_duration_seconds";
  const std::string ok = R"(code="OK",method="Classify")";
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="0.0005"})"), 5);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="0.001"})"), 10);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="0.01"})"), 100);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="0.05"})"), 500);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="0.1"})"), 1000);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="10"})"), 1000);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="+Inf"})"), 1000);
  EXPECT_EQ(samples.at(h + "_count{" + ok + "}"), 1000);
  EXPECT_NEAR(samples.at(h + "_sum{" + ok + "}"), 50.05, 1e-9);
  EXPECT_EQ(samples.at(h + R"(_count{code="OK",method="GetModelInfo"})"), 0);

  const std::string s = "edge_gateway_request_latency_seconds";
  // Within the configured rank errors (5 and 1 of 1000 observations, each
  // 0.1 ms apart), plus one observation of slack for rank rounding.
  EXPECT_NEAR(samples.at(s + "{" + ok + R"(,quantile="0.5"})"), 0.050, 0.0006);
  EXPECT_NEAR(samples.at(s + "{" + ok + R"(,quantile="0.99"})"), 0.099, 0.0002);
  EXPECT_EQ(samples.at(s + "_count{" + ok + "}"), 1000);
  // No observations yet: the quantiles are NaN, as Prometheus expects.
  EXPECT_TRUE(std::isnan(
      samples.at(s + R"({code="OK",method="ClassifyStream",quantile="0.5"})")));
}

// The overload case of issue 13: 100 answers served in about 50 ms, then
// 300 refused in 0.1 ms (queue full). The served quantiles stay at 50 ms;
// the refusals have their own histogram child and no summary.
TEST(GatewayMetricsTest, RefusalsDoNotMoveTheServedLatency) {
  auto metrics = MakeMetrics(LocalOptions());
  constexpr int kUnavailable = 14;
  for (int i = 0; i < 100; ++i) {
    metrics->RecordRequest(Method::kClassifyStream, kOk, 0.04505 + i * 0.0001);
  }
  const std::string h = "edge_gateway_request_duration_seconds";
  const std::string refused = R"(code="UNAVAILABLE",method="ClassifyStream")";
  EXPECT_EQ(
      ParseSamples(metrics->Serialize()).count(h + "_count{" + refused + "}"),
      0u)
      << "a code that never happened has no histogram series";
  for (int i = 0; i < 300; ++i) {
    metrics->RecordRequest(Method::kClassifyStream, kUnavailable, 0.0001);
  }
  const auto samples = ParseSamples(metrics->Serialize());
  const std::string ok = R"(code="OK",method="ClassifyStream")";
  const std::string s = "edge_gateway_request_latency_seconds";
  EXPECT_NEAR(samples.at(s + "{" + ok + R"(,quantile="0.5"})"), 0.050, 0.001);
  EXPECT_NEAR(samples.at(s + "{" + ok + R"(,quantile="0.99"})"), 0.055, 0.001);
  EXPECT_EQ(samples.at(s + "_count{" + ok + "}"), 100);
  EXPECT_EQ(samples.count(s + "_count{" + refused + "}"), 0u);
  EXPECT_EQ(samples.at(h + "_count{" + ok + "}"), 100);
  EXPECT_EQ(samples.at(h + "_count{" + refused + "}"), 300);
  EXPECT_EQ(samples.at(h + "_bucket{" + refused + R"(,le="0.0005"})"), 300);
  EXPECT_EQ(samples.at(h + "_bucket{" + ok + R"(,le="0.05"})"), 50);
  // Three OK histograms (one per method) and the one refused: 4 x (14
  // buckets + +Inf) bucket series.
  EXPECT_EQ(CountSeries(samples, h + "_bucket"), 4 * 15);
}

TEST(GatewayMetricsTest, StagesBatchSizesAndGauges) {
  auto metrics = MakeMetrics(LocalOptions());
  metrics->RecordStage(Stage::kQueue, 0.004);
  metrics->RecordStage(Stage::kDecode, 0.0015);
  metrics->RecordStage(Stage::kCompute, 0.15);
  metrics->RecordStage(Stage::kExpertFetch, 0.0001);
  for (int size : {1, 3, 16, 64}) metrics->RecordBatch(size);
  for (int i = 0; i < 3; ++i) metrics->AddInflight(1);
  metrics->AddInflight(-1);
  metrics->SetQueued(5);
  metrics->RecordDegraded();

  const auto samples = ParseSamples(metrics->Serialize());
  const std::string st = "edge_gateway_stage_duration_seconds_bucket";
  EXPECT_EQ(samples.at(st + R"({stage="queue",le="0.005"})"), 1);
  EXPECT_EQ(samples.at(st + R"({stage="decode",le="0.001"})"), 0);
  EXPECT_EQ(samples.at(st + R"({stage="decode",le="0.002"})"), 1);
  EXPECT_EQ(samples.at(st + R"({stage="compute",le="0.1"})"), 0);
  EXPECT_EQ(samples.at(st + R"({stage="compute",le="0.2"})"), 1);
  EXPECT_EQ(samples.at(st + R"({stage="expert_fetch",le="0.0005"})"), 1);
  const std::string b = "edge_gateway_batch_size_bucket";
  EXPECT_EQ(samples.at(b + R"({le="1"})"), 1);
  EXPECT_EQ(samples.at(b + R"({le="2"})"), 1);
  EXPECT_EQ(samples.at(b + R"({le="4"})"), 2);
  EXPECT_EQ(samples.at(b + R"({le="32"})"), 3);
  EXPECT_EQ(samples.at(b + R"({le="64"})"), 4);
  EXPECT_EQ(samples.at("edge_gateway_batch_size_sum"), 84);
  EXPECT_EQ(samples.at("edge_gateway_inflight_requests"), 2);
  EXPECT_EQ(samples.at("edge_gateway_queued_requests"), 5);
  EXPECT_EQ(samples.at("edge_gateway_degraded_responses_total"), 1);
  EXPECT_EQ(samples.at(R"(edge_gateway_model_info{model="vmoe-tiny-224",)"
                       R"(precision="float32",routing="image"})"),
            1);
}

TEST(GatewayMetricsTest, ExpertActivationsPreCreatedPerLayerAndExpert) {
  auto metrics = MakeMetrics(LocalOptions());
  metrics->AddExpertActivations(7, 3, 5);
  metrics->AddExpertActivations(7, 3, 2);
  metrics->AddExpertActivations(11, 0, 196);  // token routing: 196 tokens.
  // Not declared: ignored.
  metrics->AddExpertActivations(8, 0, 1);
  metrics->AddExpertActivations(7, 8, 1);
  metrics->AddExpertActivations(-1, 0, 1);
  metrics->AddExpertActivations(300, 0, 1);

  const auto samples = ParseSamples(metrics->Serialize());
  const std::string name = "edge_gateway_expert_activations_total";
  EXPECT_EQ(CountSeries(samples, name), 3 * 8);
  EXPECT_EQ(samples.at(name + R"({expert="3",layer="7"})"), 7);
  EXPECT_EQ(samples.at(name + R"({expert="0",layer="11"})"), 196);
  EXPECT_EQ(samples.at(name + R"({expert="7",layer="9"})"), 0);
}

TEST(GatewayMetricsTest, CacheStatsAreReadAtEachScrape) {
  std::atomic<uint64_t> hits{0};
  GatewayMetricsOptions options = LocalOptions();
  options.cache_stats = [&hits] {
    ExpertCacheStats stats;
    stats.hits = hits.load();
    stats.misses = 4;
    stats.loads = 3;
    stats.load_failures = 1;
    stats.evictions = 2;
    stats.resident_bytes = 3 << 20;
    stats.budget_bytes = 8 << 20;
    stats.resident_experts = 3;
    stats.pinned_experts = 1;
    return stats;
  };
  auto metrics = MakeMetrics(std::move(options));
  const std::string p = "edge_gateway_expert_cache_";

  auto samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(samples.at(p + "hits_total"), 0);
  EXPECT_EQ(samples.at(p + "misses_total"), 4);
  EXPECT_EQ(samples.at(p + "loads_total"), 3);
  EXPECT_EQ(samples.at(p + "load_failures_total"), 1);
  EXPECT_EQ(samples.at(p + "evictions_total"), 2);
  EXPECT_EQ(samples.at(p + "resident_bytes"), 3 << 20);
  EXPECT_EQ(samples.at(p + "budget_bytes"), 8 << 20);
  EXPECT_EQ(samples.at(p + "resident_experts"), 3);
  EXPECT_EQ(samples.at(p + "pinned_experts"), 1);
  EXPECT_EQ(samples.at(p + "hit_ratio"), 0);

  hits = 12;
  samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(samples.at(p + "hits_total"), 12);
  EXPECT_EQ(samples.at(p + "hit_ratio"), 0.75);
}

// Sizing, prefetch and load latency (ExpertCacheStats), and the engine's
// next-layer predictions.
ExpertCacheStats AdaptiveStats() {
  ExpertCacheStats stats;
  stats.hits = 30;
  stats.misses = 10;
  stats.budget_bytes = 64 << 20;
  stats.capacity_bytes = 48 << 20;
  stats.min_bytes = 16 << 20;
  stats.resizes_up = 2;
  stats.resizes_down = 5;
  stats.window_hit_rate = 0.625;
  stats.prefetch_issued = 11;
  stats.prefetch_used = 7;
  stats.prefetch_wasted = 3;
  stats.prefetch_dropped = 1;
  stats.load_latency_bounds_ms = {0.5, 2, 10};
  stats.load_latency_counts = {4, 0, 5, 1};  // the last is above 10 ms.
  stats.load_latency_sum_s = 0.125;
  return stats;
}

TEST(GatewayMetricsTest, AdaptiveCachePrefetchAndPredictionMetrics) {
  GatewayMetricsOptions options = LocalOptions();
  options.cache_stats = AdaptiveStats;
  options.prediction_stats = [] {
    return PrefetchPredictionCounts{40, 30, 50};
  };
  auto metrics = MakeMetrics(std::move(options));
  const auto samples = ParseSamples(metrics->Serialize());
  const std::string p = "edge_gateway_expert_cache_";
  EXPECT_EQ(samples.at(p + "capacity_bytes"), 48 << 20);
  EXPECT_EQ(samples.at(p + "min_bytes"), 16 << 20);
  EXPECT_EQ(samples.at(p + R"(resizes_total{direction="up"})"), 2);
  EXPECT_EQ(samples.at(p + R"(resizes_total{direction="down"})"), 5);
  EXPECT_EQ(samples.at(p + "window_hit_ratio"), 0.625);
  EXPECT_EQ(samples.at(p + "prefetch_issued_total"), 11);
  EXPECT_EQ(samples.at(p + "prefetch_used_total"), 7);
  EXPECT_EQ(samples.at(p + "prefetch_wasted_total"), 3);
  EXPECT_EQ(samples.at(p + "prefetch_dropped_total"), 1);
  // Cumulative buckets in seconds, ending at +Inf.
  const std::string h = p + "load_duration_seconds";
  EXPECT_EQ(samples.at(h + R"(_bucket{le="0.0005"})"), 4);
  EXPECT_EQ(samples.at(h + R"(_bucket{le="0.002"})"), 4);
  EXPECT_EQ(samples.at(h + R"(_bucket{le="0.01"})"), 9);
  EXPECT_EQ(samples.at(h + R"(_bucket{le="+Inf"})"), 10);
  EXPECT_EQ(samples.at(h + "_count"), 10);
  EXPECT_EQ(samples.at(h + "_sum"), 0.125);
  EXPECT_EQ(CountSeries(samples, h + "_bucket"), 4);
  const std::string q = "edge_gateway_expert_prediction_";
  EXPECT_EQ(samples.at(q + "guesses_total"), 40);
  EXPECT_EQ(samples.at(q + "guesses_used_total"), 30);
  EXPECT_EQ(samples.at(q + "next_layer_experts_total"), 50);
}

// Refused expert files by reason and non-finite answers, read at each
// scrape; every reason is exported, at 0 until it happens.
TEST(GatewayMetricsTest, IntegrityCountsAreReadAtEachScrape) {
  std::atomic<uint64_t> checksum{0};
  GatewayMetricsOptions options = LocalOptions();
  options.integrity_stats = [&checksum] {
    IntegrityCounts counts;
    counts.expert_missing = 1;
    counts.expert_size_mismatches = 3;
    counts.expert_checksum_mismatches = checksum.load();
    counts.non_finite_results = 4;
    return counts;
  };
  auto metrics = MakeMetrics(std::move(options));
  const std::string name = "edge_gateway_expert_integrity_failures_total";

  auto samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(CountSeries(samples, name), 4);
  EXPECT_EQ(samples.at(name + R"({reason="missing"})"), 1);
  EXPECT_EQ(samples.at(name + R"({reason="read_error"})"), 0);
  EXPECT_EQ(samples.at(name + R"({reason="size_mismatch"})"), 3);
  EXPECT_EQ(samples.at(name + R"({reason="checksum_mismatch"})"), 0);
  EXPECT_EQ(samples.at("edge_gateway_non_finite_results_total"), 4);

  checksum = 7;
  samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(samples.at(name + R"({reason="checksum_mismatch"})"), 7);
}

TEST(GatewayMetricsTest, MemoryBoundIsReadAtEachScrape) {
  std::atomic<uint64_t> held{0};
  GatewayMetricsOptions options = LocalOptions();
  options.memory_stats = [&held] {
    return MemoryCounts{512u << 20, 291u << 20, held.load()};
  };
  auto metrics = MakeMetrics(std::move(options));
  auto samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(samples.at("edge_gateway_memory_limit_bytes"), 512 << 20);
  EXPECT_EQ(samples.at("edge_gateway_request_memory_budget_bytes"), 291 << 20);
  EXPECT_EQ(samples.at("edge_gateway_request_memory_bytes"), 0);
  held = 12345;
  samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(samples.at("edge_gateway_request_memory_bytes"), 12345);
}

TEST(GatewayMetricsTest, NoIntegrityMetricsWithoutACallback) {
  auto metrics = MakeMetrics(LocalOptions());
  const std::string text = metrics->Serialize();
  EXPECT_THAT(text, ::testing::Not(HasSubstr("integrity_failures")));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("non_finite_results")));
}

// Without a budget there is no adaptive policy, so no window to report.
TEST(GatewayMetricsTest, WindowHitRatioIsNanWithoutABudget) {
  GatewayMetricsOptions options = LocalOptions();
  options.cache_stats = [] {
    ExpertCacheStats stats = AdaptiveStats();
    stats.budget_bytes = 0;
    return stats;
  };
  auto metrics = MakeMetrics(std::move(options));
  const auto samples = ParseSamples(metrics->Serialize());
  EXPECT_TRUE(
      std::isnan(samples.at("edge_gateway_expert_cache_window_hit_ratio")));
  EXPECT_EQ(samples.count("edge_gateway_expert_prediction_guesses_total"), 0u)
      << "no prediction_stats callback, no prediction metrics";
}

TEST(GatewayMetricsTest, HitRatioIsNanBeforeTheFirstLookup) {
  GatewayMetricsOptions options = LocalOptions();
  options.cache_stats = [] { return ExpertCacheStats{}; };
  auto metrics = MakeMetrics(std::move(options));
  const auto samples = ParseSamples(metrics->Serialize());
  EXPECT_TRUE(std::isnan(samples.at("edge_gateway_expert_cache_hit_ratio")));
  // No latency buckets configured: still a valid histogram.
  EXPECT_EQ(samples.at("edge_gateway_expert_cache_load_duration_seconds_bucket"
                       R"({le="+Inf"})"),
            0);
}

TEST(GatewayMetricsTest, NoCacheMetricsWithoutACallback) {
  auto metrics = MakeMetrics(LocalOptions());
  EXPECT_THAT(metrics->Serialize(),
              ::testing::Not(HasSubstr("edge_gateway_expert_cache_")));
}

TEST(GatewayMetricsTest, ProcessMetricsFromProc) {
  auto metrics = MakeMetrics(LocalOptions());
  const auto samples = ParseSamples(metrics->Serialize());
  const double resident = samples.at("process_resident_memory_bytes");
  EXPECT_GT(resident, 0);
  EXPECT_GE(samples.at("process_resident_memory_peak_bytes"), resident);
  EXPECT_GT(samples.at("process_virtual_memory_bytes"), resident);
  EXPECT_GE(samples.at("process_cpu_seconds_total"), 0);
  EXPECT_GE(samples.at("process_open_fds"), 3);  // stdin, stdout, stderr
  const double now = std::time(nullptr);
  const double start = samples.at("process_start_time_seconds");
  // This test process started within the last hour, give or take the
  // kernel's boot-time rounding.
  EXPECT_LE(start, now + 2);
  EXPECT_GT(start, now - 3600);
}

TEST(GatewayMetricsTest, PromtoolAcceptsTheExposition) {
  if (access("/usr/bin/promtool", X_OK) != 0) {
    GTEST_SKIP() << "/usr/bin/promtool is not installed";
  }
  GatewayMetricsOptions options = LocalOptions();
  options.cache_stats = AdaptiveStats;
  options.prediction_stats = [] { return PrefetchPredictionCounts{4, 3, 5}; };
  options.integrity_stats = [] { return IntegrityCounts{1, 2, 3, 4, 5}; };
  auto metrics = MakeMetrics(std::move(options));
  metrics->RecordRequest(Method::kClassify, kOk, 0.012);
  metrics->RecordDegraded();
  metrics->RecordStage(Stage::kCompute, 0.01);
  metrics->RecordBatch(4);
  metrics->AddExpertActivations(9, 2, 3);

  const CommandResult result = RunPromtool(metrics->Serialize());
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output, "");
}

TEST(GatewayMetricsTest, ServesMetricsOverHttp) {
  GatewayMetricsOptions options = LocalOptions();
  options.listen_address = "127.0.0.1:0";
  options.cache_stats = [] { return ExpertCacheStats{}; };
  auto metrics = MakeMetrics(std::move(options));
  ASSERT_GT(metrics->bound_port(), 0);
  metrics->RecordRequest(Method::kClassify, kOk, 0.02);

  const std::string response = HttpGet(metrics->bound_port(), "/metrics");
  EXPECT_THAT(response, ::testing::StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(response, HasSubstr(R"(edge_gateway_requests_total{code="OK",)"
                                  R"(method="Classify"} 1)"));
  EXPECT_THAT(response, HasSubstr("edge_gateway_expert_cache_hits_total 0"));
  EXPECT_THAT(response, HasSubstr("process_resident_memory_bytes "));
  // The body adds the exposer's own exposer_* metrics; they lint too.
  if (access("/usr/bin/promtool", X_OK) == 0) {
    const size_t body = response.find("\r\n\r\n");
    ASSERT_NE(body, std::string::npos);
    const CommandResult result = RunPromtool(response.substr(body + 4));
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(result.output, "");
  }
}

TEST(GatewayMetricsTest, AddressInUseIsUnavailableNamingTheAddress) {
  GatewayMetricsOptions first_options = LocalOptions();
  first_options.listen_address = "127.0.0.1:0";
  auto first = MakeMetrics(std::move(first_options));
  const std::string address =
      "127.0.0.1:" + std::to_string(first->bound_port());

  GatewayMetricsOptions second_options = LocalOptions();
  second_options.listen_address = address;
  const auto second = GatewayMetrics::Create(std::move(second_options));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(address));
}

TEST(GatewayMetricsTest, NoEndpointWithoutAnAddress) {
  auto metrics = MakeMetrics(LocalOptions());
  EXPECT_EQ(metrics->bound_port(), 0);
}

TEST(GatewayMetricsTest, RejectsBadOptions) {
  for (const char* address :
       {"localhost", "9464", "127.0.0.1:abc", "127.0.0.1:70000", ":9464",
        "127.0.0.1:+1", "[::1]:9464", "::1:9464", "1.2.3.4:1,5.6.7.8:2",
        "127.0.0.1:9464s"}) {
    GatewayMetricsOptions options = LocalOptions();
    options.listen_address = address;
    EXPECT_EQ(GatewayMetrics::Create(std::move(options)).status().code(),
              absl::StatusCode::kInvalidArgument)
        << address;
  }
  const std::vector<std::vector<std::pair<int, int>>> bad_layers = {
      {{7, 8}, {7, 8}}, {{-1, 8}}, {{256, 8}}, {{7, 0}}, {{7, 1025}}};
  for (const auto& layers : bad_layers) {
    GatewayMetricsOptions options = LocalOptions();
    options.moe_layers = layers;
    EXPECT_EQ(GatewayMetrics::Create(std::move(options)).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  GatewayMetricsOptions options = LocalOptions();
  options.latency_window_seconds = 0;
  EXPECT_EQ(GatewayMetrics::Create(std::move(options)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GatewayMetricsTest, ConcurrentRecordingWhileScraping) {
  auto metrics = MakeMetrics(LocalOptions());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done) metrics->Serialize();
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        metrics->AddInflight(1);
        metrics->RecordRequest(Method::kClassify, kOk, 0.001);
        // Every thread creates the same histogram children at once.
        metrics->RecordRequest(Method::kClassifyStream, i % 17, 0.001);
        metrics->AddExpertActivations(9, i % 8, 1);
        metrics->AddInflight(-1);
      }
    });
  }
  for (auto& worker : workers) worker.join();
  done = true;
  scraper.join();

  const auto samples = ParseSamples(metrics->Serialize());
  EXPECT_EQ(samples.at(R"(edge_gateway_requests_total{code="OK",)"
                       R"(method="Classify"})"),
            kThreads * kPerThread);
  EXPECT_EQ(
      CountSeries(samples, "edge_gateway_request_duration_seconds_count"),
      3 + 16);  // OK of each method, and 16 other codes of ClassifyStream.
  int not_found = 0;  // NOT_FOUND is code 5.
  for (int i = 0; i < kPerThread; ++i) not_found += i % 17 == 5 ? kThreads : 0;
  EXPECT_EQ(samples.at(R"(edge_gateway_request_duration_seconds_count{)"
                       R"(code="NOT_FOUND",method="ClassifyStream"})"),
            not_found);
  EXPECT_EQ(samples.at(R"(edge_gateway_expert_activations_total{expert="5",)"
                       R"(layer="9"})"),
            kThreads * kPerThread / 8);
  EXPECT_EQ(samples.at("edge_gateway_inflight_requests"), 0);
}

}  // namespace
}  // namespace edge
