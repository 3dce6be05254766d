// Unit tests of edge-loadtest's parts that need no server: address checks,
// flag parsing, scenes, the request log, percentiles and the Prometheus text
// reader (the popularity model is tested in tests/common). The end-to-end run
// is loadtest.smoke.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "loadtest/command_line.h"
#include "loadtest/load_report.h"
#include "loadtest/loopback_address.h"
#include "loadtest/metrics_scrape.h"
#include "loadtest/request_log.h"
#include "loadtest/synthetic_scene.h"

namespace edge::loadtest {
namespace {

TEST(LoopbackAddressTest, AcceptsLoopbackHostsOnly) {
  for (const char* ok : {"127.0.0.1:50051", "127.9.8.7:1", "localhost:80",
                         "LOCALHOST:80", "[::1]:65535"}) {
    EXPECT_TRUE(ParseLoopbackHostPort(ok, "--target").ok()) << ok;
  }
  for (const char* bad :
       {"10.0.0.1:50051", "0.0.0.0:50051", "example.com:50051", "[::2]:1",
        "::1:50051", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
        "unix:/tmp/socket", "dns:///localhost:1", "128.0.0.1:1", ":1"}) {
    const absl::Status status = ParseLoopbackHostPort(bad, "--target").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find("--target"), absl::string_view::npos);
  }
}

TEST(LoopbackAddressTest, ParsesHttpUrls) {
  auto url = ParseLoopbackHttpUrl("http://127.0.0.1:9464/metrics", "--m");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->address.port, 9464);
  EXPECT_EQ(url->path, "/metrics");
  EXPECT_EQ(ParseLoopbackHttpUrl("http://localhost:1", "--m")->path, "/");
  EXPECT_FALSE(ParseLoopbackHttpUrl("https://127.0.0.1:1/", "--m").ok());
  EXPECT_FALSE(ParseLoopbackHttpUrl("http://192.168.1.2:1/", "--m").ok());
}

absl::StatusOr<CommandLine> Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "edge-loadtest");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(CommandLineTest, ParsesBothFormsAndTheBooleanFlag) {
  auto parsed = Parse({"--mode=unary", "--concurrency", "3", "--tensor",
                       "--zipf_alpha=0.5", "--seed", "9"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.mode, LoadMode::kUnary);
  EXPECT_EQ(parsed->options.concurrency, 3);
  EXPECT_TRUE(parsed->options.tensor);
  EXPECT_DOUBLE_EQ(parsed->options.zipf_alpha, 0.5);
  EXPECT_EQ(parsed->options.seed, 9u);
  EXPECT_TRUE(ValidateLoadTestOptions(parsed->options).ok());
}

TEST(CommandLineTest, RefusesUnusableCommandLines) {
  EXPECT_FALSE(Parse({"--nope=1"}).ok());
  EXPECT_FALSE(Parse({"--mode=batch"}).ok());
  EXPECT_FALSE(Parse({"--cameras=four"}).ok());
  EXPECT_FALSE(Parse({"--cameras"}).ok());
  EXPECT_FALSE(Parse({"stream"}).ok());
  EXPECT_TRUE(Parse({"--help"})->help);
}

TEST(CommandLineTest, ValidationNamesTheFlag) {
  LoadTestOptions options;
  options.warmup_s = options.duration_s;
  EXPECT_NE(ValidateLoadTestOptions(options).message().find("--warmup_s"),
            absl::string_view::npos);
  options = LoadTestOptions();
  options.tensor = true;
  options.frames_dir = "/tmp";
  EXPECT_FALSE(ValidateLoadTestOptions(options).ok());
  options = LoadTestOptions();
  options.metrics_url = "http://10.0.0.1:9464/metrics";
  EXPECT_FALSE(ValidateLoadTestOptions(options).ok());
}

TEST(SyntheticSceneTest, ScenesDifferAndEncode) {
  const std::vector<uint8_t> a = RenderScene(DrawSceneStyle(1, 0), 64, 48);
  const std::vector<uint8_t> b = RenderScene(DrawSceneStyle(1, 1), 64, 48);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, RenderScene(DrawSceneStyle(1, 0), 64, 48));
  auto jpeg = EncodeJpeg(a, 64, 48, 85);
  ASSERT_TRUE(jpeg.ok()) << jpeg.status();
  EXPECT_EQ(jpeg->substr(0, 2), "\xff\xd8");
  EXPECT_EQ(RenderSceneTensor(DrawSceneStyle(1, 0), 32).size(),
            3u * 32 * 32 * 4);
}

TEST(ClientLogTest, AccountsForEveryRequestOnce) {
  ClientLog log;
  const int64_t first = log.Add(RequestRecord());
  const int64_t second = log.Add(RequestRecord());
  const int64_t third = log.Add(RequestRecord());
  EXPECT_TRUE(log.Answer(first, 10, 0, nullptr));
  EXPECT_FALSE(log.Answer(first, 11, 0, nullptr));  // Repeated.
  EXPECT_FALSE(log.Answer(99, 11, 0, nullptr));     // Unknown.
  EXPECT_TRUE(log.Answer(second, 12, 14, nullptr));
  log.Withdraw(third);
  EXPECT_FALSE(log.Answer(third, 13, 0, nullptr));  // Never sent.
  const std::vector<RequestRecord> records = log.TakeRecords();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_TRUE(records[0].ok());
  EXPECT_EQ(records[1].code, 14);
}

TEST(PercentileTest, IsNearestRank) {
  std::vector<double> v;
  for (int i = 1; i <= 1000; ++i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 50), 500);
  EXPECT_EQ(Percentile(v, 99.9), 999);
  EXPECT_EQ(Percentile(v, 100), 1000);
  EXPECT_EQ(Percentile({7}, 99.9), 7);
  EXPECT_EQ(Percentile({}, 50), 0);
}

TEST(SumSamplesTest, SumsExactNameOverLabels) {
  const char* text =
      "# TYPE x_total counter\n"
      "x_total{a=\"1\"} 2\n"
      "x_total{a=\"}\\\"\"} 3.5 1700000000\n"
      "x_total_extra 100\n"
      "y_sum 4\n"
      "y_count 2\n";
  EXPECT_DOUBLE_EQ(*SumSamples(text, "x_total"), 5.5);
  EXPECT_DOUBLE_EQ(*SumSamples(text, "y_sum"), 4);
  EXPECT_EQ(SumSamples(text, "y").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace edge::loadtest
