#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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
void WillNeed(int fd, size_t size) {
  constexpr off_t kWindow = 128 << 10;
  for (off_t offset = 0; offset < static_cast<off_t>(size); offset += kWindow) {
    (void)::posix_fadvise(fd, offset, kWindow, POSIX_FADV_WILLNEED);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<MappedFile>> MappedFile::Open(
    const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PathError(path, "cannot open", errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int error_number = errno;
    ::close(fd);
    return PathError(path, "cannot stat", error_number);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot map ", path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  // mmap rejects a zero length, and an empty file has nothing to map.
  void* data = nullptr;
  if (size > 0) {
    // MAP_PRIVATE: the gateway never writes weights, and a private mapping
    // keeps a stray write from reaching the file. The mapping keeps its own
    // reference to the file, so the descriptor can be closed at once.
    data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  const int mmap_errno = errno;
  // Weights are read in full: have the kernel read the whole file now
  // rather than fault it in one readahead window at a time.
  if (data != MAP_FAILED) WillNeed(fd, size);
  ::close(fd);
  if (data == MAP_FAILED) return PathError(path, "cannot mmap", mmap_errno);
  return std::unique_ptr<MappedFile>(
      new MappedFile(path, static_cast<const uint8_t*>(data), size));
}

void MappedFile::ReadAhead(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (::fstat(fd, &st) == 0) WillNeed(fd, static_cast<size_t>(st.st_size));
  ::close(fd);
}

MappedFile::MappedFile(std::string path, const uint8_t* data, size_t size)
    : path_(std::move(path)), data_(data), size_(size) {}

MappedFile::~MappedFile() {
  if (data_ != nullptr) {
    ::munmap(const_cast<uint8_t*>(data_), size_);
  }
}

}  // namespace edge
