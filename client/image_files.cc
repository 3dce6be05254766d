#include "client/image_files.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace edge::client {
namespace {

namespace fs = std::filesystem;

bool HasImageExtension(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

}  // namespace

absl::StatusOr<std::string> ReadFileBytes(const std::string& path) {
  std::error_code error;
  const fs::file_type type = fs::status(path, error).type();
  if (type == fs::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  // Checked first because opening a directory succeeds on Linux.
  if (!error && type != fs::file_type::regular) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  }
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot read"));
  }
  return bytes;
}

absl::StatusOr<std::vector<std::string>> ListImageFiles(
    const std::string& dir) {
  std::error_code error;
  const fs::file_status status = fs::status(dir, error);
  if (status.type() == fs::file_type::not_found) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such directory"));
  }
  if (status.type() != fs::file_type::directory) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": not a directory"));
  }
  std::vector<std::string> paths;
  for (fs::directory_iterator it(dir, error), end; !error && it != end;
       it.increment(error)) {
    if (it->is_regular_file() && HasImageExtension(it->path())) {
      paths.push_back(it->path().string());
    }
  }
  if (error) {
    return absl::UnknownError(
        absl::StrCat(dir, ": cannot list: ", error.message()));
  }
  if (paths.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": no .jpg, .jpeg or .png files"));
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace edge::client
