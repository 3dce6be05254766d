// cache_sim: replays an expert access trace (cache/access_trace.h) against
// fixed-size LRU, the adaptive cache, LRU at the adaptive cache's peak,
// S3-FIFO and Belady's MIN at each budget (cache/sim/budget_sweep.h), and
// prints the comparison as a table; optionally as JSON and as a plot.
//
//   cache_sim --trace trace.csv --budget 10%,25%,50% [--json_out r.json]
//       [--plot hit_rate.png] [--verbose]
//
// Exit code 0 on success, 1 if the trace cannot be read or an output
// cannot be written, 2 for a bad command line. A missing gnuplot skips
// the plot with a message.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "cache/sim/budget_sweep.h"
#include "cache/sim/sim_report.h"
#include "tools/cpp/text_file.h"

ABSL_FLAG(std::string, trace, "", "expert access trace (required)");
ABSL_FLAG(std::string, budget, "",
          "comma-separated budgets: bytes, or % of all distinct expert bytes "
          "in the trace (required), e.g. 10%,25%,50%");
ABSL_FLAG(double, adaptive_min_fraction, 0.25,
          "adaptive cache's min_bytes (floor and starting size) as a "
          "fraction of the budget");
ABSL_FLAG(std::string, json_out, "", "also write the results as JSON here");
ABSL_FLAG(std::string, plot, "",
          "draw hit rate against budget into this PNG (gnuplot)");
ABSL_FLAG(bool, verbose, false, "list every resize event with its reason");

namespace edge::sim {
namespace {

enum ExitCode : int { kExitOk = 0, kExitFailed = 1, kExitUsage = 2 };

int Fail(const absl::Status& status, int code) {
  std::fprintf(stderr, "cache_sim: %s\n", status.ToString().c_str());
  return code;
}

// --json_out and --plot; a missing gnuplot only skips the plot.
int WriteOutputs(const SweepReport& report) {
  int code = kExitOk;
  if (const std::string json = absl::GetFlag(FLAGS_json_out); !json.empty()) {
    if (absl::Status s = WriteTextFile(json, FormatSweepJson(report));
        !s.ok()) {
      code = Fail(s, kExitFailed);
    }
  }
  if (const std::string png = absl::GetFlag(FLAGS_plot); !png.empty()) {
    const absl::Status s = WriteHitRatePlot(report, png);
    if (absl::IsFailedPrecondition(s)) {
      std::fprintf(stderr, "cache_sim: skipping the plot: %s\n",
                   std::string(s.message()).c_str());
    } else if (!s.ok()) {
      code = Fail(s, kExitFailed);
    }
  }
  return code;
}

int Main() {
  const std::string path = absl::GetFlag(FLAGS_trace);
  const double min_fraction = absl::GetFlag(FLAGS_adaptive_min_fraction);
  if (path.empty() || absl::GetFlag(FLAGS_budget).empty()) {
    return Fail(absl::InvalidArgumentError("--trace and --budget are required"),
                kExitUsage);
  }
  if (!(min_fraction > 0 && min_fraction <= 1)) {
    return Fail(
        absl::InvalidArgumentError("--adaptive_min_fraction must be in (0, 1]"),
        kExitUsage);
  }
  absl::StatusOr<std::vector<ExpertAccess>> trace = ReadAccessTrace(path);
  if (!trace.ok()) return Fail(trace.status(), kExitFailed);
  SweepReport report;
  report.trace_path = path;
  report.stats = SummarizeTrace(*trace);
  SweepOptions options;
  options.adaptive_min_fraction = min_fraction;
  absl::StatusOr<std::vector<uint64_t>> budgets =
      ParseBudgets(absl::GetFlag(FLAGS_budget), report.stats.distinct_bytes);
  if (!budgets.ok()) return Fail(budgets.status(), kExitUsage);
  options.budgets_bytes = *budgets;
  report.budgets = RunSweep(*trace, options);

  std::fputs(FormatSweepTable(report, absl::GetFlag(FLAGS_verbose)).c_str(),
             stdout);
  return WriteOutputs(report);
}

}  // namespace
}  // namespace edge::sim

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "cache_sim --trace FILE --budget BYTES|PCT%[,...] [--json_out FILE] "
      "[--plot PNG] [--verbose]");
  absl::ParseCommandLine(argc, argv);
  return edge::sim::Main();
}
