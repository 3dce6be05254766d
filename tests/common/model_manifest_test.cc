#include "common/model_manifest.h"

#include <cmath>
#include <functional>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/test_model.h"

namespace edge {
namespace {

namespace pb = ::edge::model::v1;
using ::edge::test_support::MakeTestManifest;
using ::edge::test_support::ManifestToJson;
using ::edge::test_support::TempDir;
using ::edge::test_support::TestExpertFile;
using ::edge::test_support::TestModelSpec;
using ::edge::test_support::WriteFileOrDie;
using ::edge::test_support::WriteTestModel;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<ModelManifest> ParseProto(const pb::Manifest& manifest) {
  return ModelManifest::Parse(ManifestToJson(manifest), "/models/test");
}

pb::TensorEntry* Tensor(pb::Manifest* m, const std::string& name) {
  for (pb::TensorEntry& t : *m->mutable_tensors()) {
    if (t.name() == name) return &t;
  }
  ADD_FAILURE() << "no tensor " << name;
  static pb::TensorEntry unused;
  return &unused;
}

void RemoveTensor(pb::Manifest* m, const std::string& name) {
  auto* tensors = m->mutable_tensors();
  for (int i = 0; i < tensors->size(); ++i) {
    if (tensors->Get(i).name() == name) {
      tensors->DeleteSubrange(i, 1);
      return;
    }
  }
  ADD_FAILURE() << "no tensor " << name;
}

TEST(ModelManifestTest, ParsesAValidManifestAndAppliesDefaults) {
  absl::StatusOr<ModelManifest> m = ParseProto(MakeTestManifest());
  ASSERT_TRUE(m.ok()) << m.status();

  const ModelConfig& c = m->config();
  EXPECT_EQ(c.image_size, 8);
  EXPECT_EQ(c.patch_size, 4);
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.depth, 2);
  EXPECT_EQ(c.heads, 2);
  EXPECT_EQ(c.mlp_dim, 16);
  EXPECT_EQ(c.num_classes, 3);
  EXPECT_EQ(c.grid(), 2);
  EXPECT_EQ(c.num_patches(), 4);
  EXPECT_EQ(c.num_tokens(), 4);
  EXPECT_EQ(c.head_dim(), 4);
  // docs/model-spec.md's defaults.
  EXPECT_EQ(c.norm_eps, 1e-6f);
  EXPECT_FALSE(c.class_token);
  EXPECT_EQ(c.global_pool, Pooling::kAvg);
  EXPECT_THAT(c.moe.layers, ElementsAre(1));
  EXPECT_EQ(c.moe.num_experts, 4);
  EXPECT_EQ(c.moe.top_k, 2);
  EXPECT_EQ(c.moe.routing, Routing::kImage);
  EXPECT_TRUE(c.moe.renormalize);
  EXPECT_EQ(c.moe.capacity_factor, 1.0f);
  EXPECT_TRUE(c.moe.batch_priority);
  // docs/model-format.md's defaults.
  EXPECT_EQ(m->precision(), "float32");
  EXPECT_THAT(m->labels(), ElementsAre("class_0", "class_1", "class_2"));
  EXPECT_THAT(m->mean(), ElementsAre(0.5f, 0.5f, 0.5f));
  EXPECT_THAT(m->stddev(), ElementsAre(0.5f, 0.5f, 0.5f));
  EXPECT_EQ(m->name(), "test-vmoe");
  EXPECT_EQ(m->model_dir(), "/models/test");
}

TEST(ModelManifestTest, ExplicitValuesOverrideDefaults) {
  TestModelSpec spec;
  spec.class_token = true;
  spec.precision = "bf16";
  pb::Manifest proto = MakeTestManifest(spec);
  pb::Architecture* a = proto.mutable_architecture();
  a->set_norm_eps(1e-5f);
  a->set_global_pool("token");
  a->mutable_moe()->set_routing("token");
  a->mutable_moe()->set_renormalize(false);
  a->mutable_moe()->set_capacity_factor(1.05f);
  a->mutable_moe()->set_batch_priority(false);
  for (const char* label : {"cat", "dog", "eel"}) proto.add_labels(label);
  for (const float v : {0.485f, 0.456f, 0.406f}) {
    proto.mutable_preprocessing()->add_mean(v);
  }
  for (const float v : {0.229f, 0.224f, 0.225f}) {
    proto.mutable_preprocessing()->add_std(v);
  }

  absl::StatusOr<ModelManifest> m = ParseProto(proto);
  ASSERT_TRUE(m.ok()) << m.status();
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_TRUE(c.class_token);
  EXPECT_EQ(c.num_tokens(), 5);
  EXPECT_EQ(c.global_pool, Pooling::kToken);
  EXPECT_EQ(c.moe.routing, Routing::kToken);
  EXPECT_FALSE(c.moe.renormalize);
  EXPECT_EQ(c.moe.capacity_factor, 1.05f);
  EXPECT_FALSE(c.moe.batch_priority);
  EXPECT_EQ(m->precision(), "bf16");
  EXPECT_THAT(m->labels(), ElementsAre("cat", "dog", "eel"));
  EXPECT_THAT(m->mean(), ElementsAre(0.485f, 0.456f, 0.406f));
  EXPECT_THAT(m->stddev(), ElementsAre(0.229f, 0.224f, 0.225f));
}

TEST(ModelManifestTest, IndexesTensorsFilesAndExperts) {
  absl::StatusOr<ModelManifest> m = ParseProto(MakeTestManifest());
  ASSERT_TRUE(m.ok()) << m.status();

  const TensorInfo* fc1 = m->FindTensor("blocks.1.moe.experts.2.fc1.weight");
  ASSERT_NE(fc1, nullptr);
  EXPECT_EQ(fc1->dtype, DType::kF32);
  EXPECT_THAT(fc1->shape, ElementsAre(16, 8));
  EXPECT_EQ(fc1->file, TestExpertFile(1, 2));
  EXPECT_EQ(fc1->offset_bytes % 64, 0u);
  EXPECT_EQ(fc1->size_bytes, 16u * 8 * 4);
  EXPECT_EQ(m->FindTensor("blocks.1.mlp.fc1.weight"), nullptr);
  EXPECT_NE(m->FindTensor("blocks.0.mlp.fc1.weight"), nullptr);

  EXPECT_EQ(m->files().size(), 5u);  // model.safetensors and 4 experts
  const FileInfo* file = m->FindFile("model.safetensors");
  ASSERT_NE(file, nullptr);
  EXPECT_GT(file->size_bytes, 0u);
  EXPECT_EQ(file->sha256.size(), 64u);
  EXPECT_EQ(m->FindFile("absent.safetensors"), nullptr);

  for (int e = 0; e < 4; ++e)
    EXPECT_EQ(m->ExpertFile(1, e), TestExpertFile(1, e));
  EXPECT_EQ(m->PathOf("model.safetensors"), "/models/test/model.safetensors");
}

TEST(ModelManifestTest, PathOfJoinsOnce) {
  const pb::Manifest proto = MakeTestManifest();
  const std::string json = ManifestToJson(proto);
  EXPECT_EQ(ModelManifest::Parse(json, "/m/")->PathOf("a/b"), "/m/a/b");
  EXPECT_EQ(ModelManifest::Parse(json, "")->PathOf("a/b"), "a/b");
}

TEST(ModelManifestTest, AcceptsLowerCamelCaseFieldNames) {
  std::string json = ManifestToJson(MakeTestManifest());
  json = absl::StrReplaceAll(json, {{"\"image_size\"", "\"imageSize\""},
                                    {"\"mlp_dim\"", "\"mlpDim\""},
                                    {"\"num_experts\"", "\"numExperts\""},
                                    {"\"offset_bytes\"", "\"offsetBytes\""}});
  absl::StatusOr<ModelManifest> m = ModelManifest::Parse(json, "/m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->config().mlp_dim, 16);
  EXPECT_EQ(m->config().moe.num_experts, 4);
}

TEST(ModelManifestTest, AcceptsJsonNumbersFor64BitFields) {
  // protobuf prints uint64 as JSON strings; an exporter writes numbers, as
  // docs/model-format.md's example does.
  const std::string json =
      std::regex_replace(ManifestToJson(MakeTestManifest()),
                         std::regex(R"re(": "(\d+)")re"), "\": $1");
  ASSERT_THAT(json, HasSubstr("\"size_bytes\": 1184"));
  absl::StatusOr<ModelManifest> m = ModelManifest::Parse(json, "/m");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->FindFile(TestExpertFile(1, 0))->size_bytes, 1184u);
}

TEST(ModelManifestTest, UnknownFieldIsAnErrorNamingIt) {
  const std::string json = ManifestToJson(MakeTestManifest());
  for (const auto& [from, to] :
       std::vector<std::pair<std::string, std::string>>{
           {"\"num_experts\"", "\"num_expert\""},
           {"\"architecture\"", "\"architectur\""},
           {"\"sha256\"", "\"sha_256\""}}) {
    absl::StatusOr<ModelManifest> m =
        ModelManifest::Parse(absl::StrReplaceAll(json, {{from, to}}), "/m");
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(m.status().message(), HasSubstr("manifest"));
    EXPECT_THAT(m.status().message(), HasSubstr(to.substr(1, to.size() - 2)));
  }
}

TEST(ModelManifestTest, MalformedJsonIsAnError) {
  absl::StatusOr<ModelManifest> m = ModelManifest::Parse("{\"name\": ", "/m");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr("manifest"));
}

