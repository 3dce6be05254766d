// Reading and writing NumPy .npy files (format version 1.0 and 2.0,
// little-endian float32, C order): the exchange format of engine_run and the
// parity tests. Thread-safe; no state.
#ifndef EDGE_COMMON_NPY_H_
#define EDGE_COMMON_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace edge {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // product(shape) values, C order.
};

// INVALID_ARGUMENT (naming the file and the problem) for anything but a
// little-endian float32 C-order array; NOT_FOUND if the file is missing.
absl::StatusOr<NpyArray> ReadNpyFloat32(const std::string& path);

// REQUIRES: product(array.shape) == array.data.size().
absl::Status WriteNpyFloat32(const std::string& path, const NpyArray& array);

}  // namespace edge

#endif  // EDGE_COMMON_NPY_H_
