// MemoryLimit detection on fake /proc and /sys trees (cgroup v2 with a
// tighter ancestor, cgroup v1, none), the plan's arithmetic, and the
// budget's accounting.
#include "server/memory_budget.h"

#include <atomic>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/memory_limit.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using test_support::TempDir;
using test_support::WriteFileOrDie;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1 << 20;

void WriteMeminfo(const TempDir& root) {
  WriteFileOrDie(root.Join("proc/meminfo"),
                 "MemTotal:       24000000 kB\nMemFree:  100 kB\n");
}

TEST(DetectMemoryLimitTest, CgroupV2TakesTheTightestAncestor) {
  TempDir root;
  WriteMeminfo(root);
  WriteFileOrDie(root.Join("proc/self/mountinfo"),
                 "30 22 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 "
                 "rw\n");
  WriteFileOrDie(root.Join("proc/self/cgroup"), "0::/pods/gateway\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/pods/memory.max"), "536870912\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/pods/cgroup.procs"), "");
  WriteFileOrDie(root.Join("sys/fs/cgroup/pods/gateway/memory.max"), "max\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/pods/gateway/cgroup.procs"), "1\n");
  auto limit = DetectMemoryLimit(root.path());
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->bytes, 512 * kMiB);
  EXPECT_THAT(limit->source,
              HasSubstr("cgroup v2 /sys/fs/cgroup/pods/memory.max"));
}

TEST(DetectMemoryLimitTest, CgroupV2ContainerSeesItsOwnCgroupAtTheMount) {
  TempDir root;
  WriteMeminfo(root);
  // Docker with a private cgroup namespace: the path is "/".
  WriteFileOrDie(root.Join("proc/self/mountinfo"),
                 "30 22 0:27 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n");
  WriteFileOrDie(root.Join("proc/self/cgroup"), "0::/\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/memory.max"), "268435456\n");
  auto limit = DetectMemoryLimit(root.path());
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->bytes, 256 * kMiB);
}

TEST(DetectMemoryLimitTest, CgroupV1ReadsTheHierarchicalLimit) {
  TempDir root;
  WriteMeminfo(root);
  WriteFileOrDie(root.Join("proc/self/mountinfo"),
                 "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup "
                 "cgroup rw,memory\n"
                 "31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
  WriteFileOrDie(root.Join("proc/self/cgroup"),
                 "8:cpu:/\n4:memory:/docker/abc\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/memory/docker/abc/cgroup.procs"),
                 "1\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/memory/docker/abc/memory.stat"),
                 "cache 0\nhierarchical_memory_limit 536870912\n");
  auto limit = DetectMemoryLimit(root.path());
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->bytes, 512 * kMiB);
  EXPECT_THAT(limit->source, HasSubstr("cgroup v1"));
}

TEST(DetectMemoryLimitTest, NoLimitIsHalfOfTheMachine) {
  TempDir root;
  WriteMeminfo(root);
  WriteFileOrDie(root.Join("proc/self/mountinfo"),
                 "34 30 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup "
                 "rw,memory\n");
  WriteFileOrDie(root.Join("proc/self/cgroup"), "4:memory:/\n");
  WriteFileOrDie(root.Join("sys/fs/cgroup/memory/memory.stat"),
                 "hierarchical_memory_limit 9223372036854771712\n");
  auto limit = DetectMemoryLimit(root.path());
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->bytes, 24000000ull * 1024 / 2);
  EXPECT_THAT(limit->source, HasSubstr("MemTotal"));
}