TEST(ModelManifestTest, LoadsFromADirectory) {
  TempDir dir;
  ASSERT_TRUE(WriteTestModel(dir.path(), MakeTestManifest()).ok());
  absl::StatusOr<ModelManifest> m = ModelManifest::Load(dir.path());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->model_dir(), dir.path());
  EXPECT_EQ(m->PathOf("model.safetensors"), dir.Join("model.safetensors"));
}

TEST(ModelManifestTest, LoadErrorsNameTheManifestFile) {
  TempDir dir;
  absl::StatusOr<ModelManifest> missing = ModelManifest::Load(dir.path());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr(dir.Join("manifest.json")));

  pb::Manifest proto = MakeTestManifest();
  proto.mutable_architecture()->set_heads(3);
  WriteFileOrDie(dir.Join("manifest.json"), ManifestToJson(proto));
  absl::StatusOr<ModelManifest> invalid = ModelManifest::Load(dir.path());
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(invalid.status().message(),
              HasSubstr(dir.Join("manifest.json") +
                        ": architecture.heads 3 does not divide dim 8"));
}

TEST(ModelManifestTest, ReducedPrecisionExpertTensors) {
  TestModelSpec spec;
  spec.precision = "bf16";
  absl::StatusOr<ModelManifest> bf16 = ParseProto(MakeTestManifest(spec));
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(bf16->FindTensor("blocks.1.moe.experts.0.fc2.weight")->dtype,
            DType::kBF16);
  EXPECT_EQ(bf16->FindTensor("blocks.1.moe.experts.0.fc2.bias")->dtype,
            DType::kF32);
  EXPECT_EQ(bf16->FindTensor("blocks.0.mlp.fc1.weight")->dtype, DType::kF32);

  spec.precision = "int8";
  absl::StatusOr<ModelManifest> int8 = ParseProto(MakeTestManifest(spec));
  ASSERT_TRUE(int8.ok()) << int8.status();
  EXPECT_EQ(int8->FindTensor("blocks.1.moe.experts.3.fc1.weight")->dtype,
            DType::kI8);
  const TensorInfo* scale =
      int8->FindTensor("blocks.1.moe.experts.3.fc1.weight_scale");
  ASSERT_NE(scale, nullptr);
  EXPECT_EQ(scale->dtype, DType::kF32);
  EXPECT_THAT(scale->shape, ElementsAre(16));
  EXPECT_THAT(
      int8->FindTensor("blocks.1.moe.experts.3.fc2.weight_scale")->shape,
      ElementsAre(8));
}

