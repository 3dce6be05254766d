// LoadTestOptions: everything one edge-loadtest run is told, with defaults
// and units, and ValidateLoadTestOptions(), the single place that decides
// whether a run may start. Flags are parsed into this struct only in
// command_line.cc; the rest of loadtest/ reads the struct.
//
// A run is always bounded: in time (duration_s, then at most timeout_ms for
// the last answers) and optionally in count (max_requests). It only talks to
// the local machine: `target` and `metrics_url` must name a loopback host,
// so a typo cannot turn the tool on somebody else's server.
//
// Plain data; not synchronised (read-only once the run starts).
#ifndef EDGE_LOADTEST_LOAD_OPTIONS_H_
#define EDGE_LOADTEST_LOAD_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace edge::loadtest {

enum class LoadMode {
  kStream,  // One open-loop ClassifyStream per camera.
  kUnary,   // Closed-loop unary Classify clients.
};

struct LoadTestOptions {
  LoadMode mode = LoadMode::kStream;
  // Stream mode: cameras and each camera's frame rate (frames per second).
  int cameras = 4;
  double fps = 10;
  // Unary mode: clients, each with one request in flight.
  int concurrency = 8;

  // Sending stops after duration_s (seconds from the start) or after
  // max_requests requests (0 = no cap), whichever comes first. Requests due
  // in the first warmup_s seconds are sent but left out of the statistics:
  // they pay for connection set-up and the server's first expert loads.
  double duration_s = 10;
  int64_t max_requests = 0;
  double warmup_s = 1;

  // The gateway, HOST:PORT on loopback.
  std::string target = "127.0.0.1:50051";
  // Unary: each call's deadline. Stream: each frame's timeout_us, and how
  // long the stream may outlive the sending schedule for its last answers.
  int64_t timeout_ms = 5000;

  // Frames: the JPEG/PNG files of frames_dir, or (if empty) `scenes`
  // synthetic scenes of width x height pixels, JPEG at jpeg_quality.
  std::string frames_dir;
  int scenes = 64;
  int width = 640;
  int height = 480;
  // libjpeg's 0..100 scale; 85 is a typical IP camera snapshot setting.
  int jpeg_quality = 85;
  // Send float32 [3,S,S] tensors of the model's image_size instead of JPEG
  // (synthetic scenes only): takes decoding out of the measurement.
  bool tensor = false;

  // Scene popularity: Zipf over ranks with this exponent (0 = uniform).
  double zipf_alpha = 1.0;
  // Every drift_period_s seconds the popularity ranking is reshuffled
  // (0 = never), so the hot set of scenes (and experts) moves.
  double drift_period_s = 0;
  // Seeds the ranking shuffles, the scenes and every camera's RNG stream.
  uint64_t seed = 1;

  // Prometheus endpoint of the gateway. metrics_url wins; otherwise a
  // non-zero metrics_port means http://127.0.0.1:<port>/metrics; with
  // neither, the server's figures are not scraped.
  std::string metrics_url;
  int metrics_port = 0;

  // Outputs; each is skipped when empty.
  std::string json_out;        // Every number of the report, as JSON.
  std::string plot_prefix;     // P-latency-over-time.png, P-latency-cdf.png.
  std::string per_second_out;  // CSV: one row per second since the start.
};

// INVALID_ARGUMENT naming the flag for any out-of-range value, a target or
// metrics URL that is not on loopback, or --tensor with --frames_dir.
absl::Status ValidateLoadTestOptions(const LoadTestOptions& options);

// The URL to scrape: metrics_url, or the one derived from metrics_port, or
// "" for none.
std::string EffectiveMetricsUrl(const LoadTestOptions& options);

// "stream" / "unary".
const char* LoadModeName(LoadMode mode);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_LOAD_OPTIONS_H_
