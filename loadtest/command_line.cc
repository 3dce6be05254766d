#include "loadtest/command_line.h"

#include <functional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace edge::loadtest {
namespace {

constexpr char kIntro[] =
    R"(edge-loadtest: a camera-fleet load generator for the edge inference gateway
(edge.gateway.v1.InferenceGateway). Loopback targets only; every run is
bounded by --duration_s (and optionally --max_requests).

Usage: edge-loadtest --mode stream --cameras N --fps F [flags]
       edge-loadtest --mode unary --concurrency M [flags]

Modes:
  stream  N cameras, each holding one ClassifyStream and sending a frame every
          1/F s on a fixed schedule (open loop: a slow server does not slow
          the sender). Latency runs from a frame's due time to its answer, so
          time spent queued behind flow control counts (no coordinated
          omission).
  unary   M clients, each sending the next Classify when the previous one is
          answered (closed loop). Latency runs from send to answer.

Frames: synthetic scenes (default: --scenes JPEGs of --width x --height, each
a different colour field and shapes, so the router spreads them over experts)
or the JPEG/PNG files of --frames_dir; --tensor sends float32 tensors of the
model's image_size instead of JPEG. Each frame picks a scene by Zipf
popularity (--zipf_alpha) over a ranking that every camera offsets to its own
"home" scene; --drift_period_s reshuffles the ranking so the hot set moves.

Report (stdout, and --json_out): requests sent, answered OK, errors by gRPC
code, unanswered, throughput, latency P50/P90/P99/P99.9/max in ms over the
measured window (after --warmup_s), and with a metrics endpoint the server's
mean batch size and expert cache hit rate over that window.

Exit codes: 0 the run completed (answers with error codes are reported, not
fatal); 1 a request went unanswered, the gateway could not be reached, or an
output file could not be written; 2 unusable flags or --frames_dir (nothing
was sent).

Flags (default in brackets):
)";

// One flag: how to set it from text and how to show its default.
struct FlagSpec {
  const char* name;
  const char* value_name;  // "" for the boolean flag.
  const char* help;
  std::function<bool(absl::string_view, LoadTestOptions*)> set;
  std::function<std::string(const LoadTestOptions&)> show;
};

bool ParseValue(absl::string_view text, int* out) {
  return absl::SimpleAtoi(text, out);
}
bool ParseValue(absl::string_view text, int64_t* out) {
  return absl::SimpleAtoi(text, out);
}
bool ParseValue(absl::string_view text, uint64_t* out) {
  return absl::SimpleAtoi(text, out);
}
bool ParseValue(absl::string_view text, double* out) {
  return absl::SimpleAtod(text, out);
}
bool ParseValue(absl::string_view text, bool* out) {
  return absl::SimpleAtob(text, out);
}
bool ParseValue(absl::string_view text, std::string* out) {
  *out = std::string(text);
  return true;
}
bool ParseValue(absl::string_view text, LoadMode* out) {
  if (text != "stream" && text != "unary") return false;
  *out = text == "stream" ? LoadMode::kStream : LoadMode::kUnary;
  return true;
}

std::string Show(const std::string& value) {
  return value.empty() ? "\"\"" : value;
}
std::string Show(bool value) { return value ? "true" : "false"; }
std::string Show(LoadMode value) { return LoadModeName(value); }
template <typename T>
std::string Show(T value) {
  return absl::StrCat(value);
}

template <typename T>
FlagSpec Flag(const char* name, const char* value_name,
              T LoadTestOptions::*field, const char* help) {
  return {
      name, value_name, help,
      [field](absl::string_view text, LoadTestOptions* options) {
        return ParseValue(text, &(options->*field));
      },
      [field](const LoadTestOptions& options) { return Show(options.*field); }};
}

