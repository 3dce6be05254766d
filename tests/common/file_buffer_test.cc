#include "common/file_buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
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

std::string Contents(const FileBuffer& file) {
  return std::string(reinterpret_cast<const char*>(file.data()), file.size());
}

// A file of `size` bytes whose byte i is i mod 251 (a prime: no period
// lines up with a chunk boundary).
std::string Pattern(size_t size) {
  std::string bytes(size, '\0');
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i % 251);
  return bytes;
}

// An open descriptor of `path`, closed when the object dies.
class OpenFile {
 public:
  explicit OpenFile(const std::string& path)
      : fd_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    EXPECT_GE(fd_, 0) << path;
  }
  ~OpenFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  const int fd_;
};

TEST(FileBufferTest, ReadsTheWholeFileIntoAlignedMemory) {
  TempDir dir;
  const std::string path = dir.Join("weights.bin");
  const std::string bytes("\x00\x01\x02hello\xff", 9);
  WriteFileOrDie(path, bytes);

  absl::StatusOr<std::unique_ptr<FileBuffer>> file = FileBuffer::Read(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);
  EXPECT_EQ(Contents(**file), bytes);
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*file)->data()) % 64, 0u);
}

TEST(FileBufferTest, EmptyFileIsAnEmptyBuffer) {
  TempDir dir;
  const std::string path = dir.Join("empty");
  WriteFileOrDie(path, "");

  absl::StatusOr<std::unique_ptr<FileBuffer>> file = FileBuffer::Read(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->size(), 0u);
  EXPECT_EQ((*file)->data(), nullptr);
}

TEST(FileBufferTest, ExpectedSizeMismatchIsDataLossNamingBothSizes) {
  TempDir dir;
  const std::string path = dir.Join("expert.safetensors");
  WriteFileOrDie(path, "12345");

  EXPECT_TRUE(FileBuffer::Read(path, 5).ok());
  for (const uint64_t expected : {4u, 6u}) {
    absl::StatusOr<std::unique_ptr<FileBuffer>> file =
        FileBuffer::Read(path, expected);
    EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(file.status().message(),
                HasSubstr("size mismatch in " + path + ": expected " +
                          std::to_string(expected) + " bytes, the file has 5"));
  }
}

TEST(FileBufferTest, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  const std::string path = dir.Join("absent.safetensors");

  absl::StatusOr<std::unique_ptr<FileBuffer>> file = FileBuffer::Read(path);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr(path));
}

TEST(FileBufferTest, DirectoryIsAnErrorNamingThePath) {
  TempDir dir;

  absl::StatusOr<std::unique_ptr<FileBuffer>> file =
      FileBuffer::Read(dir.path());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(file.status().message(), HasSubstr(dir.path()));
  EXPECT_THAT(file.status().message(), HasSubstr("not a regular file"));
}

