// The image files edge-client streams and edge-loadtest sends from
// --frames_dir: the filter (*.jpg, *.jpeg, *.png in any case, regular files
// only, no subdirectories), the order, and the errors.
#include "client/image_files.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge::client {
namespace {

using test_support::TempDir;
using test_support::WriteFileOrDie;

TEST(ListImageFilesTest, ListsImageFilesOnlySortedByName) {
  TempDir dir;
  for (const char* name : {"b.png", "a.JPG", "c.jpeg", "d.Jpeg", "notes.txt",
                           "jpg", "e.jpg.txt", "sub/f.jpg"}) {
    WriteFileOrDie(dir.Join(name), "x");
  }
  std::filesystem::create_directory(dir.Join("g.png"));  // Not a file.
  absl::StatusOr<std::vector<std::string>> paths = ListImageFiles(dir.path());
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_EQ(*paths,
            (std::vector<std::string>{dir.Join("a.JPG"), dir.Join("b.png"),
                                      dir.Join("c.jpeg"), dir.Join("d.Jpeg")}));
}

TEST(ListImageFilesTest, RefusesMissingNonDirectoryAndImagelessPaths) {
  TempDir dir;
  EXPECT_EQ(ListImageFiles(dir.Join("missing")).status().code(),
            absl::StatusCode::kNotFound);
  WriteFileOrDie(dir.Join("a.jpg"), "x");
  EXPECT_EQ(ListImageFiles(dir.Join("a.jpg")).status().code(),
            absl::StatusCode::kInvalidArgument);
  TempDir empty;
  WriteFileOrDie(empty.Join("a.txt"), "x");
  EXPECT_EQ(ListImageFiles(empty.path()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadFileBytesTest, ReadsFilesAndRefusesTheRest) {
  TempDir dir;
  WriteFileOrDie(dir.Join("a.jpg"), std::string("\xff\xd8\0z", 4));
  absl::StatusOr<std::string> bytes = ReadFileBytes(dir.Join("a.jpg"));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, std::string("\xff\xd8\0z", 4));
  EXPECT_EQ(ReadFileBytes(dir.Join("missing")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadFileBytes(dir.path()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace edge::client
