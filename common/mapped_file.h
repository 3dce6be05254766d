// MappedFile: a read-only memory mapping of one whole file.
//
// Model weights are used in place from the mapping (tensors are 64-byte
// aligned in the file), so loading a file costs no copy. Thread-safe: the
// object is immutable after Open().
#ifndef EDGE_COMMON_MAPPED_FILE_H_
#define EDGE_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace edge {

class MappedFile {
 public:
  // Maps `path` read-only. NOT_FOUND if it does not exist, other codes for
  // I/O errors; the message always names the path. An empty file maps to
  // size() == 0 and data() == nullptr.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(
      const std::string& path);
  // Asks the kernel to start reading all of `path` into the page cache in
  // the background (posix_fadvise WILLNEED, one call per readahead window)
  // and returns once the reads are queued. Best effort: errors are
  // ignored, a later Open() reports them.
  static void ReadAhead(const std::string& path);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size);

  const std::string path_;
  const uint8_t* const data_;
  const size_t size_;
};

}  // namespace edge

#endif  // EDGE_COMMON_MAPPED_FILE_H_
