// Tiny model directories for tests of the manifest loader and the expert
// store.
//
// The tensor list is written here from docs/model-spec.md's weight table,
// apart from common/model_manifest.cc, so that each checks the other. Files
// are laid out as the exporter lays them out (docs/model-format.md):
// non-expert tensors in model.safetensors, each expert in
// experts/block{LL}_expert{EEE}.safetensors, every tensor at a 64-byte
// aligned offset. The bytes before the first tensor are zeros, not a real
// safetensors header: nothing in C++ reads that header.
#ifndef EDGE_TESTS_TESTING_TEST_MODEL_H_
#define EDGE_TESTS_TESTING_TEST_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/model_manifest.pb.h"

namespace edge {
namespace test_support {

// A deliberately small V-MoE: 8x8 images of 4x4 patches (N = 4), D = 8,
// two blocks of which block 1 is an MoE of 4 experts.
struct TestModelSpec {
  int image_size = 8;
  int patch_size = 4;
  int dim = 8;
  int depth = 2;
  int heads = 2;
  int mlp_dim = 16;
  int num_classes = 3;
  bool class_token = false;
  std::vector<int> moe_layers = {1};
  int num_experts = 4;
  int top_k = 2;
  std::string precision = "float32";  // "float32", "bf16" or "int8".
};

// A manifest that ModelManifest::Parse accepts, with every file's size and
// SHA-256 those of the bytes WriteTestModel writes. Optional fields
// docs/model-spec.md gives defaults for are left unset.
model::v1::Manifest MakeTestManifest(const TestModelSpec& spec = {});

// "experts/block01_expert002.safetensors".
std::string TestExpertFile(int layer, int expert);

// Byte `i` of tensor `name` as written; a hash, so tensors differ.
uint8_t TestTensorByte(const std::string& name, uint64_t i);

// The contents of `path` as the tensors of `manifest` lay it out.
std::string TestFileBytes(const model::v1::Manifest& manifest,
                          const std::string& path);

// manifest.json in protobuf's JSON mapping, snake_case field names.
std::string ManifestToJson(const model::v1::Manifest& manifest);

// Writes manifest.json and every file the manifest lists into `dir`.
absl::Status WriteTestModel(const std::string& dir,
                            const model::v1::Manifest& manifest);

}  // namespace test_support
}  // namespace edge

#endif  // EDGE_TESTS_TESTING_TEST_MODEL_H_
