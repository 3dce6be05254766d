#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

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

// Pages of `path` in the page cache, as a fraction of its pages.
double ResidentFraction(const std::string& path, size_t size) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> resident((size + page - 1) / page);
  ::mincore(map, size, resident.data());
  ::munmap(map, size);
  size_t in = 0;
  for (unsigned char r : resident) in += r & 1;
  return static_cast<double>(in) / resident.size();
}

// ReadAhead brings in the whole file, not one readahead window: 24 MiB is
// beyond the window of every device this runs on (8 MiB on the VM's disk).
TEST(MappedFileTest, ReadAheadReadsTheWholeFile) {
  TempDir dir;
  const std::string path = dir.Join("expert.bin");
  const size_t size = 24 << 20;
  WriteFileOrDie(path, std::string(size, '\x5a'));
  const int fd = ::open(path.c_str(), O_RDONLY);
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  if (ResidentFraction(path, size) > 0.5) {
    GTEST_SKIP() << "this file system keeps the pages (tmpfs?)";
  }
  MappedFile::ReadAhead(path);
  // The reads were only queued: wait for them, 10 s at most.
  double fraction = 0;
  for (int i = 0; i < 200 && fraction < 1.0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    fraction = ResidentFraction(path, size);
  }
  EXPECT_EQ(fraction, 1.0);
}

}  // namespace
}  // namespace edge
