// Latency plots of a run, drawn by gnuplot:
//
//   PREFIX-latency-over-time.png  each answer's latency (log y) against the
//                                 time it arrived, OK and error answers in
//                                 separate colours, the warm-up's end marked
//   PREFIX-latency-cdf.png        CDF of the measured window's OK latencies
//                                 (log x), the report's percentiles' source
//
// The data (PREFIX-*.dat) and the script (PREFIX-plots.gp) are kept next to
// the images, so a plot can be restyled and redrawn without re-running the
// load. gnuplot is an optional tool: without it on PATH nothing is drawn
// and FAILED_PRECONDITION says so; the caller reports that and goes on.
//
// Stateless; not for concurrent calls with the same prefix.
#ifndef EDGE_LOADTEST_LATENCY_PLOTS_H_
#define EDGE_LOADTEST_LATENCY_PLOTS_H_

#include <string>

#include "absl/status/status.h"
#include "loadtest/load_report.h"
#include "loadtest/load_run.h"

namespace edge::loadtest {

struct LatencyPlotOptions {
  std::string prefix;         // Path prefix of every file written; not empty.
  std::string title;          // Shown on both plots.
  double window_start_s = 0;  // End of the warm-up (a line on the plot).
  double window_end_s = 0;    // The CDF covers [start, end) as the report.
  std::string gnuplot = "gnuplot";  // Looked up on PATH unless it has a '/'.
};

// FAILED_PRECONDITION if gnuplot cannot be found, INTERNAL if a file
// cannot be written or gnuplot fails (its stderr is passed through).
absl::Status WriteLatencyPlots(const RunOutcome& outcome,
                               const LatencyPlotOptions& options);

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_LATENCY_PLOTS_H_
