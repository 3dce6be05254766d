#include "engine/internal/compute_thread.h"

#include <omp.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace edge::internal {
namespace {

TEST(ComputeThreadTest, RunsTasksFromEveryCallerOnItsOwnThread) {
  ComputeThread compute;
  constexpr int kCallers = 3;
  constexpr int kCallsEach = 50;
  std::vector<std::vector<std::thread::id>> seen(kCallers);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int i = 0; i < kCallsEach; ++i) {
        compute.Run([&] { seen[c].push_back(std::this_thread::get_id()); });
      }
    });
  }
  for (std::thread& t : callers) t.join();
  for (const auto& ids : seen) {
    ASSERT_EQ(ids.size(), kCallsEach);
    for (std::thread::id id : ids) EXPECT_EQ(id, compute.id());
  }
  EXPECT_NE(compute.id(), std::this_thread::get_id());
}

TEST(ComputeThreadTest, RunReturnsOnlyAfterTheTaskFinished) {
  ComputeThread compute;
  int value = 0;
  compute.Run([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    value = 7;
  });
  EXPECT_EQ(value, 7);
}

TEST(ComputeThreadTest, RethrowsTheTasksExceptionAndKeepsServing) {
  ComputeThread compute;
  EXPECT_THROW(compute.Run([] { throw std::runtime_error("kernel failed"); }),
               std::runtime_error);
  bool ran = false;
  compute.Run([&] { ran = true; });
  EXPECT_TRUE(ran);
}

TEST(ComputeThreadTest, RunFromInsideATaskRunsDirectly) {
  ComputeThread compute;
  std::thread::id inner;
  compute.Run(
      [&] { compute.Run([&] { inner = std::this_thread::get_id(); }); });
  EXPECT_EQ(inner, compute.id());
}

TEST(OmpSingleThreadTest, LimitsOpenMpToOneThreadAndRestores) {
  omp_set_num_threads(2);
  {
    OmpSingleThread one;
    EXPECT_EQ(omp_get_max_threads(), 1);
    int team = 0;
#pragma omp parallel
    {
#pragma omp single
      team = omp_get_num_threads();
    }
    EXPECT_EQ(team, 1);
  }
  EXPECT_EQ(omp_get_max_threads(), 2);
}

}  // namespace
}  // namespace edge::internal
