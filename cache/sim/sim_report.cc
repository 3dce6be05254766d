#include "cache/sim/sim_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tools/cpp/gnuplot.h"
#include "tools/cpp/text_file.h"

namespace edge::sim {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;
using google::protobuf::Value;

// Decimal MB, as in docs/model-spec.md's "about 537.5 MB" of experts.
constexpr double kMb = 1e6;

double Percent(uint64_t bytes, const TraceStats& stats) {
  return stats.distinct_bytes == 0 ? 0 : 100.0 * bytes / stats.distinct_bytes;
}

std::string PolicyRow(uint64_t budget, const TraceStats& stats,
                      const PolicyRun& run) {
  const SimCounters& c = run.counters;
  const std::string resizes =
      run.name == kAdaptive
          ? absl::StrFormat("%d/%d", run.resizes_up(), run.resizes_down())
          : "-";
  return absl::StrFormat(
      "| %7.1f (%5.1f%%) | %-13s | %8.4f | %10.1f | %9d | %8.1f | %7s |\n",
      budget / kMb, Percent(budget, stats), run.name, c.hit_rate(),
      c.bytes_loaded / kMb, c.evictions, c.peak_bytes / kMb, resizes);
}

std::string ResizeLines(const PolicyRun& run) {
  std::string lines;
  for (const ResizeEvent& e : run.resizes) {
    absl::StrAppendFormat(&lines, "    access %d: %.1f -> %.1f MB: %s\n",
                          e.access_index, e.from_bytes / kMb, e.to_bytes / kMb,
                          e.reason);
  }
  return lines;
}

void Set(Struct* s, const std::string& key, double number) {
  (*s->mutable_fields())[key].set_number_value(number);
}

Struct CountersJson(const PolicyRun& run) {
  Struct s;
  const SimCounters& c = run.counters;
  Set(&s, "capacity_bytes", run.capacity_bytes);
  Set(&s, "hit_rate", c.hit_rate());
  Set(&s, "accesses", c.accesses);
  Set(&s, "hits", c.hits);
  Set(&s, "bytes_loaded", c.bytes_loaded);
  Set(&s, "evictions", c.evictions);
  Set(&s, "peak_bytes", c.peak_bytes);
  if (run.name != kAdaptive) return s;
  Set(&s, "resizes_up", run.resizes_up());
  Set(&s, "resizes_down", run.resizes_down());
  ListValue* events =
      (*s.mutable_fields())["resize_events"].mutable_list_value();
  for (const ResizeEvent& e : run.resizes) {
    Struct* event = events->add_values()->mutable_struct_value();
    Set(event, "access_index", e.access_index);
    Set(event, "from_bytes", e.from_bytes);
    Set(event, "to_bytes", e.to_bytes);
    (*event->mutable_fields())["reason"].set_string_value(e.reason);
  }
  return s;
}

Struct BudgetJson(const BudgetRun& budget, const TraceStats& stats) {
  Struct s;
  Set(&s, "budget_bytes", budget.budget_bytes);
  Set(&s, "budget_percent", Percent(budget.budget_bytes, stats));
  Set(&s, "adaptive_over_belady", budget.AdaptiveOverBelady());
  Set(&s, "static_oracle_over_belady", budget.StaticOracleOverBelady());
  Set(&s, "adaptive_minus_lru_at_peak", budget.AdaptiveMinusLruAtPeak());
  Struct* policies = (*s.mutable_fields())["policies"].mutable_struct_value();
  for (const PolicyRun& run : budget.runs) {
    *(*policies->mutable_fields())[run.name].mutable_struct_value() =
        CountersJson(run);
  }
  return s;
}

std::string PlotScript(const SweepReport& report, const std::string& png,
                       const std::string& data) {
  return absl::StrCat(
      "set terminal pngcairo size 1000,650 noenhanced\n", "set output ",
      GnuplotQuoted(png), "\n", "set title ",
      GnuplotQuoted(absl::StrCat("expert cache hit rate: ", report.trace_path)),
      "\nset xlabel 'budget (% of all expert bytes)'\n",
      "set ylabel 'hit rate'\nset yrange [0:1]\nset grid\n",
      "set key bottom right\n", "plot for [i=2:", 1 + kPolicyCount, "] ",
      GnuplotQuoted(data),
      " using 1:i with linespoints lw 2 pt 7 title columnheader(i)\n");
}

}  // namespace