TEST(ModelManifestTest, ClassTokenAndDenseModels) {
  TestModelSpec spec;
  spec.class_token = true;
  spec.moe_layers = {};
  absl::StatusOr<ModelManifest> m = ParseProto(MakeTestManifest(spec));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(m->FindTensor("cls_token")->shape, ElementsAre(1, 1, 8));
  EXPECT_THAT(m->FindTensor("pos_embed")->shape, ElementsAre(1, 5, 8));
  EXPECT_FALSE(m->config().moe.IsMoeLayer(1));
  EXPECT_EQ(m->config().moe.num_experts, 0);
  EXPECT_EQ(m->files().size(), 1u);
}

// One rule of docs/model-format.md's "What the loader checks", broken.
struct BrokenRule {
  const char* name;
  std::function<void(pb::Manifest*)> mutate;
  std::string error;  // expected in the INVALID_ARGUMENT message
  TestModelSpec spec = {};
};

pb::Architecture* Arch(pb::Manifest* m) { return m->mutable_architecture(); }
pb::MoeConfig* Moe(pb::Manifest* m) { return Arch(m)->mutable_moe(); }

std::vector<BrokenRule> HeaderAndArchitectureRules() {
  return {
      {"format_version", [](pb::Manifest* m) { m->set_format_version(2); },
       "format_version must be 1, got 2"},
      {"name", [](pb::Manifest* m) { m->clear_name(); }, "name is required"},
      {"architecture", [](pb::Manifest* m) { m->clear_architecture(); },
       "architecture is required"},
      {"image_size", [](pb::Manifest* m) { Arch(m)->clear_image_size(); },
       "architecture.image_size must be in [1, 4096], got 0"},
      {"patch_size", [](pb::Manifest* m) { Arch(m)->set_patch_size(5000); },
       "architecture.patch_size must be in [1, 4096], got 5000"},
      {"dim", [](pb::Manifest* m) { Arch(m)->set_dim(20000); },
       "architecture.dim must be in [1, 16384], got 20000"},
      {"depth", [](pb::Manifest* m) { Arch(m)->set_depth(300); },
       "architecture.depth must be in [1, 256], got 300"},
      {"heads", [](pb::Manifest* m) { Arch(m)->set_heads(-1); },
       "architecture.heads must be in [1, 16384], got -1"},
      {"mlp_dim", [](pb::Manifest* m) { Arch(m)->set_mlp_dim(0); },
       "architecture.mlp_dim must be in [1, 16384], got 0"},
      {"num_classes", [](pb::Manifest* m) { Arch(m)->set_num_classes(0); },
       "architecture.num_classes must be in [1, 1000000], got 0"},
      {"patch_divides_image",
       [](pb::Manifest* m) {
         Arch(m)->set_image_size(32);
         Arch(m)->set_patch_size(7);
       },
       "architecture.patch_size 7 does not divide image_size 32"},
      {"heads_divide_dim", [](pb::Manifest* m) { Arch(m)->set_heads(3); },
       "architecture.heads 3 does not divide dim 8"},
      {"max_tokens",
       [](pb::Manifest* m) {
         Arch(m)->set_image_size(4096);
         Arch(m)->set_patch_size(8);
       },
       "gives 262144 tokens, more than 65536"},
      {"norm_eps", [](pb::Manifest* m) { Arch(m)->set_norm_eps(0); },
       "architecture.norm_eps must be positive, got 0"},
      {"global_pool", [](pb::Manifest* m) { Arch(m)->set_global_pool("max"); },
       "architecture.global_pool \"max\" must be \"avg\" or \"token\""},
      {"token_pool_needs_class_token",
       [](pb::Manifest* m) { Arch(m)->set_global_pool("token"); },
       "architecture.global_pool \"token\" needs class_token: true"},
  };
}

