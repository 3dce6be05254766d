#include "loadtest/latency_plots.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tools/cpp/gnuplot.h"
#include "tools/cpp/text_file.h"

namespace edge::loadtest {
namespace {

struct PlotData {
  std::string ok_points, error_points, cdf;  // gnuplot data files' text.
};

PlotData MakePlotData(const RunOutcome& outcome,
                      const LatencyPlotOptions& options) {
  PlotData data;
  std::vector<double> window;
  for (const RequestRecord& r : outcome.driver.records) {
    if (!r.answered()) continue;
    const double at_s = r.answered_ns * 1e-9;
    const double latency_ms = (r.answered_ns - r.start_ns) * 1e-6;
    absl::StrAppendFormat(r.ok() ? &data.ok_points : &data.error_points,
                          "%.6f %.4f\n", at_s, latency_ms);
    const double start_s = r.start_ns * 1e-9;
    if (r.ok() && start_s >= options.window_start_s &&
        start_s < options.window_end_s) {
      window.push_back(latency_ms);
    }
  }
  std::sort(window.begin(), window.end());
  for (size_t i = 0; i < window.size(); ++i) {
    absl::StrAppendFormat(&data.cdf, "%.4f %.6f\n", window[i],
                          (i + 1.0) / window.size());
  }
  return data;
}

std::string GnuplotScript(const LatencyPlotOptions& o, const PlotData& data) {
  const std::string& p = o.prefix;
  std::vector<std::string> series;
  if (!data.ok_points.empty()) {
    series.push_back(absl::StrCat(GnuplotQuoted(p + "-latency-ok.dat"),
                                  " using 1:2 with points pt 7 ps 0.4 "
                                  "lc rgb '#1f77b4' title 'OK'"));
  }
  if (!data.error_points.empty()) {
    series.push_back(absl::StrCat(GnuplotQuoted(p + "-latency-errors.dat"),
                                  " using 1:2 with points pt 2 ps 0.6 "
                                  "lc rgb '#d62728' title 'error'"));
  }
  std::string script = absl::StrCat(
      "set terminal pngcairo size 1200,700 noenhanced\nset grid\n"
      "set key outside right top\n",
      "set output ", GnuplotQuoted(p + "-latency-over-time.png"), "\n",
      "set title ", GnuplotQuoted(o.title + ": latency of each answer"), "\n",
      "set xlabel 'time since start (s)'\nset ylabel 'latency (ms)'\n",
      "set logscale y\n",
      absl::StrFormat("set arrow from %.3f, graph 0 to %.3f, graph 1 nohead "
                      "dt 2 lc rgb 'gray'\nset label 'end of warm-up' at "
                      "%.3f, graph 0.03 offset 0.5, 0 textcolor rgb 'gray'\n",
                      o.window_start_s, o.window_start_s, o.window_start_s),
      "plot ", absl::StrJoin(series, ", \\\n     "), "\n");
  absl::StrAppend(
      &script, "unset arrow\nunset label\nunset logscale\nset logscale x\n",
      "set output ", GnuplotQuoted(p + "-latency-cdf.png"), "\n", "set title ",
      GnuplotQuoted(o.title +
                    ": latency CDF, OK answers of the measured window"),
      "\nset xlabel 'latency (ms)'\nset ylabel 'fraction of answers'\n",
      "set yrange [0:1]\nset key bottom right\n", "plot ",
      GnuplotQuoted(p + "-latency-cdf.dat"),
      " using 1:2 with steps lw 2 title 'CDF'\n");
  return script;
}

}  // namespace

absl::Status WriteLatencyPlots(const RunOutcome& outcome,
                               const LatencyPlotOptions& options) {
  const PlotData data = MakePlotData(outcome, options);
  if (data.cdf.empty()) {
    return absl::FailedPreconditionError(
        "no OK answers in the measured window to plot");
  }
  const std::string& p = options.prefix;
  const std::string script = p + "-plots.gp";
  for (const auto& [path, text] :
       {std::pair<std::string, const std::string*>{p + "-latency-ok.dat",
                                                   &data.ok_points},
        {p + "-latency-errors.dat", &data.error_points},
        {p + "-latency-cdf.dat", &data.cdf}}) {
    if (absl::Status s = WriteTextFile(path, *text); !s.ok()) return s;
  }
  if (absl::Status s = WriteTextFile(script, GnuplotScript(options, data));
      !s.ok()) {
    return s;
  }
  return RunGnuplot(options.gnuplot, script);
}

}  // namespace edge::loadtest
