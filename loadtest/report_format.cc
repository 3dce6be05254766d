// The table and JSON renderings of a LoadReport (load_report.h).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "loadtest/load_report.h"

namespace edge::loadtest {
namespace {

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

// JSON has no NaN or infinity; such values are written as null.
std::string JsonNumber(double value) {
  return std::isfinite(value) ? absl::StrFormat("%.6g", value) : "null";
}

std::string JsonCounts(const std::map<std::string, int64_t>& counts) {
  std::vector<std::string> members;
  for (const auto& [name, count] : counts) {
    members.push_back(absl::StrCat(JsonString(name), ":", count));
  }
  return absl::StrCat("{", absl::StrJoin(members, ","), "}");
}

std::string Counts(const std::map<std::string, int64_t>& counts) {
  if (counts.empty()) return "none";
  std::vector<std::string> parts;
  for (const auto& [name, count] : counts) {
    parts.push_back(absl::StrCat(name, " ", count));
  }
  return absl::StrJoin(parts, ", ");
}

std::string ServerLines(const LoadReport& r) {
  if (!r.server) {
    return absl::StrFormat("  %-14s not scraped (%s)\n", "server",
                           r.server_note);
  }
  const ServerFigures& s = *r.server;
  const std::string rate =
      s.cache_hit_rate ? absl::StrFormat("%.2f%%", *s.cache_hit_rate * 100)
                       : std::string("n/a");
  return absl::StrFormat(
      "  %-14s %.2f images per batch over %.0f batches (server)\n"
      "  %-14s hit rate %s (%.0f hits, %.0f misses)\n",
      "batch size", s.mean_batch_size, s.batches, "expert cache", rate,
      s.cache_hits, s.cache_misses);
}

std::string OptionsJson(const LoadTestOptions& o) {
  return absl::StrCat(
      "{\"mode\":", JsonString(LoadModeName(o.mode)),
      ",\"cameras\":", o.cameras, ",\"fps\":", JsonNumber(o.fps),
      ",\"concurrency\":", o.concurrency,
      ",\"duration_s\":", JsonNumber(o.duration_s),
      ",\"max_requests\":", o.max_requests,
      ",\"warmup_s\":", JsonNumber(o.warmup_s),
      ",\"target\":", JsonString(o.target), ",\"timeout_ms\":", o.timeout_ms,
      ",\"frames_dir\":", JsonString(o.frames_dir), ",\"scenes\":", o.scenes,
      ",\"width\":", o.width, ",\"height\":", o.height,
      ",\"jpeg_quality\":", o.jpeg_quality,
      ",\"tensor\":", o.tensor ? "true" : "false",
      ",\"zipf_alpha\":", JsonNumber(o.zipf_alpha),
      ",\"drift_period_s\":", JsonNumber(o.drift_period_s),
      ",\"seed\":", o.seed, "}");
}

std::string ServerJson(const LoadReport& r) {
  if (!r.server) return "null";
  const ServerFigures& s = *r.server;
  return absl::StrCat(
      "{\"batches\":", JsonNumber(s.batches),
      ",\"mean_batch_size\":", JsonNumber(s.mean_batch_size),
      ",\"cache_hits\":", JsonNumber(s.cache_hits),
      ",\"cache_misses\":", JsonNumber(s.cache_misses), ",\"cache_hit_rate\":",
      s.cache_hit_rate ? JsonNumber(*s.cache_hit_rate) : "null", "}");
}

}  // namespace

std::string FormatReportTable(const LoadReport& r) {
  const LatencySummary& l = r.latency;
  std::string table = absl::StrFormat(
      "edge-loadtest: %s, %d %s, model %s, %d scenes (mean %.1f KiB/frame)\n"
      "  %-14s %d sent, %d answered OK, %d answered with an error, "
      "%d unanswered\n"
      "  %-14s %s\n",
      r.mode, r.clients, r.mode == "stream" ? "cameras" : "clients", r.model,
      r.scenes, r.mean_frame_bytes / 1024, "requests", r.sent, r.answered_ok,
      r.answered_error, r.unanswered, "errors", Counts(r.errors_by_code));
  if (!r.stream_failures.empty() || r.unexpected_answers > 0 ||
      r.streams_reopened > 0) {
    absl::StrAppendFormat(&table,
                          "  %-14s %s; reopened %d; unexpected answers %d\n",
                          "stream ends", Counts(r.stream_failures),
                          r.streams_reopened, r.unexpected_answers);
  }
  absl::StrAppendFormat(
      &table,
      "  %-14s %.1f .. %.1f s: %d started (%.1f/s offered), "
      "%.1f OK answers/s\n"
      "  %-14s p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  "
      "(%d OK answers)\n"
      "  %-14s p50 %.2f ms (Timing.total_us); %.2f images per batch "
      "seen by an answer\n",
      "window", r.window_start_s, r.window_end_s, r.measured_sent,
      r.offered_per_s, r.throughput_ok_per_s, "latency ms", l.p50_ms, l.p90_ms,
      l.p99_ms, l.p999_ms, l.max_ms, l.count, "server time",
      r.server_total_p50_ms, r.batch_size_seen);
  table += ServerLines(r);
  absl::StrAppendFormat(&table,
                        "  %-14s %d distinct expert routes over %d scenes "
                        "sent\n  %-14s %.2f s to the last answer",
                        "routing", r.distinct_routes, r.scenes_sent, "run",
                        r.run_s);
  if (r.mode == "stream") {
    absl::StrAppendFormat(&table, "; writes up to %.2f ms behind schedule",
                          r.max_send_lag_ms);
  }
  table += "\n";
  return table;
}

std::string FormatReportJson(const LoadTestOptions& options,
                             const LoadReport& r) {
  const LatencySummary& l = r.latency;
  return absl::StrCat(
      "{\"options\":", OptionsJson(options), ",\"model\":", JsonString(r.model),
      ",\"clients\":", r.clients, ",\"scenes\":", r.scenes,
      ",\"mean_frame_bytes\":", JsonNumber(r.mean_frame_bytes),
      ",\"sent\":", r.sent, ",\"answered\":", r.answered_ok + r.answered_error,
      ",\"answered_ok\":", r.answered_ok,
      ",\"answered_error\":", r.answered_error,
      ",\"unanswered\":", r.unanswered,
      ",\"errors_by_code\":", JsonCounts(r.errors_by_code),
      ",\"stream_failures\":", JsonCounts(r.stream_failures),
      ",\"streams_reopened\":", r.streams_reopened,
      ",\"unexpected_answers\":", r.unexpected_answers,
      ",\"window_start_s\":", JsonNumber(r.window_start_s),
      ",\"window_end_s\":", JsonNumber(r.window_end_s),
      ",\"measured_sent\":", r.measured_sent,
      ",\"offered_per_s\":", JsonNumber(r.offered_per_s),
      ",\"throughput_ok_per_s\":", JsonNumber(r.throughput_ok_per_s),
      ",\"latency_ms\":{\"count\":", l.count, ",\"p50\":", JsonNumber(l.p50_ms),
      ",\"p90\":", JsonNumber(l.p90_ms), ",\"p99\":", JsonNumber(l.p99_ms),
      ",\"p99_9\":", JsonNumber(l.p999_ms), ",\"max\":", JsonNumber(l.max_ms),
      ",\"mean\":", JsonNumber(l.mean_ms), "}",
      ",\"batch_size_seen\":", JsonNumber(r.batch_size_seen),
      ",\"server_total_p50_ms\":", JsonNumber(r.server_total_p50_ms),
      ",\"distinct_routes\":", r.distinct_routes,
      ",\"scenes_sent\":", r.scenes_sent,
      ",\"max_send_lag_ms\":", JsonNumber(r.max_send_lag_ms),
      ",\"run_s\":", JsonNumber(r.run_s), ",\"server\":", ServerJson(r),
      ",\"server_note\":", JsonString(r.server_note), "}\n");
}

}  // namespace edge::loadtest