const std::vector<FlagSpec>& Flags() {
  using O = LoadTestOptions;
  static const auto* flags = new std::vector<FlagSpec>{
      Flag("mode", "stream|unary", &O::mode, "load pattern (see Modes)"),
      Flag("cameras", "N", &O::cameras, "stream: cameras, one stream each"),
      Flag("fps", "F", &O::fps, "stream: frames per second per camera"),
      Flag("concurrency", "M", &O::concurrency,
           "unary: clients, one request in flight each"),
      Flag("duration_s", "S", &O::duration_s,
           "seconds of sending (the run's bound)"),
      Flag("max_requests", "N", &O::max_requests,
           "stop sending after N requests in all (0 = no cap)"),
      Flag("warmup_s", "W", &O::warmup_s,
           "first seconds left out of the statistics (< duration_s)"),
      Flag("target", "HOST:PORT", &O::target,
           "the gateway; HOST in 127.0.0.0/8, localhost or [::1]"),
      Flag("timeout_ms", "MS", &O::timeout_ms,
           "unary deadline / stream frame timeout, and the wait for the "
           "last answers"),
      Flag("frames_dir", "DIR", &O::frames_dir,
           "send these .jpg/.jpeg/.png files instead of synthetic scenes"),
      Flag("scenes", "K", &O::scenes, "synthetic scenes to generate"),
      Flag("width", "PX", &O::width, "synthetic scene width"),
      Flag("height", "PX", &O::height, "synthetic scene height"),
      Flag("jpeg_quality", "Q", &O::jpeg_quality,
           "synthetic scene JPEG quality, 1..100"),
      Flag("tensor", "", &O::tensor,
           "send float32 [3,S,S] tensors (S from GetModelInfo), not JPEG"),
      Flag("zipf_alpha", "A", &O::zipf_alpha,
           "Zipf exponent of scene popularity (0 = uniform)"),
      Flag("drift_period_s", "S", &O::drift_period_s,
           "reshuffle the popularity ranking every S seconds (0 = never)"),
      Flag("seed", "N", &O::seed, "seeds scenes, rankings and cameras' RNGs"),
      Flag("metrics_url", "URL", &O::metrics_url,
           "the gateway's /metrics (http://HOST:PORT/metrics, loopback)"),
      Flag("metrics_port", "P", &O::metrics_port,
           "shorthand for http://127.0.0.1:P/metrics (0 = do not scrape)"),
      Flag("json_out", "FILE", &O::json_out, "write the report as JSON"),
      Flag("plot_prefix", "P", &O::plot_prefix,
           "write P-latency-over-time.png and P-latency-cdf.png (gnuplot)"),
      Flag("per_second_out", "FILE", &O::per_second_out,
           "write time_s,sent,answered,p50_ms,p99_ms,errors per second"),
  };
  return *flags;
}

const FlagSpec* FindFlag(absl::string_view name) {
  for (const FlagSpec& flag : Flags()) {
    if (name == flag.name) return &flag;
  }
  return nullptr;
}

// Applies argv[*i] (and its value, advancing *i if it is the next word).
absl::Status ApplyArgument(int argc, char** argv, int* i,
                           LoadTestOptions* options) {
  absl::string_view arg = argv[*i];
  if (!absl::ConsumePrefix(&arg, "--")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", arg, "' (flags start with --)"));
  }
  absl::string_view name = arg;
  std::string value;
  const size_t eq = arg.find('=');
  const FlagSpec* flag = FindFlag(arg.substr(0, eq));
  if (flag == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown flag --", arg.substr(0, eq), " (see --help)"));
  }
  if (eq != absl::string_view::npos) {
    name = arg.substr(0, eq);
    value = std::string(arg.substr(eq + 1));
  } else if (*flag->value_name == '\0') {
    value = "true";  // A bare boolean flag.
  } else if (*i + 1 < argc) {
    value = argv[++*i];
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, " needs a value (", flag->value_name, ")"));
  }
  if (!flag->set(value, options)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, ": cannot parse '", value, "' as ", flag->value_name));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CommandLine> ParseCommandLine(int argc, char** argv) {
  CommandLine result;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "--helpfull") {
      result.help = true;
      return result;
    }
    if (absl::Status s = ApplyArgument(argc, argv, &i, &result.options);
        !s.ok()) {
      return s;
    }
  }
  return result;
}

std::string UsageText() {
  const LoadTestOptions defaults;
  std::string text = kIntro;
  for (const FlagSpec& flag : Flags()) {
    const std::string head =
        *flag.value_name == '\0'
            ? absl::StrCat("--", flag.name)
            : absl::StrCat("--", flag.name, "=", flag.value_name);
    absl::StrAppendFormat(&text, "  %-28s [%s]\n      %s\n", head,
                          flag.show(defaults), flag.help);
  }
  return text;
}

}  // namespace edge::loadtest
