// SHA-256 of a byte range (OpenSSL's libcrypto, which uses the CPU's SHA
// extensions where present). Thread-safe; no state.
#ifndef EDGE_COMMON_SHA256_H_
#define EDGE_COMMON_SHA256_H_

#include <cstddef>
#include <string>

namespace edge {

// Lowercase hex digest (64 characters) of `size` bytes at `data`.
std::string Sha256Hex(const void* data, size_t size);

}  // namespace edge

#endif  // EDGE_COMMON_SHA256_H_
