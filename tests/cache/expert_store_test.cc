#include "cache/expert_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_model.h"

namespace edge {
namespace {

using ::edge::test_support::MakeTestManifest;
using ::edge::test_support::ReadFileOrDie;
using ::edge::test_support::TempDir;
using ::edge::test_support::TestExpertFile;
using ::edge::test_support::TestModelSpec;
using ::edge::test_support::TestTensorByte;
using ::edge::test_support::WriteFileOrDie;
using ::edge::test_support::WriteTestModel;
using ::testing::HasSubstr;

class ExpertStoreTest : public ::testing::Test {
 protected:
  void WriteModel(const TestModelSpec& spec = {}) {
    ASSERT_TRUE(WriteTestModel(dir_.path(), MakeTestManifest(spec)).ok());
    absl::StatusOr<ModelManifest> manifest = ModelManifest::Load(dir_.path());
    ASSERT_TRUE(manifest.ok()) << manifest.status();
    manifest_ = std::make_unique<ModelManifest>(*std::move(manifest));
    absl::StatusOr<std::unique_ptr<ExpertStore>> store =
        ExpertStore::Create(manifest_.get());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  std::string ExpertPath(int layer, int expert) const {
    return dir_.Join(TestExpertFile(layer, expert));
  }

  // Flips one byte in the middle of the expert's file, keeping its size.
  void CorruptExpert(int layer, int expert) {
    std::string bytes = ReadFileOrDie(ExpertPath(layer, expert));
    bytes[bytes.size() / 2] ^= 0x01;
    WriteFileOrDie(ExpertPath(layer, expert), bytes);
  }

  TempDir dir_;
  std::unique_ptr<ModelManifest> manifest_;
  std::unique_ptr<ExpertStore> store_;
};

// The view is 64-byte aligned, has the manifest's layout and shows the
// bytes the test model wrote for `name`.
void ExpectView(const TensorView& view, const std::string& name, DType dtype,
                const std::vector<int64_t>& shape) {
  SCOPED_TRACE(name);
  ASSERT_NE(view.data, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(view.data) % 64, 0u);
  EXPECT_EQ(view.dtype, dtype);
  EXPECT_EQ(view.shape, shape);
  uint64_t size = DTypeSize(dtype);
  for (const int64_t dim : shape) size *= dim;
  ASSERT_EQ(view.size_bytes, size);
  const uint8_t* bytes = static_cast<const uint8_t*>(view.data);
  for (uint64_t i = 0; i < size; ++i) {
    ASSERT_EQ(bytes[i], TestTensorByte(name, i)) << "byte " << i;
  }
}

TEST_F(ExpertStoreTest, LoadsEveryExpertAsViewsIntoItsFilesBytes) {
  WriteModel();
  for (int e = 0; e < 4; ++e) {
    absl::StatusOr<RawExpert> expert = store_->Load({1, e});
    ASSERT_TRUE(expert.ok()) << expert.status();
    EXPECT_EQ(expert->key, (ExpertKey{1, e}));
    EXPECT_EQ(expert->file->path(), ExpertPath(1, e));
    const std::string p = ExpertTensorPrefix(1, e);
    ExpectView(expert->fc1_weight, p + "fc1.weight", DType::kF32, {16, 8});
    ExpectView(expert->fc1_bias, p + "fc1.bias", DType::kF32, {16});
    ExpectView(expert->fc2_weight, p + "fc2.weight", DType::kF32, {8, 16});
    ExpectView(expert->fc2_bias, p + "fc2.bias", DType::kF32, {8});
    EXPECT_EQ(expert->fc1_weight_scale.data, nullptr);
    EXPECT_EQ(expert->fc2_weight_scale.data, nullptr);
  }
}

TEST_F(ExpertStoreTest, Int8ExpertsCarryTheirScales) {
  TestModelSpec spec;
  spec.precision = "int8";
  WriteModel(spec);
  absl::StatusOr<RawExpert> expert = store_->Load({1, 3});
  ASSERT_TRUE(expert.ok()) << expert.status();
  const std::string p = ExpertTensorPrefix(1, 3);
  ExpectView(expert->fc1_weight, p + "fc1.weight", DType::kI8, {16, 8});
  ExpectView(expert->fc2_weight, p + "fc2.weight", DType::kI8, {8, 16});
  ExpectView(expert->fc1_weight_scale, p + "fc1.weight_scale", DType::kF32,
             {16});
  ExpectView(expert->fc2_weight_scale, p + "fc2.weight_scale", DType::kF32,
             {8});
}

TEST_F(ExpertStoreTest, Bf16ExpertWeights) {
  TestModelSpec spec;
  spec.precision = "bf16";
  WriteModel(spec);
  absl::StatusOr<RawExpert> expert = store_->Load({1, 0});
  ASSERT_TRUE(expert.ok()) << expert.status();
  const std::string p = ExpertTensorPrefix(1, 0);
  ExpectView(expert->fc1_weight, p + "fc1.weight", DType::kBF16, {16, 8});
  ExpectView(expert->fc1_bias, p + "fc1.bias", DType::kF32, {16});
}

TEST_F(ExpertStoreTest, CountsAndFileSizes) {
  TestModelSpec spec;
  spec.depth = 3;
  spec.moe_layers = {0, 2};
  WriteModel(spec);
  EXPECT_EQ(store_->num_experts_total(), 8);
  EXPECT_EQ(store_->FileBytes({2, 3}),
            manifest_->FindFile(TestExpertFile(2, 3))->size_bytes);
  EXPECT_GT(store_->FileBytes({2, 3}), 0u);
  EXPECT_EQ(store_->FileBytes({1, 0}), 0u);  // block 1 is dense
  EXPECT_EQ(store_->FileBytes({0, 4}), 0u);
}

TEST_F(ExpertStoreTest, KeyNamingNoExpertIsInvalidArgument) {
  WriteModel();
  for (const ExpertKey key :
       {ExpertKey{0, 0}, ExpertKey{1, 4}, ExpertKey{1, -1}, ExpertKey{9, 0}}) {
    absl::StatusOr<RawExpert> expert = store_->Load(key);
    EXPECT_EQ(expert.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(expert.status().message(),
                HasSubstr("\"test-vmoe\" has no " + key.ToString()));
  }
}

TEST_F(ExpertStoreTest, CreateNeedsAManifest) {
  EXPECT_EQ(ExpertStore::Create(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ExpertStoreTest, CorruptFileIsDataLossUntilRepaired) {
  WriteModel();
  const std::string good = ReadFileOrDie(ExpertPath(1, 2));
  CorruptExpert(1, 2);
  const std::string bad = ReadFileOrDie(ExpertPath(1, 2));

  absl::StatusOr<RawExpert> expert = store_->Load({1, 2});
  EXPECT_EQ(expert.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(
      expert.status().message(),
      HasSubstr(absl::StrCat("checksum mismatch in ", ExpertPath(1, 2),
                             ": expected ", Sha256Hex(good.data(), good.size()),
                             ", got ", Sha256Hex(bad.data(), bad.size()))));
  // A bad expert does not spoil its neighbours, and is not remembered.
  EXPECT_TRUE(store_->Load({1, 1}).ok());
  WriteFileOrDie(ExpertPath(1, 2), good);
  EXPECT_TRUE(store_->Load({1, 2}).ok());
}

// The field report: a file loaded (and verified) once, then rewritten in
// place with the same size, must not load again unchecked.
TEST_F(ExpertStoreTest, EveryLoadIsVerifiedNotOnlyTheFirst) {
  WriteModel();
  const std::string good = ReadFileOrDie(ExpertPath(1, 0));
  ASSERT_TRUE(store_->Load({1, 0}).ok());
  std::string garbage = good;
  for (size_t i = garbage.size() / 2; i < garbage.size(); ++i) {
    garbage[i] = static_cast<char>(0xff);  // NaN bit patterns in f32.
  }
  WriteFileOrDie(ExpertPath(1, 0), garbage);

  absl::StatusOr<RawExpert> expert = store_->Load({1, 0});
  EXPECT_EQ(expert.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(expert.status().message(),
              HasSubstr("checksum mismatch in " + ExpertPath(1, 0)));
  WriteFileOrDie(ExpertPath(1, 0), good);
  EXPECT_TRUE(store_->Load({1, 0}).ok());
}

// A file replaced by rename (a new inode) is read anew: refused unless its
// bytes are the manifest's.
TEST_F(ExpertStoreTest, RenameReplacedFileIsReadAnew) {
  WriteModel();
  const std::string path = ExpertPath(1, 3);
  const std::string good = ReadFileOrDie(path);
  ASSERT_TRUE(store_->Load({1, 3}).ok());
  auto replace = [&](const std::string& bytes) {
    WriteFileOrDie(path + ".tmp", bytes);
    ASSERT_EQ(std::rename((path + ".tmp").c_str(), path.c_str()), 0);
  };

  ASSERT_NO_FATAL_FAILURE(replace(ReadFileOrDie(ExpertPath(1, 2))));
  EXPECT_EQ(store_->Load({1, 3}).status().code(), absl::StatusCode::kDataLoss);
  ASSERT_NO_FATAL_FAILURE(replace(good));
  EXPECT_TRUE(store_->Load({1, 3}).ok());
}

TEST_F(ExpertStoreTest, WrongSizeIsDataLoss) {
  WriteModel();
  const uint64_t size = manifest_->FindFile(TestExpertFile(1, 0))->size_bytes;
  WriteFileOrDie(ExpertPath(1, 0), ReadFileOrDie(ExpertPath(1, 0)) + "x");

  absl::StatusOr<RawExpert> expert = store_->Load({1, 0});
  EXPECT_EQ(expert.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(expert.status().message(),
              HasSubstr(absl::StrCat("size mismatch in ", ExpertPath(1, 0),
                                     ": expected ", size,
                                     " bytes, the file has ", size + 1)));
}

TEST_F(ExpertStoreTest, MissingFileIsNotFoundUntilRestored) {
  WriteModel();
  const std::string bytes = ReadFileOrDie(ExpertPath(1, 3));
  ASSERT_EQ(::unlink(ExpertPath(1, 3).c_str()), 0);

  absl::StatusOr<RawExpert> expert = store_->Load({1, 3});
  EXPECT_EQ(expert.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(expert.status().message(), HasSubstr(ExpertPath(1, 3)));
  EXPECT_TRUE(store_->Load({1, 0}).ok());
  WriteFileOrDie(ExpertPath(1, 3), bytes);
  EXPECT_TRUE(store_->Load({1, 3}).ok());
}

// Every refused load is counted once, by why its file was refused.
TEST_F(ExpertStoreTest, StatsCountRefusalsByReason) {
  WriteModel();
  EXPECT_TRUE(store_->Load({1, 0}).ok());
  ASSERT_EQ(::unlink(ExpertPath(1, 0).c_str()), 0);  // missing, twice
  EXPECT_FALSE(store_->Load({1, 0}).ok());
  EXPECT_FALSE(store_->Load({1, 0}).ok());
  ASSERT_EQ(::truncate(ExpertPath(1, 1).c_str(), 64), 0);  // size
  EXPECT_FALSE(store_->Load({1, 1}).ok());
  CorruptExpert(1, 2);  // checksum
  EXPECT_FALSE(store_->Load({1, 2}).ok());
  // A directory where the file was cannot be read (even by root).
  ASSERT_EQ(::unlink(ExpertPath(1, 3).c_str()), 0);
  ASSERT_EQ(::mkdir(ExpertPath(1, 3).c_str(), 0700), 0);
  EXPECT_EQ(store_->Load({1, 3}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(store_->Load({1, 4}).ok());  // names no expert: not counted

  const ExpertStoreStats stats = store_->stats();
  EXPECT_EQ(stats.missing, 2u);
  EXPECT_EQ(stats.size_mismatches, 1u);
  EXPECT_EQ(stats.checksum_mismatches, 1u);
  EXPECT_EQ(stats.read_errors, 1u);
}

// The loaded expert is a copy: nothing done to its file afterwards (or to
// the store) reaches it.
TEST_F(ExpertStoreTest, WeightsOutliveTheStoreAndChangesToTheFile) {
  WriteModel();
  absl::StatusOr<RawExpert> expert = store_->Load({1, 1});
  ASSERT_TRUE(expert.ok()) << expert.status();
  store_.reset();
  ASSERT_EQ(::truncate(ExpertPath(1, 1).c_str(), 0), 0);
  ExpectView(expert->fc2_bias, ExpertTensorPrefix(1, 1) + "fc2.bias",
             DType::kF32, {8});
  WriteFileOrDie(ExpertPath(1, 1), std::string(4096, 'x'));
  ASSERT_EQ(::unlink(ExpertPath(1, 1).c_str()), 0);
  ExpectView(expert->fc1_weight, ExpertTensorPrefix(1, 1) + "fc1.weight",
             DType::kF32, {16, 8});
}

TEST_F(ExpertStoreTest, ConcurrentLoadsAllSucceed) {
  WriteModel();
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        if (!store_->Load({1, (t + i) % 4}).ok()) ++failures;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace edge