TEST(FileBufferTest, UnreadableFileIsAnErrorNamingThePath) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever the mode";
  TempDir dir;
  const std::string path = dir.Join("secret");
  WriteFileOrDie(path, "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);

  absl::StatusOr<std::unique_ptr<FileBuffer>> file = FileBuffer::Read(path);
  EXPECT_EQ(file.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(file.status().message(), HasSubstr(path));
}

// What a mapping could not promise: the buffer is a copy, so a file
// truncated, rewritten or unlinked afterwards leaves it as it was read.
TEST(FileBufferTest, BytesOutliveChangesToTheFile) {
  TempDir dir;
  const std::string path = dir.Join("weights.bin");
  const std::string bytes = Pattern(3 << 16);
  WriteFileOrDie(path, bytes);
  absl::StatusOr<std::unique_ptr<FileBuffer>> file = FileBuffer::Read(path);
  ASSERT_TRUE(file.ok()) << file.status();

  ASSERT_EQ(::truncate(path.c_str(), 0), 0);
  EXPECT_EQ(Contents(**file), bytes);  // a mapping would SIGBUS here.
  WriteFileOrDie(path, std::string(bytes.size(), 'x'));
  EXPECT_EQ(Contents(**file), bytes);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_EQ(Contents(**file), bytes);
}

// Interrupted and short reads are resumed where they stopped.
TEST(FileBufferTest, ResumesAfterEintrAndShortReads) {
  TempDir dir;
  const std::string path = dir.Join("weights.bin");
  const std::string bytes = Pattern(100000);
  WriteFileOrDie(path, bytes);
  OpenFile file(path);
  int calls = 0;
  // Every third call is interrupted; the others move at most 4097 bytes.
  auto flaky = [&calls](int fd, void* buffer, size_t count, off_t offset) {
    if (++calls % 3 == 0) {
      errno = EINTR;
      return ssize_t{-1};
    }
    return ::pread(fd, buffer, std::min<size_t>(count, 4097), offset);
  };

  absl::StatusOr<std::unique_ptr<FileBuffer>> read =
      FileBuffer::ReadFrom(file.fd(), path, bytes.size(), flaky);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(Contents(**read), bytes);
  EXPECT_GT(calls, 30);
}

TEST(FileBufferTest, ReadErrorKeepsItsErrnoAndNamesThePath) {
  TempDir dir;
  const std::string path = dir.Join("weights.bin");
  WriteFileOrDie(path, Pattern(10000));
  OpenFile file(path);
  auto failing = [](int, void*, size_t, off_t) {
    errno = EIO;
    return ssize_t{-1};
  };

  absl::StatusOr<std::unique_ptr<FileBuffer>> read =
      FileBuffer::ReadFrom(file.fd(), path, FileBuffer::kAnySize, failing);
  EXPECT_EQ(read.status().code(), absl::ErrnoToStatusCode(EIO));
  EXPECT_THAT(read.status().message(), HasSubstr("cannot read " + path));
}

// The race a mapping turns into SIGBUS: the file is truncated after it
// was opened and measured, before (and while) it is read. The read stops
// at the new end of file and is refused, never returned short.
TEST(FileBufferTest, TruncatedBetweenOpenAndReadIsDataLoss) {
  TempDir dir;
  const std::string path = dir.Join("expert.safetensors");
  const std::string bytes = Pattern(1 << 20);
  WriteFileOrDie(path, bytes);
  OpenFile file(path);
  bool truncated = false;
  auto truncate_first = [&](int fd, void* buffer, size_t count, off_t offset) {
    if (!truncated) {
      truncated = true;
      EXPECT_EQ(::truncate(path.c_str(), bytes.size() / 2), 0);
    }
    return ::pread(fd, buffer, count, offset);
  };

  absl::StatusOr<std::unique_ptr<FileBuffer>> read =
      FileBuffer::ReadFrom(file.fd(), path, bytes.size(), truncate_first);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(
      read.status().message(),
      HasSubstr(path + " ended after " + std::to_string(bytes.size() / 2) +
                " of " + std::to_string(bytes.size()) +
                " bytes: truncated while read"));
}

// Truncated between open and the size check: the size at fstat is wrong.
TEST(FileBufferTest, TruncatedAfterOpenIsASizeMismatch) {
  TempDir dir;
  const std::string path = dir.Join("expert.safetensors");
  WriteFileOrDie(path, Pattern(4096));
  OpenFile file(path);
  ASSERT_EQ(::truncate(path.c_str(), 100), 0);

  absl::StatusOr<std::unique_ptr<FileBuffer>> read =
      FileBuffer::ReadFrom(file.fd(), path, 4096, ::pread);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(), HasSubstr("the file has 100"));
}

TEST(FileBufferTest, GrownWhileReadIsDataLoss) {
  TempDir dir;
  const std::string path = dir.Join("manifest.json");
  WriteFileOrDie(path, "{}");
  OpenFile file(path);
  bool appended = false;
  auto append_first = [&](int fd, void* buffer, size_t count, off_t offset) {
    if (!appended) {
      appended = true;
      const int out = ::open(path.c_str(), O_WRONLY | O_APPEND);
      EXPECT_EQ(::write(out, " ", 1), 1);
      ::close(out);
    }
    return ::pread(fd, buffer, count, offset);
  };

  absl::StatusOr<std::unique_ptr<FileBuffer>> read =
      FileBuffer::ReadFrom(file.fd(), path, FileBuffer::kAnySize, append_first);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(read.status().message(),
              HasSubstr(path + " grew past 2 bytes while read"));
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
TEST(FileBufferTest, ReadAheadReadsTheWholeFile) {
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
  FileBuffer::ReadAhead(path);
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
