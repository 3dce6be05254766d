#include "cache/sim/budget_sweep.h"

#include <string>
#include <vector>

#include "cache/sim/sim_report.h"
#include "cache/sim/trace_generator.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/cache/sim/sim_traces.h"

namespace edge::sim {
namespace {

TEST(BudgetSweepTest, ParsesPercentagesAndBytes) {
  auto budgets = ParseBudgets("50%, 1000,10%", 4000);
  ASSERT_TRUE(budgets.ok()) << budgets.status();
  EXPECT_EQ(*budgets, (std::vector<uint64_t>{400, 1000, 2000}));
  for (const char* bad : {"", "0", "-5", "ten%", "0%", "10%,"}) {
    EXPECT_FALSE(ParseBudgets(bad, 4000).ok()) << bad;
  }
}

TEST(BudgetSweepTest, SummarizesTheTrace) {
  const TraceStats stats = SummarizeTrace(testing::Trace({0, 1, 0, 2, 1}, 10));
  EXPECT_EQ(stats.accesses, 5);
  EXPECT_EQ(stats.passes, 5);
  EXPECT_EQ(stats.distinct_experts, 3);
  EXPECT_EQ(stats.distinct_bytes, 30u);
}

// Belady's MIN is optimal for equal-sized experts, so no policy may beat it
// at any budget: a check of every simulator against the others.
TEST(BudgetSweepTest, BeladyIsAnUpperBoundAtEveryBudget) {
  for (Routing routing : {Routing::kImage, Routing::kToken}) {
    TraceGeneratorOptions g;
    g.batches = 400;
    g.routing = routing;
    g.drift_batches = 100;
    auto trace = GenerateTrace(g);
    ASSERT_TRUE(trace.ok());
    const TraceStats stats = SummarizeTrace(*trace);
    SweepOptions options;
    options.budgets_bytes =
        *ParseBudgets("5%,10%,25%,50%,90%", stats.distinct_bytes);
    for (const BudgetRun& budget : RunSweep(*trace, options)) {
      const int64_t optimum = budget.Find(kBelady).counters.hits;
      for (const PolicyRun& run : budget.runs) {
        EXPECT_LE(run.counters.hits, optimum)
            << run.name << " at " << budget.budget_bytes;
        EXPECT_LE(run.counters.peak_bytes, budget.budget_bytes) << run.name;
        EXPECT_EQ(run.counters.accesses, stats.accesses);
      }
      EXPECT_EQ(budget.Find(kLruAtPeak).capacity_bytes,
                budget.Find(kAdaptive).counters.peak_bytes);
    }
  }
}

TEST(BudgetSweepTest, ReportsEveryPolicyAsTableAndJson) {
  TraceGeneratorOptions g;
  g.batches = 100;
  auto trace = GenerateTrace(g);
  ASSERT_TRUE(trace.ok());
  SweepReport report;
  report.trace_path = "synthetic";
  report.stats = SummarizeTrace(*trace);
  SweepOptions options;
  options.budgets_bytes = {report.stats.distinct_bytes / 4};
  report.budgets = RunSweep(*trace, options);
  const std::string table = FormatSweepTable(report, true);
  for (const char* name : {kLru, kAdaptive, kLruAtPeak, kS3Fifo, kBelady}) {
    EXPECT_NE(table.find(name), std::string::npos) << name;
  }
  google::protobuf::Struct json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  FormatSweepJson(report), &json)
                  .ok());
  const auto& budget =
      json.fields().at("budgets").list_value().values(0).struct_value();
  EXPECT_EQ(budget.fields().at("budget_bytes").number_value(),
            static_cast<double>(options.budgets_bytes[0]));
  EXPECT_EQ(budget.fields()
                .at("policies")
                .struct_value()
                .fields()
                .at(kBelady)
                .struct_value()
                .fields()
                .at("hits")
                .number_value(),
            report.budgets[0].Find(kBelady).counters.hits);
}

}  // namespace
}  // namespace edge::sim