std::vector<BrokenRule> MoeRules() {
  return {
      {"layer_past_depth", [](pb::Manifest* m) { Moe(m)->set_layers(0, 2); },
       "architecture.moe.layers entry 2 is outside [0, depth 2)"},
      {"negative_layer", [](pb::Manifest* m) { Moe(m)->set_layers(0, -1); },
       "architecture.moe.layers entry -1 is outside [0, depth 2)"},
      {"duplicate_layer", [](pb::Manifest* m) { Moe(m)->add_layers(1); },
       "architecture.moe.layers lists block 1 twice"},
      {"no_experts", [](pb::Manifest* m) { Moe(m)->set_num_experts(0); },
       "architecture.moe.num_experts must be in [1, 1024], got 0"},
      {"too_many_experts",
       [](pb::Manifest* m) { Moe(m)->set_num_experts(2000); },
       "architecture.moe.num_experts must be in [1, 1024], got 2000"},
      {"top_k_above_experts", [](pb::Manifest* m) { Moe(m)->set_top_k(5); },
       "architecture.moe.top_k must be in [1, num_experts 4], got 5"},
      {"top_k_zero", [](pb::Manifest* m) { Moe(m)->set_top_k(0); },
       "architecture.moe.top_k must be in [1, num_experts 4], got 0"},
      {"experts_without_layers",
       [](pb::Manifest* m) { Moe(m)->clear_layers(); },
       "architecture.moe.num_experts 4 and top_k 2 are set but moe.layers is "
       "empty"},
      {"routing", [](pb::Manifest* m) { Moe(m)->set_routing("expert"); },
       "architecture.moe.routing \"expert\" must be \"image\" or \"token\""},
      {"capacity_factor_zero",
       [](pb::Manifest* m) { Moe(m)->set_capacity_factor(0); },
       "architecture.moe.capacity_factor must be positive, got 0"},
      {"capacity_factor_nan",
       [](pb::Manifest* m) { Moe(m)->set_capacity_factor(std::nanf("")); },
       "architecture.moe.capacity_factor must be positive, got nan"},
  };
}

