#include "loadtest/load_options.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "loadtest/loopback_address.h"

namespace edge::loadtest {
namespace {

// Upper bounds keep a mistyped flag from starting an unbounded or absurd
// run on a 2-core edge box: an hour, a thousand connections, 4K frames.
constexpr double kMaxDurationS = 3600;
constexpr int kMaxClients = 1024;
constexpr double kMaxFps = 1000;
constexpr int kMaxScenes = 4096;
constexpr int kMaxSide = 4096;

absl::Status OutOfRange(absl::string_view flag, double value,
                        absl::string_view range) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " must be ", range, ", got ", value));
}

bool InRange(double value, double low, double high) {
  return std::isfinite(value) && value >= low && value <= high;
}

absl::Status ValidateLoad(const LoadTestOptions& o) {
  if (!InRange(o.cameras, 1, kMaxClients)) {
    return OutOfRange("cameras", o.cameras, "1..1024");
  }
  if (!InRange(o.fps, 1e-3, kMaxFps)) {
    return OutOfRange("fps", o.fps, "in (0, 1000]");
  }
  if (!InRange(o.concurrency, 1, kMaxClients)) {
    return OutOfRange("concurrency", o.concurrency, "1..1024");
  }
  if (!InRange(o.duration_s, 1e-3, kMaxDurationS)) {
    return OutOfRange("duration_s", o.duration_s, "in (0, 3600]");
  }
  if (o.max_requests < 0) {
    return OutOfRange("max_requests", o.max_requests, ">= 0 (0 = no cap)");
  }
  if (!InRange(o.warmup_s, 0, kMaxDurationS) || o.warmup_s >= o.duration_s) {
    return absl::InvalidArgumentError(
        absl::StrCat("--warmup_s must be >= 0 and less than --duration_s (",
                     o.duration_s, "), got ", o.warmup_s));
  }
  if (o.timeout_ms <= 0) {
    return OutOfRange("timeout_ms", o.timeout_ms, "positive");
  }
  return absl::OkStatus();
}

absl::Status ValidateFrames(const LoadTestOptions& o) {
  if (!InRange(o.scenes, 1, kMaxScenes)) {
    return OutOfRange("scenes", o.scenes, "1..4096");
  }
  if (!InRange(o.width, 16, kMaxSide)) {
    return OutOfRange("width", o.width, "16..4096");
  }
  if (!InRange(o.height, 16, kMaxSide)) {
    return OutOfRange("height", o.height, "16..4096");
  }
  if (!InRange(o.jpeg_quality, 1, 100)) {
    return OutOfRange("jpeg_quality", o.jpeg_quality, "1..100");
  }
  if (o.tensor && !o.frames_dir.empty()) {
    return absl::InvalidArgumentError(
        "--tensor sends synthetic scenes; it cannot be combined with "
        "--frames_dir");
  }
  if (!InRange(o.zipf_alpha, 0, 10)) {
    return OutOfRange("zipf_alpha", o.zipf_alpha, "in [0, 10]");
  }
  if (!InRange(o.drift_period_s, 0, kMaxDurationS)) {
    return OutOfRange("drift_period_s", o.drift_period_s,
                      "in [0, 3600] (0 = no drift)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateLoadTestOptions(const LoadTestOptions& options) {
  if (absl::Status s = ValidateLoad(options); !s.ok()) return s;
  if (absl::Status s = ValidateFrames(options); !s.ok()) return s;
  if (auto target = ParseLoopbackHostPort(options.target, "--target");
      !target.ok()) {
    return target.status();
  }
  if (!InRange(options.metrics_port, 0, 65535)) {
    return OutOfRange("metrics_port", options.metrics_port,
                      "0..65535 (0 = do not scrape)");
  }
  const std::string url = EffectiveMetricsUrl(options);
  if (!url.empty()) {
    const char* flag =
        options.metrics_url.empty() ? "--metrics_port" : "--metrics_url";
    if (auto parsed = ParseLoopbackHttpUrl(url, flag); !parsed.ok()) {
      return parsed.status();
    }
  }
  return absl::OkStatus();
}

std::string EffectiveMetricsUrl(const LoadTestOptions& options) {
  if (!options.metrics_url.empty()) return options.metrics_url;
  if (options.metrics_port == 0) return "";
  return absl::StrCat("http://127.0.0.1:", options.metrics_port, "/metrics");
}

const char* LoadModeName(LoadMode mode) {
  return mode == LoadMode::kStream ? "stream" : "unary";
}

}  // namespace edge::loadtest
