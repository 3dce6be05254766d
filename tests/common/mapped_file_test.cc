#include "common/mapped_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using ::edge::test_support::TempDir;
using ::edge::test_support::WriteFileOrDie;
using ::testing::HasSubstr;

TEST(MappedFileTest, MapsTheWholeFile) {
  TempDir dir;
  const std::string path = dir.Join("weights.bin");
  const std::string bytes("\x00\x01\x02hello\xff", 9);
  WriteFileOrDie(path, bytes);

  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  ASSERT_EQ((*file)->size(), bytes.size());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*file)->data()),
                        (*file)->size()),
            bytes);
}

TEST(MappedFileTest, EmptyFileMapsToNothing) {
  TempDir dir;
  const std::string path = dir.Join("empty");
  WriteFileOrDie(path, "");

  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->size(), 0u);
  EXPECT_EQ((*file)->data(), nullptr);
}

TEST(MappedFileTest, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  const std::string path = dir.Join("absent.safetensors");

  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr(path));
}

TEST(MappedFileTest, DirectoryIsAnErrorNamingThePath) {
  TempDir dir;

  absl::StatusOr<std::unique_ptr<MappedFile>> file =
      MappedFile::Open(dir.path());
  EXPECT_FALSE(file.ok());
  EXPECT_THAT(file.status().message(), HasSubstr(dir.path()));
  EXPECT_THAT(file.status().message(), HasSubstr("not a regular file"));
}

TEST(MappedFileTest, UnreadableFileIsAnErrorNamingThePath) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever the mode";
  TempDir dir;
  const std::string path = dir.Join("secret");
  WriteFileOrDie(path, "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);

  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(file.status().message(), HasSubstr(path));
}

TEST(MappedFileTest, MappingOutlivesTheDirectoryEntry) {
  TempDir dir;
  const std::string path = dir.Join("weights.bin");
  WriteFileOrDie(path, "abcd");
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();

  // An expert being replaced on disk must not pull pages from under a
  // reader: the mapping holds the old inode.
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_EQ((*file)->data()[3], 'd');
}

}  // namespace
}  // namespace edge