std::vector<BrokenRule> MetadataRules() {
  return {
      {"labels",
       [](pb::Manifest* m) {
         m->add_labels("cat");
         m->add_labels("dog");
       },
       "labels has 2 entries but architecture.num_classes is 3"},
      {"superclasses",
       [](pb::Manifest* m) {
         pb::Superclass* s = m->add_superclasses();
         s->set_name("fish");
         s->add_classes(0);
         s->add_classes(3);
       },
       "superclasses[0] (\"fish\") lists class 3, outside [0, num_classes 3)"},
      {"mean_count",
       [](pb::Manifest* m) {
         m->mutable_preprocessing()->add_mean(0.5f);
         m->mutable_preprocessing()->add_mean(0.5f);
       },
       "preprocessing.mean has 2 values, expected 3"},
      {"std_positive",
       [](pb::Manifest* m) {
         for (const float v : {0.5f, 0.0f, 0.5f}) {
           m->mutable_preprocessing()->add_std(v);
         }
       },
       "preprocessing.std[1] is 0; it must be positive"},
      {"mean_finite",
       [](pb::Manifest* m) {
         for (const float v :
              {std::numeric_limits<float>::infinity(), 0.f, 0.f}) {
           m->mutable_preprocessing()->add_mean(v);
         }
       },
       "preprocessing.mean[0] is inf; it must be finite"},
      {"precision", [](pb::Manifest* m) { m->set_precision("fp16"); },
       "precision \"fp16\" must be \"float32\", \"bf16\" or \"int8\""},
  };
}

std::vector<BrokenRule> FileRules() {
  return {
      {"absolute_path",
       [](pb::Manifest* m) { m->mutable_files(0)->set_path("/etc/x"); },
       "files[0].path \"/etc/x\" must be a relative path inside the model "
       "directory"},
      {"parent_path",
       [](pb::Manifest* m) {
         m->mutable_files(1)->set_path("experts/../../x");
       },
       "files[1].path \"experts/../../x\" must be a relative path"},
      {"duplicate_file", [](pb::Manifest* m) { *m->add_files() = m->files(0); },
       "files lists \"model.safetensors\" twice"},
      {"sha256",
       [](pb::Manifest* m) {
         std::string* sha = m->mutable_files(0)->mutable_sha256();
         (*sha)[0] = 'A';
       },
       "files[0] (\"model.safetensors\"): sha256 must be 64 lowercase hex "
       "digits"},
  };
}