TEST(DetectMemoryLimitTest, NothingReadableIsUnavailable) {
  TempDir root;
  EXPECT_EQ(DetectMemoryLimit(root.path()).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(DetectMemoryLimitTest, ThisProcessHasALimitAndAResidentSize) {
  auto limit = DetectMemoryLimit();
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_GT(limit->bytes, 0u);
  EXPECT_GT(ResidentBytes(), 0u);
}

TEST(PlanMemoryTest, RequestsGetWhatTheRestLeaves) {
  const MemoryPlan plan = PlanMemory(512 * kMiB, "test", 80 * kMiB, 20 * kMiB);
  EXPECT_EQ(plan.headroom_bytes, 64 * kMiB);    // max(64 MiB, 512 / 8)
  EXPECT_EQ(plan.transport_bytes, 128 * kMiB);  // 512 / 4
  EXPECT_EQ(plan.request_bytes, (512 - 80 - 20 - 128 - 64) * kMiB);
  EXPECT_THAT(plan.Describe(), HasSubstr("requests in flight 220 MiB"));
  const MemoryPlan big = PlanMemory(4096 * kMiB, "test", 0, 0);
  EXPECT_EQ(big.headroom_bytes, 512 * kMiB);
}

TEST(PlanMemoryTest, TooSmallALimitLeavesNothing) {
  EXPECT_EQ(PlanMemory(128 * kMiB, "test", 100 * kMiB, 0).request_bytes, 0u);
}

TEST(MemoryBudgetTest, ReservesWithinCapacityOnly) {
  MemoryBudget budget(100);
  EXPECT_TRUE(budget.Fits(100));
  EXPECT_FALSE(budget.Fits(101));
  EXPECT_TRUE(budget.TryReserve(60));
  EXPECT_FALSE(budget.TryReserve(41));
  EXPECT_TRUE(budget.TryReserve(40));
  EXPECT_EQ(budget.held_bytes(), 100u);
  budget.Release(60);
  EXPECT_EQ(budget.held_bytes(), 40u);
  budget.SetCapacity(30);
  EXPECT_FALSE(budget.TryReserve(1));
}

TEST(MemoryBudgetTest, ZeroCapacityIsUnlimited) {
  MemoryBudget budget(0);
  EXPECT_TRUE(budget.Fits(uint64_t{1} << 40));
  EXPECT_TRUE(budget.TryReserve(uint64_t{1} << 40));
}

TEST(MemoryBudgetTest, TrimIsDueOnlyAfterEnoughWasReleasedAndLittleIsHeld) {
  MemoryBudget budget(0);
  ASSERT_TRUE(budget.TryReserve(100));
  budget.Release(10);
  EXPECT_FALSE(budget.TakeTrimDue(50));  // 10 released: not worth it
  budget.Release(60);
  EXPECT_TRUE(budget.TakeTrimDue(50));   // 70 released, 30 held
  EXPECT_FALSE(budget.TakeTrimDue(50));  // nothing released since
}

void WaitForTrims(const MemoryTrimmer& trimmer, int n) {
  for (int i = 0; i < 400 && trimmer.trims() < n; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
}

TEST(MemoryTrimmerTest, TrimsAfterTheBudgetReleasedABurst) {
  MemoryBudget budget(0);
  ASSERT_TRUE(budget.TryReserve(1000));
  budget.Release(1000);
  MemoryTrimmer trimmer(&budget, absl::Milliseconds(5), 100,
                        [] { return uint64_t{5000}; });
  WaitForTrims(trimmer, 1);
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(trimmer.trims(), 1);  // once: nothing released since
}

TEST(MemoryTrimmerTest, TrimsWhileTheResidentSizeIsAboveItsFloor) {
  MemoryBudget budget(0);
  std::atomic<uint64_t> rss{5000};
  MemoryTrimmer trimmer(&budget, absl::Milliseconds(5), 100,
                        [&rss] { return rss.load(); });
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(trimmer.trims(), 0);
  // Requests holding memory: the growth is theirs, no trim.
  ASSERT_TRUE(budget.TryReserve(1000));
  rss = 9000;
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(trimmer.trims(), 0);
  // Idle again, the memory still held elsewhere (gRPC's buffers, say):
  // trims that free nothing back off to one every 4 intervals, and keep
  // coming, so memory freed later is still returned.
  budget.Release(50);  // too little to make a trim due by itself
  budget.Release(950);
  WaitForTrims(trimmer, 3);
  const int before = trimmer.trims();
  absl::SleepFor(absl::Milliseconds(200));  // 40 intervals
  const int during = trimmer.trims() - before;
  EXPECT_GE(during, 2);   // ~10 at one per 4 intervals (timing may stretch)
  EXPECT_LE(during, 20);  // not 40: one per interval
}

}  // namespace
}  // namespace edge
