// edge-loadtest: a camera-fleet load generator for the edge gateway. This
// file owns the process: flags (command_line.h), the order of the steps
// (connect, build frames, run, report) and the exit code; `--help` is the
// user's reference.
//
// Exit codes: 0 the run completed (answers with error codes are part of
// the report, not a failure of the tool); 1 a request went unanswered, the
// gateway could not be reached, or a requested output could not be
// written; 2 the command line or --frames_dir is unusable (nothing sent).
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "loadtest/command_line.h"
#include "loadtest/frame_set.h"
#include "loadtest/latency_plots.h"
#include "loadtest/load_report.h"
#include "loadtest/load_run.h"
#include "tools/cpp/text_file.h"

namespace edge::loadtest {
namespace {

enum ExitCode : int { kExitOk = 0, kExitFailed = 1, kExitUsage = 2 };

void Diagnose(absl::string_view message) {
  std::fprintf(stderr, "edge-loadtest: %s\n", std::string(message).c_str());
}

std::string Describe(const LoadTestOptions& o, const LoadReport& r) {
  const std::string load =
      o.mode == LoadMode::kStream
          ? absl::StrFormat("%d cameras x %g fps", o.cameras, o.fps)
          : absl::StrFormat("%d closed-loop clients", o.concurrency);
  return absl::StrFormat("%s %s, %g s against %s (%s)", r.mode, load,
                         o.duration_s, o.target, r.model);
}

// Plots are optional: a missing gnuplot is reported and skipped.
bool WritePlots(const LoadTestOptions& options, const RunOutcome& outcome,
                const LoadReport& report) {
  LatencyPlotOptions plot;
  plot.prefix = options.plot_prefix;
  plot.title = Describe(options, report);
  plot.window_start_s = report.window_start_s;
  plot.window_end_s = report.window_end_s;
  const absl::Status s = WriteLatencyPlots(outcome, plot);
  if (absl::IsFailedPrecondition(s)) {
    Diagnose(absl::StrCat("skipping plots: ", s.message()));
    return true;
  }
  if (!s.ok()) Diagnose(s.message());
  return s.ok();
}

// Writes every output asked for; false if any could not be written.
bool WriteOutputs(const LoadTestOptions& options, const RunOutcome& outcome,
                  const LoadReport& report) {
  bool ok = true;
  auto write = [&ok](const std::string& path, const std::string& text) {
    if (path.empty()) return;
    if (absl::Status s = WriteTextFile(path, text); !s.ok()) {
      Diagnose(s.message());
      ok = false;
    }
  };
  write(options.json_out, FormatReportJson(options, report));
  write(options.per_second_out, FormatPerSecondCsv(outcome));
  if (!options.plot_prefix.empty() && !WritePlots(options, outcome, report)) {
    ok = false;
  }
  return ok;
}

int Main(int argc, char** argv) {
  absl::StatusOr<CommandLine> command_line = ParseCommandLine(argc, argv);
  if (!command_line.ok()) {
    Diagnose(command_line.status().message());
    return kExitUsage;
  }
  if (command_line->help) {
    std::fputs(UsageText().c_str(), stdout);
    return kExitOk;
  }
  const LoadTestOptions& options = command_line->options;
  if (absl::Status s = ValidateLoadTestOptions(options); !s.ok()) {
    Diagnose(s.message());
    return kExitUsage;
  }
  absl::StatusOr<GatewayLink> link = ConnectToGateway(options);
  if (!link.ok()) {
    Diagnose(link.status().ToString());
    return kExitFailed;
  }
  absl::StatusOr<std::vector<Frame>> frames =
      BuildFrameSet(options, link->model.image_size());
  if (!frames.ok()) {
    Diagnose(frames.status().message());
    return kExitUsage;
  }
  const RunOutcome outcome = RunLoad(options, *link, *frames);
  const LoadReport report =
      BuildLoadReport(options, link->model, *frames, outcome);
  std::fputs(FormatReportTable(report).c_str(), stdout);
  std::fflush(stdout);
  const bool outputs_written = WriteOutputs(options, outcome, report);
  if (report.unanswered > 0) {
    Diagnose(absl::StrCat(report.unanswered, " of ", report.sent,
                          " requests were never answered"));
    return kExitFailed;
  }
  return outputs_written ? kExitOk : kExitFailed;
}

}  // namespace
}  // namespace edge::loadtest

int main(int argc, char** argv) { return edge::loadtest::Main(argc, argv); }
