// TempDir: a fresh directory under the test's temporary directory, removed
// with everything in it when the object dies; plus whole-file helpers.
// Header-only, for tests.
#ifndef EDGE_TESTS_TESTING_TEMP_DIR_H_
#define EDGE_TESTS_TESTING_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>

#include "gtest/gtest.h"

namespace edge {
namespace test_support {

class TempDir {
 public:
  TempDir() {
    std::string root = ::testing::TempDir();
    if (root.empty() || root.back() != '/') root += '/';
    std::string pattern = root + "edge_test_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp " << pattern << " failed";
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Join(std::string_view relative) const {
    return path_ + "/" + std::string(relative);
  }

 private:
  std::string path_;
};

// Replaces the file's contents with `bytes`, creating parent directories.
inline void WriteFileOrDie(const std::string& path, std::string_view bytes) {
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

}  // namespace test_support
}  // namespace edge

#endif  // EDGE_TESTS_TESTING_TEMP_DIR_H_
