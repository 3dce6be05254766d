// Reading the client's inputs from disk: whole files as bytes (the gateway
// decodes JPEG/PNG itself, so the client never looks inside) and the image
// files of a directory. Stateless and thread-safe.
#ifndef EDGE_CLIENT_IMAGE_FILES_H_
#define EDGE_CLIENT_IMAGE_FILES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace edge::client {

// The file's bytes. NOT_FOUND if it does not exist, INVALID_ARGUMENT if it is
// not a regular file, the errno's code (e.g. PERMISSION_DENIED) otherwise.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// Paths of `dir`'s regular files named *.jpg, *.jpeg or *.png (any case),
// sorted by name; subdirectories are not searched. NOT_FOUND if `dir` does
// not exist, INVALID_ARGUMENT if it is not a directory or has no images.
absl::StatusOr<std::vector<std::string>> ListImageFiles(const std::string& dir);

}  // namespace edge::client

#endif  // EDGE_CLIENT_IMAGE_FILES_H_
