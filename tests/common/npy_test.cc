#include "common/npy.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using ::edge::test_support::ReadFileOrDie;
using ::edge::test_support::TempDir;
using ::edge::test_support::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A .npy file as NumPy lays it out: magic, version, header length (2 bytes
// in 1.0, 4 in 2.0), the dict padded with spaces to `alignment`, '\n', data.
std::string NpyBytes(int major, const std::string& dict,
                     const std::string& data, size_t alignment = 64) {
  const size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % alignment != 0) header += ' ';
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < prefix - 8; ++i) {
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  }
  return out + header + data;
}

std::string FloatBytes(const std::vector<float>& values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

TEST(NpyTest, RoundTripsShapes) {
  TempDir dir;
  const std::vector<NpyArray> arrays = {
      {{2, 3}, {1, -2, 3.5f, 0, 1e-30f, -1e30f}},
      {{5}, {1, 2, 3, 4, 5}},
      {{}, {42}},
      {{0, 4}, {}},
      {{1, 1, 2, 1}, {7, 8}},
  };
  for (const NpyArray& array : arrays) {
    const std::string path = dir.Join("a.npy");
    ASSERT_TRUE(WriteNpyFloat32(path, array).ok());
    absl::StatusOr<NpyArray> read = ReadNpyFloat32(path);
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(read->shape, array.shape);
    EXPECT_EQ(read->data, array.data);
  }
}

TEST(NpyTest, WritesTheHeaderNumpyWrites) {
  TempDir dir;
  const std::string path = dir.Join("a.npy");
  ASSERT_TRUE(WriteNpyFloat32(path, {{2}, {1.0f, 2.0f}}).ok());

  // np.save("a.npy", np.array([1, 2], np.float32)) writes these bytes.
  const std::string expected =
      NpyBytes(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
               FloatBytes({1.0f, 2.0f}));
  EXPECT_EQ(ReadFileOrDie(path), expected);
  EXPECT_EQ(expected.substr(8, 2), std::string("v\0", 2));  // 118 bytes
}

TEST(NpyTest, WritesVersion2WhenTheHeaderNeedsIt) {
  TempDir dir;
  const std::string path = dir.Join("a.npy");
  // 30000 dimensions of 1 make a header longer than 1.0's 65535 bytes.
  NpyArray array{std::vector<int64_t>(30000, 1), {3.0f}};
  ASSERT_TRUE(WriteNpyFloat32(path, array).ok());

  EXPECT_EQ(ReadFileOrDie(path)[6], '\x02');
  absl::StatusOr<NpyArray> read = ReadNpyFloat32(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->shape.size(), 30000u);
  EXPECT_THAT(read->data, ElementsAre(3.0f));
}

TEST(NpyTest, ReadsVersion2AndOldSixteenByteAlignment) {
  TempDir dir;
  const std::string v2 = dir.Join("v2.npy");
  WriteFileOrDie(v2, NpyBytes(2,
                              "{'descr': '<f4', 'fortran_order': False, "
                              "'shape': (1, 2), }",
                              FloatBytes({5, 6})));
  // NumPy before 1.14 aligned to 16 bytes and wrote no trailing comma.
  const std::string old = dir.Join("old.npy");
  WriteFileOrDie(old, NpyBytes(1,
                               "{'descr': '<f4', 'fortran_order': False, "
                               "'shape': (2,)}",
                               FloatBytes({5, 6}), 16));

  for (const std::string& path : {v2, old}) {
    absl::StatusOr<NpyArray> read = ReadNpyFloat32(path);
    ASSERT_TRUE(read.ok()) << path << ": " << read.status();
    EXPECT_THAT(read->data, ElementsAre(5.0f, 6.0f));
  }
}

struct BadFile {
  const char* name;
  std::string bytes;
  const char* error;
};

std::string Dict(const std::string& descr, const std::string& order,
                 const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': " + order +
         ", 'shape': " + shape + ", }";
}

TEST(NpyTest, RejectsWhatItCannotReadNamingFileAndReason) {
  const std::string two = FloatBytes({1, 2});
  std::string v3 = NpyBytes(1, Dict("<f4", "False", "(2,)"), two);
  v3[6] = '\x03';
  const std::string good = NpyBytes(1, Dict("<f4", "False", "(2,)"), two);
  const std::vector<BadFile> cases = {
      {"float64", NpyBytes(1, Dict("<f8", "False", "(2,)"), two + two),
       "dtype '<f8' is not little-endian float32"},
      {"big_endian", NpyBytes(1, Dict(">f4", "False", "(2,)"), two),
       "dtype '>f4'"},
      {"fortran", NpyBytes(1, Dict("<f4", "True", "(2,)"), two),
       "Fortran-order"},
      {"bad_magic", "\x93NUMPX" + good.substr(6), "bad magic"},
      {"empty", "", "bad magic"},
      {"version_3", v3, "format version 3.0"},
      {"truncated_data", NpyBytes(1, Dict("<f4", "False", "(4,)"), two),
       "truncated data: shape needs 16 bytes, file has 8"},
      {"trailing_data", NpyBytes(1, Dict("<f4", "False", "(1,)"), two),
       "trailing bytes after data"},
      {"truncated_header", good.substr(0, 40), "truncated header"},
      {"missing_key", NpyBytes(1, "{'descr': '<f4', 'shape': (2,), }", two),
       "header lacks"},
      {"unknown_key",
       NpyBytes(1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
                "'foo': 1}",
                two),
       "unexpected header key 'foo'"},
      {"bad_shape", NpyBytes(1, Dict("<f4", "False", "(2, x)"), two),
       "malformed value of header key 'shape'"},
  };
  TempDir dir;
  for (const BadFile& bad : cases) {
    const std::string path = dir.Join(std::string(bad.name) + ".npy");
    WriteFileOrDie(path, bad.bytes);
    absl::StatusOr<NpyArray> read = ReadNpyFloat32(path);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument)
        << bad.name;
    EXPECT_THAT(read.status().message(), HasSubstr(path)) << bad.name;
    EXPECT_THAT(read.status().message(), HasSubstr(bad.error)) << bad.name;
  }
}

TEST(NpyTest, MissingFileIsNotFound) {
  TempDir dir;
  const std::string path = dir.Join("absent.npy");
  absl::StatusOr<NpyArray> read = ReadNpyFloat32(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr(path));
}

TEST(NpyTest, WriteRejectsDataThatDoesNotFillTheShape) {
  TempDir dir;
  const std::string path = dir.Join("a.npy");
  absl::Status status = WriteNpyFloat32(path, {{2, 2}, {1, 2, 3}});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path));
  EXPECT_THAT(status.message(), HasSubstr("holds 4 values, data has 3"));
}

TEST(NpyTest, WriteErrorNamesThePath) {
  TempDir dir;
  const std::string path = dir.Join("no/such/dir/a.npy");
  absl::Status status = WriteNpyFloat32(path, {{1}, {1}});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(path));
}

}  // namespace
}  // namespace edge
