// BuildLoadReport and the per-second CSV; see load_report.h for what each
// number means. The table and JSON renderings are in report_format.cc.
#include "loadtest/load_report.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/gateway_channel.h"

namespace edge::loadtest {
namespace {

constexpr double kNsPerS = 1e9;
constexpr double kNsPerMs = 1e6;

double LatencyMs(const RequestRecord& r) {
  return (r.answered_ns - r.start_ns) / kNsPerMs;
}

LatencySummary Summarise(std::vector<double> latencies_ms) {
  LatencySummary s;
  s.count = static_cast<int64_t>(latencies_ms.size());
  if (latencies_ms.empty()) return s;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  s.p50_ms = Percentile(latencies_ms, 50);
  s.p90_ms = Percentile(latencies_ms, 90);
  s.p99_ms = Percentile(latencies_ms, 99);
  s.p999_ms = Percentile(latencies_ms, 99.9);
  s.max_ms = latencies_ms.back();
  double sum = 0;
  for (double v : latencies_ms) sum += v;
  s.mean_ms = sum / s.count;
  return s;
}

void CountOutcomes(const DriverResult& driver, LoadReport* report) {
  report->sent = static_cast<int64_t>(driver.records.size());
  for (const RequestRecord& r : driver.records) {
    if (!r.answered()) {
      ++report->unanswered;
    } else if (r.ok()) {
      ++report->answered_ok;
    } else {
      ++report->answered_error;
      ++report->errors_by_code[client::StatusCodeName(r.code)];
    }
  }
  report->stream_failures = driver.stream_failures;
  report->streams_reopened = driver.streams_reopened;
  report->unexpected_answers = driver.unexpected_answers;
}

// Latency, batch and route figures over the requests started in the window.
void MeasureWindow(const DriverResult& driver, LoadReport* report) {
  const int64_t begin = std::llround(report->window_start_s * kNsPerS);
  const int64_t end = std::llround(report->window_end_s * kNsPerS);
  std::vector<double> latencies, server_ms;
  std::set<uint64_t> routes;
  std::set<int> scenes;
  double batch_sum = 0;
  int64_t ok_received = 0;
  for (const RequestRecord& r : driver.records) {
    if (r.ok() && r.answered_ns >= begin && r.answered_ns <= end) {
      ++ok_received;
    }
    if (r.start_ns < begin || r.start_ns >= end) continue;
    ++report->measured_sent;
    scenes.insert(r.scene);
    if (!r.ok()) continue;
    latencies.push_back(LatencyMs(r));
    server_ms.push_back(r.server_total_us / 1e3);
    batch_sum += r.batch_size;
    if (r.route != 0) routes.insert(r.route);
  }
  const double window_s = report->window_end_s - report->window_start_s;
  report->offered_per_s = report->measured_sent / window_s;
  report->throughput_ok_per_s = ok_received / window_s;
  report->latency = Summarise(latencies);
  if (!latencies.empty())
    report->batch_size_seen = batch_sum / latencies.size();
  std::sort(server_ms.begin(), server_ms.end());
  report->server_total_p50_ms = Percentile(server_ms, 50);
  report->distinct_routes = static_cast<int>(routes.size());
  report->scenes_sent = static_cast<int>(scenes.size());
}

std::optional<ServerFigures> ServerDelta(const RunOutcome& outcome) {
  if (!outcome.counters_before || !outcome.counters_after) return std::nullopt;
  const ServerCounters& a = *outcome.counters_before;
  const ServerCounters& b = *outcome.counters_after;
  ServerFigures f;
  f.batches = b.batch_size_count - a.batch_size_count;
  if (f.batches > 0) {
    f.mean_batch_size = (b.batch_size_sum - a.batch_size_sum) / f.batches;
  }
  f.cache_hits = b.cache_hits - a.cache_hits;
  f.cache_misses = b.cache_misses - a.cache_misses;
  if (f.cache_hits + f.cache_misses > 0) {
    f.cache_hit_rate = f.cache_hits / (f.cache_hits + f.cache_misses);
  }
  return f;
}

}  // namespace

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // The epsilon keeps binary rounding (99.9 / 100 * 1000 = 999.0000000001)
  // from moving the rank up by one.
  const size_t rank =
      static_cast<size_t>(std::ceil(p / 100 * sorted.size() - 1e-9));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

LoadReport BuildLoadReport(const LoadTestOptions& options,
                           const gateway::v1::ModelInfo& model,
                           const std::vector<Frame>& frames,
                           const RunOutcome& outcome) {
  LoadReport report;
  report.mode = LoadModeName(options.mode);
  report.clients =
      options.mode == LoadMode::kStream ? options.cameras : options.concurrency;
  report.model = model.name();
  report.scenes = static_cast<int>(frames.size());
  report.mean_frame_bytes = MeanFrameBytes(frames);
  CountOutcomes(outcome.driver, &report);
  report.window_start_s = options.warmup_s;
  // A run cut short by --max_requests inside the warm-up still gets a
  // (tiny) window rather than a negative one.
  report.window_end_s =
      std::max(outcome.driver.send_end_ns / kNsPerS, options.warmup_s + 1e-3);
  MeasureWindow(outcome.driver, &report);
  report.max_send_lag_ms = outcome.driver.max_send_lag_ns / kNsPerMs;
  report.run_s = outcome.end_ns / kNsPerS;
  report.server = ServerDelta(outcome);
  report.server_note = outcome.metrics_note;
  return report;
}

std::string FormatPerSecondCsv(const RunOutcome& outcome) {
  const auto& records = outcome.driver.records;
  const size_t seconds = std::max<size_t>(
      1, static_cast<size_t>(std::ceil(outcome.end_ns / kNsPerS)));
  std::vector<int64_t> sent(seconds), answered(seconds), errors(seconds);
  std::vector<std::vector<double>> latencies(seconds);
  auto second = [seconds](int64_t ns) {
    return std::min<size_t>(static_cast<size_t>(ns / kNsPerS), seconds - 1);
  };
  for (const RequestRecord& r : records) {
    ++sent[second(r.sent_ns)];
    if (!r.answered()) continue;
    const size_t s = second(r.answered_ns);
    ++answered[s];
    if (r.ok()) {
      latencies[s].push_back(LatencyMs(r));
    } else {
      ++errors[s];
    }
  }
  std::string csv = "time_s,sent,answered,p50_ms,p99_ms,errors\n";
  for (size_t s = 0; s < seconds; ++s) {
    std::sort(latencies[s].begin(), latencies[s].end());
    const std::string p50 =
        latencies[s].empty()
            ? ""
            : absl::StrFormat("%.3f", Percentile(latencies[s], 50));
    const std::string p99 =
        latencies[s].empty()
            ? ""
            : absl::StrFormat("%.3f", Percentile(latencies[s], 99));
    absl::StrAppend(&csv, s, ",", sent[s], ",", answered[s], ",", p50, ",", p99,
                    ",", errors[s], "\n");
  }
  return csv;
}

}  // namespace edge::loadtest
