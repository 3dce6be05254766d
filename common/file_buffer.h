// FileBuffer: one whole file read into memory the process owns, 64-byte
// aligned.
//
// Weight files are read, not mapped. A mapping stays tied to the file: if
// the file is truncated while mapped, touching a vanished page kills the
// process with SIGBUS, and if it is rewritten in place, the bytes that were
// hashed are not the bytes that are later used. A FileBuffer's bytes are a
// copy taken once: what a caller checks is what it uses, and nothing done to
// the file afterwards reaches them. A file replaced by rename is simply
// read anew by the next Read(). Tensors sit at 64-byte aligned offsets in
// weight files (docs/model-format.md), so they are aligned in the buffer
// too, as oneDNN wants them.
//
// Read() sees the file change under it: a file that ends before the size
// it had (or was expected to have) is DATA_LOSS, never a short buffer, and
// so is one that grew while being read.
//
// Thread-safe: immutable after Read().
#ifndef EDGE_COMMON_FILE_BUFFER_H_
#define EDGE_COMMON_FILE_BUFFER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"

namespace edge {

class FileBuffer {
 public:
  // One cache line and one AVX-512 vector; the tensor alignment of weight
  // files.
  static constexpr size_t kAlignment = 64;
  // Read()'s `expected_bytes` when any size will do.
  static constexpr uint64_t kAnySize = std::numeric_limits<uint64_t>::max();
  // pread(2)'s signature, for ReadFrom().
  using PreadFunction =
      std::function<ssize_t(int fd, void* buffer, size_t count, off_t offset)>;

  // Reads all of `path`. With `expected_bytes`, a file of another size is
  // DATA_LOSS ("size mismatch in <path>: expected N bytes, the file has
  // M") before anything is read or allocated. Errors name the path:
  // NOT_FOUND if it does not exist, DATA_LOSS if it shrinks or grows while
  // being read, FAILED_PRECONDITION if it is not a regular file,
  // RESOURCE_EXHAUSTED if there is no memory for it, the errno's code for
  // other I/O errors. DATA_LOSS means "the file's size is wrong" and
  // nothing else.
  static absl::StatusOr<std::unique_ptr<FileBuffer>> Read(
      const std::string& path, uint64_t expected_bytes = kAnySize);
  // Read() from a descriptor the caller opened (and closes), with `pread`
  // standing in for pread(2): tests inject interrupted, short and failing
  // reads, and files that change between open and read.
  static absl::StatusOr<std::unique_ptr<FileBuffer>> ReadFrom(
      int fd, const std::string& path, uint64_t expected_bytes,
      const PreadFunction& pread);

  // Asks the kernel to start reading all of `path` into the page cache in
  // the background (posix_fadvise WILLNEED, one call per readahead window)
  // and returns once the reads are queued, so that a Read() soon after
  // finds the pages there. Best effort: errors are ignored, Read() reports
  // them.
  static void ReadAhead(const std::string& path);

  FileBuffer(const FileBuffer&) = delete;
  FileBuffer& operator=(const FileBuffer&) = delete;

  ~FileBuffer();

  // kAlignment-aligned; nullptr for an empty file.
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  explicit FileBuffer(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  // Set once by ReadFrom(), before the buffer is returned.
  uint8_t* data_ = nullptr;  // from aligned_alloc; owned.
  size_t size_ = 0;
};

}  // namespace edge

#endif  // EDGE_COMMON_FILE_BUFFER_H_
