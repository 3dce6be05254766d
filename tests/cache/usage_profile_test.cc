#include "cache/usage_profile.h"

#include <atomic>
#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using test_support::ReadFileOrDie;
using test_support::TempDir;
using test_support::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Counts = std::vector<std::pair<ExpertKey, uint64_t>>;

UsageProfile SampleProfile() {
  UsageProfile p;
  p.model = "vmoe-s32-e32";
  p.counts = {{{5, 0}, 3}, {{5, 17}, 120.5}, {{7, 2}, 7}, {{7, 3}, 0}};
  return p;
}

TEST(UsageProfileTest, WriteThenReadRoundTrips) {
  TempDir tmp;
  const std::string path = tmp.Join("profile.csv");
  ASSERT_TRUE(WriteUsageProfile(path, SampleProfile()).ok());
  const auto got = ReadUsageProfile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->model, "vmoe-s32-e32");
  EXPECT_EQ(got->counts, SampleProfile().counts);
  const std::string text = ReadFileOrDie(path);
  EXPECT_EQ(text.rfind("# edge expert usage profile v1\nmodel,vmoe-s32-e32\n"
                       "layer,expert,count\n",
                       0),
            0u)
      << text;
  EXPECT_THAT(text, HasSubstr("\n5,17,120.5\n"));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(UsageProfileTest, MostUsedFirstSortsByCountThenKeyAndSkipsZeros) {
  UsageProfile p = SampleProfile();
  p.counts[{5, 1}] = 7;  // ties with (7, 2): the lower key comes first.
  EXPECT_THAT(MostUsedFirst(p), ElementsAre(ExpertKey{5, 17}, ExpertKey{5, 1},
                                            ExpertKey{7, 2}, ExpertKey{5, 0}));
}

TEST(UsageProfileTest, MergeDecaysThePreviousCountsAndAddsTheNew) {
  const UsageProfile merged =
      MergeUsage(SampleProfile(), 0.5, Counts{{{5, 0}, 10}, {{9, 1}, 4}});
  EXPECT_EQ(merged.model, "vmoe-s32-e32");
  EXPECT_DOUBLE_EQ(merged.counts.at({5, 0}), 11.5);
  EXPECT_DOUBLE_EQ(merged.counts.at({5, 17}), 60.25);
  EXPECT_DOUBLE_EQ(merged.counts.at({9, 1}), 4);
  EXPECT_EQ(merged.counts.size(), 5u);
}

TEST(UsageProfileTest, MissingFileIsNotFound) {
  TempDir tmp;
  EXPECT_EQ(ReadUsageProfile(tmp.Join("none.csv")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(UsageProfileTest, MalformedFilesAreInvalidArgumentNamingFileAndLine) {
  TempDir tmp;
  const std::string path = tmp.Join("profile.csv");
  const std::string head =
      "# edge expert usage profile v1\nmodel,m\nlayer,expert,count\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\x89PNG\r\n binary junk", "line 1: not an expert usage profile"},
      {"", "truncated"},
      {"# edge expert usage profile v1\nmodel,m\n", "truncated"},
      {"# edge expert usage profile v1\nsomething else\n", "line 2"},
      {head + "1,2\n", "line 4: expected layer,expert,count"},
      {head + "1,2,x\n", "line 4"},
      {head + "1,-2,3\n", "line 4"},
      {head + "1,2,-3\n", "line 4"},
      {head + "1,2,nan\n", "line 4"},
      {head + "1,2,3\n1,2,4\n", "line 5: layer 1 expert 2 is listed twice"},
  };
  for (const auto& [text, want] : cases) {
    WriteFileOrDie(path, text);
    const auto got = ReadUsageProfile(path);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_THAT(got.status().message(), HasSubstr(path)) << want;
    EXPECT_THAT(got.status().message(), HasSubstr(want));
  }
  WriteFileOrDie(path, head + "# a comment\n\n1,2,3\n");
  EXPECT_TRUE(ReadUsageProfile(path).ok());
}

// A failed write leaves the previous profile as it was. The temporary
// file's name is taken by a directory, which fails the write even as root.
TEST(UsageProfileTest, FailedWriteKeepsThePreviousProfile) {
  TempDir tmp;
  const std::string path = tmp.Join("profile.csv");
  ASSERT_TRUE(WriteUsageProfile(path, SampleProfile()).ok());
  const std::string before = ReadFileOrDie(path);
  std::filesystem::create_directory(path + ".tmp");
  UsageProfile other;
  other.model = "other";
  const absl::Status s = WriteUsageProfile(path, other);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_EQ(ReadFileOrDie(path), before);
}

TEST(UsageProfileTest, RecorderWritesPeriodicallyAndOnStop) {
  TempDir tmp;
  std::atomic<uint64_t> uses{1};
  UsageProfileRecorderOptions options;
  options.path = tmp.Join("profile.csv");
  options.model = "m";
  options.interval = absl::Milliseconds(20);
  options.previous = SampleProfile();
  auto recorder = UsageProfileRecorder::Create(options, [&uses] {
    return Counts{{{5, 0}, uses.load()}};
  });
  ASSERT_TRUE(recorder.ok()) << recorder.status();
  for (int i = 0; i < 500 && (*recorder)->writes() < 2; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE((*recorder)->writes(), 2);
  uses = 100;
  ASSERT_TRUE((*recorder)->Stop().ok());
  const auto got = ReadUsageProfile(options.path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->model, "m");
  EXPECT_DOUBLE_EQ(got->counts.at({5, 0}), 0.5 * 3 + 100);  // the final one.
  EXPECT_DOUBLE_EQ(got->counts.at({5, 17}), 0.5 * 120.5);
  const int64_t writes = (*recorder)->writes();
  EXPECT_TRUE((*recorder)->Stop().ok());  // a second Stop does nothing.
  EXPECT_EQ((*recorder)->writes(), writes);
}

TEST(UsageProfileTest, RecorderWithoutIntervalWritesOnlyOnStop) {
  TempDir tmp;
  UsageProfileRecorderOptions options;
  options.path = tmp.Join("profile.csv");
  options.interval = absl::ZeroDuration();
  auto recorder = UsageProfileRecorder::Create(options, [] {
    return Counts{{{1, 1}, 2}};
  });
  ASSERT_TRUE(recorder.ok());
  absl::SleepFor(absl::Milliseconds(30));
  EXPECT_FALSE(std::filesystem::exists(options.path));
  recorder->reset();  // the destructor stops, which writes.
  const auto got = ReadUsageProfile(options.path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_DOUBLE_EQ(got->counts.at({1, 1}), 2);
}

TEST(UsageProfileTest, RecorderRejectsBadOptions) {
  auto usage = [] { return Counts{}; };
  UsageProfileRecorderOptions options;
  EXPECT_EQ(UsageProfileRecorder::Create(options, usage).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.path = "/tmp/x";
  options.decay = 1.5;
  EXPECT_EQ(UsageProfileRecorder::Create(options, usage).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.decay = 0.5;
  options.interval = absl::Seconds(-1);
  EXPECT_EQ(UsageProfileRecorder::Create(options, usage).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edge
