// Drawing plots with gnuplot, an optional tool: the PNGs of edge-loadtest
// (loadtest/latency_plots.h) and cache_sim. Callers write their data and a
// gnuplot script to files (tools/cpp/text_file.h), then RunGnuplot(); without
// gnuplot on PATH nothing is drawn and FAILED_PRECONDITION says so, so the
// caller can report that and go on.
//
// Stateless and thread-safe.
#ifndef EDGE_TOOLS_CPP_GNUPLOT_H_
#define EDGE_TOOLS_CPP_GNUPLOT_H_

#include <string>

#include "absl/status/status.h"

namespace edge {

// `text` as a gnuplot single-quoted string (a quote is written twice).
std::string GnuplotQuoted(const std::string& text);

// Runs `gnuplot script_path` and waits for it. `gnuplot` is looked up on
// PATH unless it contains a '/'. FAILED_PRECONDITION if it cannot be found,
// INTERNAL if it cannot start or exits with an error (its stderr passes
// through to ours).
absl::Status RunGnuplot(const std::string& gnuplot,
                        const std::string& script_path);

}  // namespace edge

#endif  // EDGE_TOOLS_CPP_GNUPLOT_H_
