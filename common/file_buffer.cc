#include "common/file_buffer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace edge {
namespace {

// `what` failed on `path` with `error_number`; the code follows errno
// (ENOENT -> NOT_FOUND, EACCES -> PERMISSION_DENIED, ...).
absl::Status PathError(const std::string& path, const char* what,
                       int error_number) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(what, " ", path));
}

// Asks the kernel to read the first `size` bytes of `fd` into the page
// cache in the background. One posix_fadvise(WILLNEED) reads at most the
// device's readahead window (the larger of read_ahead_kb and
// max_sectors_kb: 128 KiB on SD cards and FUSE, 8 MiB on this VM's disk),
// so a whole 8.4 MB expert needs a call per window; 128 KiB, the kernel's
// default window, serves every device. Each call only queues reads.
void WillNeed(int fd, uint64_t size) {
  constexpr off_t kWindow = 128 << 10;
  for (off_t offset = 0; offset < static_cast<off_t>(size); offset += kWindow) {
    (void)::posix_fadvise(fd, offset, kWindow, POSIX_FADV_WILLNEED);
  }
}

// Reads `size` bytes at offset 0 into `buffer`, resuming after short reads
// and EINTR. Returns the bytes read: fewer than `size` only at end of file.
absl::StatusOr<size_t> ReadUpTo(int fd, uint8_t* buffer, size_t size,
                                const std::string& path,
                                const FileBuffer::PreadFunction& pread) {
  size_t done = 0;
  while (done < size) {
    // Linux moves at most 0x7ffff000 bytes per call; asking for no more
    // keeps a short count meaning only "go on".
    const size_t chunk = std::min<size_t>(size - done, 0x7ffff000);
    const ssize_t n = pread(fd, buffer + done, chunk, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(path, "cannot read", errno);
    }
    if (n == 0) break;  // end of file
    done += static_cast<size_t>(n);
  }
  return done;
}

// True if `fd` has a byte at `offset` (the file grew past it). A failing
// probe is not growth: the bytes before it were all read.
bool HasByteAt(int fd, uint64_t offset,
               const FileBuffer::PreadFunction& pread) {
  uint8_t byte;
  ssize_t n;
  do {
    n = pread(fd, &byte, 1, static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileBuffer>> FileBuffer::Read(
    const std::string& path, uint64_t expected_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PathError(path, "cannot open", errno);
  absl::StatusOr<std::unique_ptr<FileBuffer>> buffer =
      ReadFrom(fd, path, expected_bytes, ::pread);
  ::close(fd);
  return buffer;
}

absl::StatusOr<std::unique_ptr<FileBuffer>> FileBuffer::ReadFrom(
    int fd, const std::string& path, uint64_t expected_bytes,
    const PreadFunction& pread) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return PathError(path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (expected_bytes != kAnySize && size != expected_bytes) {
    return absl::DataLossError(absl::StrCat("size mismatch in ", path,
                                            ": expected ", expected_bytes,
                                            " bytes, the file has ", size));
  }
  if (size > std::numeric_limits<size_t>::max() - kAlignment) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot read ", path, ": ", size, " bytes"));
  }
  // Owns the memory from here on, so that every return below frees it.
  std::unique_ptr<FileBuffer> buffer(new FileBuffer(path));
  if (size > 0) {
    // aligned_alloc wants a multiple of the alignment.
    const size_t rounded = (size + kAlignment - 1) / kAlignment * kAlignment;
    buffer->data_ =
        static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded));
    if (buffer->data_ == nullptr) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "cannot read ", path, ": no memory for ", size, " bytes"));
    }
    buffer->size_ = static_cast<size_t>(size);
  }
  // Queue every readahead window at once, so that slow storage reads them
  // in parallel while the copy below waits for the first.
  WillNeed(fd, size);
  absl::StatusOr<size_t> read =
      ReadUpTo(fd, buffer->data_, buffer->size_, path, pread);
  if (!read.ok()) return read.status();
  if (*read < size) {
    return absl::DataLossError(absl::StrCat(path, " ended after ", *read,
                                            " of ", size,
                                            " bytes: truncated while read"));
  }
  if (HasByteAt(fd, size, pread)) {
    return absl::DataLossError(
        absl::StrCat(path, " grew past ", size, " bytes while read"));
  }
  return buffer;
}

void FileBuffer::ReadAhead(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (::fstat(fd, &st) == 0) WillNeed(fd, static_cast<uint64_t>(st.st_size));
  ::close(fd);
}

FileBuffer::~FileBuffer() { std::free(data_); }

}  // namespace edge
