// LoadReport: the numbers of a run, computed from its request records
// (load_run.h) after the run, and their three renderings: the table on
// stdout, the JSON file and the per-second CSV (plots: latency_plots.h).
//
// Definitions.
//   Accounting covers every request sent, warm-up included: sent =
//   answered_ok + answered_error + unanswered, always.
//   The measured window is [warmup_s, end of sending] (the duration, or
//   when --max_requests ran out). Latency percentiles are over the OK
//   answers to requests that *started* in the window (due time in stream
//   mode, send time in unary mode), wherever their answer fell;
//   throughput is OK answers *received* in the window per second of it.
//   Error answers are counted by code but left out of the latency figures:
//   a fast UNAVAILABLE would otherwise look like good service.
//   Percentiles are nearest-rank on the exact sample (no histogram).
//   Server figures are differences of the gateway's counters between the
//   two scrapes; batch size there is per batch, while batch_size_seen is
//   per answer (the batch an average request rode in, which is larger).
//
// Plain data and stateless functions.
#ifndef EDGE_LOADTEST_LOAD_REPORT_H_
#define EDGE_LOADTEST_LOAD_REPORT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "loadtest/load_options.h"
#include "loadtest/load_run.h"

namespace edge::loadtest {

struct LatencySummary {
  int64_t count = 0;  // All below are 0 when count is 0.
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  double mean_ms = 0;
};

struct ServerFigures {
  double batches = 0;
  double mean_batch_size = 0;
  double cache_hits = 0;
  double cache_misses = 0;
  std::optional<double> cache_hit_rate;  // Empty if no lookups.
};

struct LoadReport {
  // What ran.
  std::string mode;
  int clients = 0;  // Cameras or unary clients.
  std::string model;
  int scenes = 0;
  double mean_frame_bytes = 0;

  // Accounting, whole run.
  int64_t sent = 0;
  int64_t answered_ok = 0;
  int64_t answered_error = 0;
  int64_t unanswered = 0;
  std::map<std::string, int64_t> errors_by_code;
  std::map<std::string, int64_t> stream_failures;
  int64_t streams_reopened = 0;  // see DriverResult
  int64_t unexpected_answers = 0;

  // Measured window.
  double window_start_s = 0;
  double window_end_s = 0;
  int64_t measured_sent = 0;  // Requests started in the window.
  double offered_per_s = 0;   // measured_sent / window.
  double throughput_ok_per_s = 0;
  LatencySummary latency;
  double batch_size_seen = 0;      // Mean Timing.batch_size of OK answers.
  double server_total_p50_ms = 0;  // Median Timing.total_us of OK answers.
  int distinct_routes = 0;         // Distinct expert choices among answers.
  int scenes_sent = 0;             // Distinct scenes sent in the window.
  double max_send_lag_ms = 0;      // Stream: worst write start - due time.
  double run_s = 0;                // Start to last answer.

  std::optional<ServerFigures> server;
  std::string server_note;  // Why `server` is empty.
};

LoadReport BuildLoadReport(const LoadTestOptions& options,
                           const gateway::v1::ModelInfo& model,
                           const std::vector<Frame>& frames,
                           const RunOutcome& outcome);

// Nearest-rank percentile of ascending `sorted`, p in (0, 100]; 0 if empty.
double Percentile(const std::vector<double>& sorted, double p);

// The human-readable table (several lines, ends with a newline).
std::string FormatReportTable(const LoadReport& report);

// Every number of the report as one JSON object (ends with a newline).
std::string FormatReportJson(const LoadTestOptions& options,
                             const LoadReport& report);

// time_s,sent,answered,p50_ms,p99_ms,errors: one row per whole second since
// the start (the last partial second included). `answered` counts every
// answer received in that second, `errors` the non-OK ones, p50/p99 the OK
// ones' latencies (empty if none).
std::string FormatPerSecondCsv(const RunOutcome& outcome);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_LOAD_REPORT_H_