std::vector<BrokenRule> TensorRules() {
  return {
      {"unknown_tensor",
       [](pb::Manifest* m) {
         *m->add_tensors() = *Tensor(m, "blocks.0.mlp.fc1.weight");
         m->mutable_tensors(m->tensors_size() - 1)
             ->set_name("blocks.0.mlp.fc3.weight");
       },
       "tensor \"blocks.0.mlp.fc3.weight\" is not part of this architecture "
       "at precision \"float32\""},
      {"cls_token_without_class_token",
       [](pb::Manifest* m) {
         *m->add_tensors() = *Tensor(m, "norm.bias");
         m->mutable_tensors(m->tensors_size() - 1)->set_name("cls_token");
       },
       "tensor \"cls_token\" is not part of this architecture"},
      {"scale_at_float32",
       [](pb::Manifest* m) {
         *m->add_tensors() = *Tensor(m, "blocks.1.moe.experts.0.fc1.bias");
         m->mutable_tensors(m->tensors_size() - 1)
             ->set_name("blocks.1.moe.experts.0.fc1.weight_scale");
       },
       "tensor \"blocks.1.moe.experts.0.fc1.weight_scale\" is not part of "
       "this architecture at precision \"float32\""},
      {"duplicate_tensor",
       [](pb::Manifest* m) { *m->add_tensors() = m->tensors(0); },
       "tensor \"patch_embed.proj.weight\" is listed twice"},
      {"missing_tensor", [](pb::Manifest* m) { RemoveTensor(m, "head.bias"); },
       "tensor \"head.bias\" is missing; the architecture requires it"},
      {"missing_router",
       [](pb::Manifest* m) { RemoveTensor(m, "blocks.1.moe.router.weight"); },
       "tensor \"blocks.1.moe.router.weight\" is missing"},
      {"missing_expert_tensor",
       [](pb::Manifest* m) {
         RemoveTensor(m, "blocks.1.moe.experts.3.fc2.bias");
       },
       "tensor \"blocks.1.moe.experts.3.fc2.bias\" is missing"},
      {"unknown_dtype",
       [](pb::Manifest* m) { Tensor(m, "norm.weight")->set_dtype("F16"); },
       "tensor \"norm.weight\": unknown dtype \"F16\" (expected F32, BF16 or "
       "I8)"},
      {"wrong_dtype",
       [](pb::Manifest* m) { Tensor(m, "norm.weight")->set_dtype("BF16"); },
       "tensor \"norm.weight\": dtype BF16, expected F32 for precision "
       "\"float32\""},
      {"wrong_expert_dtype",
       [](pb::Manifest* m) {
         Tensor(m, "blocks.1.moe.experts.0.fc1.weight")->set_dtype("BF16");
       },
       "tensor \"blocks.1.moe.experts.0.fc1.weight\": dtype BF16, expected "
       "F32"},
      {"shape",
       [](pb::Manifest* m) {
         Tensor(m, "head.weight")->set_shape(0, 8);
         Tensor(m, "head.weight")->set_shape(1, 3);
       },
       "tensor \"head.weight\": shape [8, 3], expected [3, 8]"},
      {"rank", [](pb::Manifest* m) { Tensor(m, "head.bias")->add_shape(1); },
       "tensor \"head.bias\": shape [3, 1], expected [3]"},
      {"size_bytes",
       [](pb::Manifest* m) { Tensor(m, "head.bias")->set_size_bytes(8); },
       "tensor \"head.bias\": size_bytes 8, expected 12 (3 x F32)"},
  };
}