std::string FormatSweepTable(const SweepReport& report, bool verbose) {
  const TraceStats& st = report.stats;
  std::string out = absl::StrFormat(
      "trace %s: %d accesses, %d passes, %d experts, %.1f MB\n\n"
      "| budget MB (%%)    | policy        | hit rate | loaded MB  | evictions "
      "| peak MB  | resizes |\n"
      "| ---------------- | ------------- | -------- | ---------- | --------- "
      "| -------- | ------- |\n",
      report.trace_path, st.accesses, st.passes, st.distinct_experts,
      st.distinct_bytes / kMb);
  for (const BudgetRun& budget : report.budgets) {
    for (const PolicyRun& run : budget.runs) {
      absl::StrAppend(&out, PolicyRow(budget.budget_bytes, st, run));
    }
  }
  absl::StrAppend(&out, "\n");
  for (const BudgetRun& budget : report.budgets) {
    absl::StrAppendFormat(
        &out,
        "budget %.1f MB: adaptive/belady %.3f, static_oracle/belady %.3f, "
        "adaptive - lru_at_peak %+.4f\n",
        budget.budget_bytes / kMb, budget.AdaptiveOverBelady(),
        budget.StaticOracleOverBelady(), budget.AdaptiveMinusLruAtPeak());
    if (verbose) absl::StrAppend(&out, ResizeLines(budget.Find(kAdaptive)));
  }
  return out;
}

std::string FormatSweepJson(const SweepReport& report) {
  Struct root;
  (*root.mutable_fields())["trace"].set_string_value(report.trace_path);
  Set(&root, "accesses", report.stats.accesses);
  Set(&root, "passes", report.stats.passes);
  Set(&root, "distinct_experts", report.stats.distinct_experts);
  Set(&root, "distinct_bytes", report.stats.distinct_bytes);
  ListValue* budgets = (*root.mutable_fields())["budgets"].mutable_list_value();
  for (const BudgetRun& budget : report.budgets) {
    *budgets->add_values()->mutable_struct_value() =
        BudgetJson(budget, report.stats);
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  // A Struct of numbers and strings always prints.
  (void)google::protobuf::util::MessageToJsonString(root, &json, options);
  return json;
}

absl::Status WriteHitRatePlot(const SweepReport& report,
                              const std::string& png_path,
                              const std::string& gnuplot) {
  const std::string data_path = png_path + ".dat";
  const std::string script_path = png_path + ".gp";
  std::string data = "budget_percent";
  if (!report.budgets.empty()) {
    for (const PolicyRun& run : report.budgets[0].runs) {
      absl::StrAppend(&data, " ", run.name);
    }
  }
  absl::StrAppend(&data, "\n");
  for (const BudgetRun& budget : report.budgets) {
    absl::StrAppendFormat(&data, "%.3f",
                          Percent(budget.budget_bytes, report.stats));
    for (const PolicyRun& run : budget.runs) {
      absl::StrAppendFormat(&data, " %.5f", run.counters.hit_rate());
    }
    absl::StrAppend(&data, "\n");
  }
  if (absl::Status s = WriteTextFile(data_path, data); !s.ok()) return s;
  if (absl::Status s =
          WriteTextFile(script_path, PlotScript(report, png_path, data_path));
      !s.ok()) {
    return s;
  }
  return RunGnuplot(gnuplot, script_path);
}

}  // namespace edge::sim
