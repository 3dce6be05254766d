// cache_sim's outputs for a sweep (budget_sweep.h): the text table, the
// JSON document and the hit-rate-against-budget plot.
//
// Stateless and thread-safe (the plot: not for concurrent calls with the
// same path).
#ifndef EDGE_CACHE_SIM_SIM_REPORT_H_
#define EDGE_CACHE_SIM_SIM_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "cache/sim/budget_sweep.h"

namespace edge::sim {

struct SweepReport {
  std::string trace_path;
  TraceStats stats;
  std::vector<BudgetRun> budgets;
};

// One row per budget and policy (hit rate, MB loaded, evictions, peak MB,
// resizes up/down), then per budget adaptive/Belady and adaptive minus
// LRU-at-peak; with `verbose`, every resize event with its reason.
std::string FormatSweepTable(const SweepReport& report, bool verbose);

// Every figure of the table, resize events included, as one JSON object.
std::string FormatSweepJson(const SweepReport& report);

// Hit rate against budget (% of all expert bytes), one line per policy,
// drawn by gnuplot into `png_path`; the data and script are kept next to
// it (png_path + ".dat", ".gp"). FAILED_PRECONDITION if gnuplot is
// missing (tools/cpp/gnuplot.h), INTERNAL if a file cannot be written.
absl::Status WriteHitRatePlot(const SweepReport& report,
                              const std::string& png_path,
                              const std::string& gnuplot = "gnuplot");

}  // namespace edge::sim

#endif  // EDGE_CACHE_SIM_SIM_REPORT_H_