std::vector<BrokenRule> PlacementRules() {
  return {
      {"file_not_listed",
       [](pb::Manifest* m) { Tensor(m, "head.bias")->set_file("other.bin"); },
       "tensor \"head.bias\": file \"other.bin\" is not listed in files"},
      {"alignment",
       [](pb::Manifest* m) { Tensor(m, "head.bias")->set_offset_bytes(100); },
       "tensor \"head.bias\": offset_bytes 100 is not a multiple of 64"},
      {"past_end_of_file",
       [](pb::Manifest* m) { m->mutable_files(0)->set_size_bytes(64); },
       "tensor \"patch_embed.proj.weight\": offset_bytes 64 + size_bytes "
       "1536 run past the end of \"model.safetensors\" (size_bytes 64)"},
      {"offset_overflow",
       [](pb::Manifest* m) {
         Tensor(m, "head.bias")->set_offset_bytes(~uint64_t{63});
       },
       "tensor \"head.bias\": offset_bytes 18446744073709551552 + size_bytes "
       "12 run past the end"},
      {"expert_split_across_files",
       [](pb::Manifest* m) {
         *m->add_files() = m->files(1);
         m->mutable_files(m->files_size() - 1)->set_path("experts/extra.bin");
         for (const char* t : {"fc2.weight", "fc2.bias"}) {
           Tensor(m, std::string("blocks.1.moe.experts.0.") + t)
               ->set_file("experts/extra.bin");
         }
       },
       "the tensors of layer 1 expert 0 are split between files "
       "\"experts/block01_expert000.safetensors\" and \"experts/extra.bin\""},
      {"expert_file_holds_other_tensor",
       [](pb::Manifest* m) {
         Tensor(m, "head.bias")->set_file(TestExpertFile(1, 0));
         Tensor(m, "head.bias")->set_offset_bytes(64);
       },
       "file \"experts/block01_expert000.safetensors\" holds tensors of layer "
       "1 expert 0 and of the non-expert model (\"head.bias\")"},
      {"experts_share_a_file",
       [](pb::Manifest* m) {
         for (const char* t :
              {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
           Tensor(m, std::string("blocks.1.moe.experts.1.") + t)
               ->set_file(TestExpertFile(1, 0));
         }
       },
       "holds tensors of layer 1 expert 0 and of layer 1 expert 1"},
  };
}

std::vector<BrokenRule> PrecisionRules() {
  TestModelSpec int8;
  int8.precision = "int8";
  TestModelSpec class_token;
  class_token.class_token = true;
  return {
      {"int8_missing_scale",
       [](pb::Manifest* m) {
         RemoveTensor(m, "blocks.1.moe.experts.0.fc1.weight_scale");
       },
       "tensor \"blocks.1.moe.experts.0.fc1.weight_scale\" is missing", int8},
      {"int8_weight_as_f32",
       [](pb::Manifest* m) {
         pb::TensorEntry* t = Tensor(m, "blocks.1.moe.experts.0.fc2.weight");
         t->set_dtype("F32");
         t->set_size_bytes(t->size_bytes() * 4);
       },
       "tensor \"blocks.1.moe.experts.0.fc2.weight\": dtype F32, expected I8 "
       "for precision \"int8\"",
       int8},
      {"missing_cls_token",
       [](pb::Manifest* m) { RemoveTensor(m, "cls_token"); },
       "tensor \"cls_token\" is missing", class_token},
      {"pos_embed_without_class_row",
       [](pb::Manifest* m) { Tensor(m, "pos_embed")->set_shape(1, 4); },
       "tensor \"pos_embed\": shape [1, 4, 8], expected [1, 5, 8]",
       class_token},
  };
}

class BrokenRuleTest : public ::testing::TestWithParam<BrokenRule> {};

TEST_P(BrokenRuleTest, IsInvalidArgumentSayingWhy) {
  const BrokenRule& rule = GetParam();
  pb::Manifest proto = MakeTestManifest(rule.spec);
  ASSERT_TRUE(ParseProto(proto).ok()) << "the unbroken manifest must parse";
  rule.mutate(&proto);

  absl::StatusOr<ModelManifest> m = ParseProto(proto);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(m.status().message(), HasSubstr(rule.error));
}

std::string RuleName(const ::testing::TestParamInfo<BrokenRule>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Header, BrokenRuleTest,
                         ::testing::ValuesIn(HeaderAndArchitectureRules()),
                         RuleName);
INSTANTIATE_TEST_SUITE_P(Moe, BrokenRuleTest, ::testing::ValuesIn(MoeRules()),
                         RuleName);
INSTANTIATE_TEST_SUITE_P(Metadata, BrokenRuleTest,
                         ::testing::ValuesIn(MetadataRules()), RuleName);
INSTANTIATE_TEST_SUITE_P(Files, BrokenRuleTest,
                         ::testing::ValuesIn(FileRules()), RuleName);
INSTANTIATE_TEST_SUITE_P(Tensors, BrokenRuleTest,
                         ::testing::ValuesIn(TensorRules()), RuleName);
INSTANTIATE_TEST_SUITE_P(Placement, BrokenRuleTest,
                         ::testing::ValuesIn(PlacementRules()), RuleName);
INSTANTIATE_TEST_SUITE_P(Precision, BrokenRuleTest,
                         ::testing::ValuesIn(PrecisionRules()), RuleName);

ModelConfig TokenRouted(int image_size, int patch_size, bool class_token,
                        int top_k, int num_experts, float capacity_factor) {
  ModelConfig c;
  c.image_size = image_size;
  c.patch_size = patch_size;
  c.class_token = class_token;
  c.moe.layers = {0};
  c.moe.num_experts = num_experts;
  c.moe.top_k = top_k;
  c.moe.routing = Routing::kToken;
  c.moe.capacity_factor = capacity_factor;
  return c;
}

TEST(ExpertCapacityTest, FollowsModelSpec) {
  // vmoe-s32-e32: T = 49, ceil(2 * 49 * 1.05 / 32) = ceil(3.215625) = 4.
  EXPECT_EQ(TokenRouted(224, 32, false, 2, 32, 1.05f).expert_capacity(), 4);
  // ceil(2 * 49 * 1.0 / 8) = ceil(12.25) = 13.
  EXPECT_EQ(TokenRouted(224, 32, false, 2, 8, 1.0f).expert_capacity(), 13);
  // Exactly divisible: 1 * 4 * 2.0 / 8 = 1.
  EXPECT_EQ(TokenRouted(8, 4, false, 1, 8, 2.0f).expert_capacity(), 1);
  // No experts, no capacity.
  ModelConfig dense = TokenRouted(8, 4, false, 0, 0, 1.0f);
  EXPECT_EQ(dense.expert_capacity(), 0);
}

// The spelling GetModelInfo and the edge_gateway_model_info metric show.
TEST(RoutingNameTest, ImageTokenOrDense) {
  ModelConfig c = TokenRouted(8, 4, false, 1, 2, 1.0f);
  EXPECT_STREQ(c.routing_name(), "token");
  c.moe.routing = Routing::kImage;
  EXPECT_STREQ(c.routing_name(), "image");
  c.moe = MoeSpec();  // No MoE layers, whatever moe.routing says.
  EXPECT_STREQ(c.routing_name(), "dense");
  c.moe.routing = Routing::kToken;
  EXPECT_STREQ(c.routing_name(), "dense");
}

TEST(ExpertCapacityTest, IsExactDespiteFloatRounding) {
  // T = 9 patches + class token = 10. 1.1f is 1.10000002, so a float or
  // double product gives 1.0000000216 and ceil would say 2; exactly it is 1.
  EXPECT_EQ(TokenRouted(12, 4, true, 1, 11, 1.1f).expert_capacity(), 1);
  // In double, 7 * 10 * 1.1 = 77.00000000000001: still exactly 1.
  EXPECT_EQ(TokenRouted(12, 4, true, 7, 77, 1.1f).expert_capacity(), 1);
  // 1 * 10 * 1.15 / 11 = 1.045...: a true fraction still rounds up.
  EXPECT_EQ(TokenRouted(12, 4, true, 1, 11, 1.15f).expert_capacity(), 2);
}

TEST(ExpertCapacityTest, AgreesWithTheReferenceImplementation) {
  // tests/tools/test_vmoe_reference.py's cases: T = 16 (or 17), k = 2, E = 4.
  EXPECT_EQ(TokenRouted(16, 4, false, 2, 4, 1.05f).expert_capacity(), 9);
  EXPECT_EQ(TokenRouted(16, 4, false, 2, 4, 1.0f).expert_capacity(), 8);
  EXPECT_EQ(TokenRouted(16, 4, true, 2, 4, 0.5f).expert_capacity(), 5);
  // 2 * 25 * 1.1 / 5 is 11 exactly.
  EXPECT_EQ(TokenRouted(20, 4, false, 2, 5, 1.1f).expert_capacity(), 11);
}

TEST(ExpertCapacityTest, TinyFactorsLeaveOneSlot) {
  // ceil of a tiny positive number is 1; also checks the exponent parsing.
  EXPECT_EQ(TokenRouted(8, 4, false, 1, 4, 2.5e-5f).expert_capacity(), 1);
  EXPECT_EQ(TokenRouted(8, 4, false, 1, 4, 1e-38f).expert_capacity(), 1);
  // 1 * 4 * 0.75 / 2 = 1.5.
  EXPECT_EQ(TokenRouted(8, 4, false, 1, 2, 0.75f).expert_capacity(), 2);
}

TEST(ExpertCapacityTest, NeverExceedsTheTokenCount) {
  // An expert takes at most one assignment per token, so capacity above T
  // is T; a huge factor must not overflow.
  EXPECT_EQ(TokenRouted(8, 4, false, 2, 2, 1e30f).expert_capacity(), 4);
  EXPECT_EQ(TokenRouted(8, 4, false, 2, 2, 3.4e38f).expert_capacity(), 4);
  EXPECT_EQ(TokenRouted(8, 4, false, 1, 2, 123456.7f).expert_capacity(), 4);
}

TEST(ModelManifestHelpersTest, DTypes) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2);
  EXPECT_EQ(DTypeSize(DType::kI8), 1);
  EXPECT_STREQ(DTypeName(DType::kF32), "F32");
  EXPECT_STREQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_STREQ(DTypeName(DType::kI8), "I8");
}

TEST(ModelManifestHelpersTest, ExpertNamesAndLayers) {
  EXPECT_EQ(ExpertTensorPrefix(7, 12), "blocks.7.moe.experts.12.");
  MoeSpec moe;
  moe.layers = {5, 7};
  EXPECT_TRUE(moe.IsMoeLayer(5));
  EXPECT_TRUE(moe.IsMoeLayer(7));
  EXPECT_FALSE(moe.IsMoeLayer(6));
  EXPECT_FALSE(MoeSpec().IsMoeLayer(0));
}

}  // namespace
}  // namespace edge
