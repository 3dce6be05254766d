#include "loadtest/latency_plots.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

extern char** environ;

namespace edge::loadtest {
namespace {

// gnuplot single-quoted string: a quote is written twice.
std::string Quoted(const std::string& text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "''"}}), "'");
}

// The executable `name` on PATH (or `name` itself if it has a '/'), or "".
std::string FindExecutable(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    return access(name.c_str(), X_OK) == 0 ? name : "";
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "", ':')) {
    const std::string candidate =
        absl::StrCat(dir.empty() ? "." : dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

absl::Status RunGnuplot(const std::string& gnuplot, const std::string& script) {
  std::vector<char*> argv = {const_cast<char*>(gnuplot.c_str()),
                             const_cast<char*>(script.c_str()), nullptr};
  pid_t pid = 0;
  const int error = posix_spawn(&pid, gnuplot.c_str(), nullptr, nullptr,
                                argv.data(), environ);
  if (error != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", gnuplot, ": ", strerror(error)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat(gnuplot, " ", script, " failed (status ", status, ")"));
  }
  return absl::OkStatus();
}

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
    series.push_back(absl::StrCat(Quoted(p + "-latency-ok.dat"),
                                  " using 1:2 with points pt 7 ps 0.4 "
                                  "lc rgb '#1f77b4' title 'OK'"));
  }
  if (!data.error_points.empty()) {
    series.push_back(absl::StrCat(Quoted(p + "-latency-errors.dat"),
                                  " using 1:2 with points pt 2 ps 0.6 "
                                  "lc rgb '#d62728' title 'error'"));
  }
  std::string script = absl::StrCat(
      "set terminal pngcairo size 1200,700 noenhanced\nset grid\n"
      "set key outside right top\n",
      "set output ", Quoted(p + "-latency-over-time.png"), "\n", "set title ",
      Quoted(o.title + ": latency of each answer"), "\n",
      "set xlabel 'time since start (s)'\nset ylabel 'latency (ms)'\n",
      "set logscale y\n",
      absl::StrFormat("set arrow from %.3f, graph 0 to %.3f, graph 1 nohead "
                      "dt 2 lc rgb 'gray'\nset label 'end of warm-up' at "
                      "%.3f, graph 0.03 offset 0.5, 0 textcolor rgb 'gray'\n",
                      o.window_start_s, o.window_start_s, o.window_start_s),
      "plot ", absl::StrJoin(series, ", \\\n     "), "\n");
  absl::StrAppend(
      &script, "unset arrow\nunset label\nunset logscale\nset logscale x\n",
      "set output ", Quoted(p + "-latency-cdf.png"), "\n", "set title ",
      Quoted(o.title + ": latency CDF, OK answers of the measured window"),
      "\nset xlabel 'latency (ms)'\nset ylabel 'fraction of answers'\n",
      "set yrange [0:1]\nset key bottom right\n", "plot ",
      Quoted(p + "-latency-cdf.dat"),
      " using 1:2 with steps lw 2 title 'CDF'\n");
  return script;
}

}  // namespace

absl::Status WriteTextFile(const std::string& path,
                           const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status WriteLatencyPlots(const RunOutcome& outcome,
                               const LatencyPlotOptions& options) {
  const std::string gnuplot = FindExecutable(options.gnuplot);
  if (gnuplot.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        options.gnuplot, " not found on PATH (install gnuplot-nox)"));
  }
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
  return RunGnuplot(gnuplot, script);
}

}  // namespace edge::loadtest
