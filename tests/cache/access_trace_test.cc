#include "cache/access_trace.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using ::testing::HasSubstr;

TEST(AccessTraceTest, WrittenAccessesReadBackEqual) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/trace.csv";
  const std::vector<ExpertAccess> written = {{0, 0, {5, 17}, 8392704},
                                             {12, 0, {5, 3}, 8392704},
                                             {250, 1, {7, 31}, 8392704}};
  ASSERT_TRUE(WriteAccessTrace(path, written).ok());
  absl::StatusOr<std::vector<ExpertAccess>> read = ReadAccessTrace(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    EXPECT_EQ((*read)[i].time_us, written[i].time_us);
    EXPECT_EQ((*read)[i].pass, written[i].pass);
    EXPECT_EQ((*read)[i].key, written[i].key);
    EXPECT_EQ((*read)[i].bytes, written[i].bytes);
  }
}

TEST(AccessTraceTest, MalformedLineIsInvalidArgumentNamingTheLine) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/bad.csv";
  test_support::WriteFileOrDie(path,
                               "# edge expert access trace v1\n"
                               "time_us,pass,layer,expert,bytes\n"
                               "0,0,5,1,100\n"
                               "1,0,5,x,100\n");
  const absl::Status status = ReadAccessTrace(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("line 4"));
}

TEST(AccessTraceTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadAccessTrace("/nonexistent/trace.csv").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(AccessTraceTest, ConcurrentAppendsAreAllRecordedWholeLines) {
  test_support::TempDir dir;
  const std::string path = dir.path() + "/concurrent.csv";
  auto writer = AccessTraceWriter::Create(path);
  ASSERT_TRUE(writer.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        (*writer)->Append({i, t, {t, i % 32}, 1000});
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE((*writer)->Flush().ok());
  EXPECT_EQ((*writer)->appended(), 4000);
  absl::StatusOr<std::vector<ExpertAccess>> read = ReadAccessTrace(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), 4000u);
}

}  // namespace
}  // namespace edge
