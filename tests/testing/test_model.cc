#include "tests/testing/test_model.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"

namespace edge {
namespace test_support {
namespace {

namespace pb = ::edge::model::v1;

constexpr uint64_t kAlignment = 64;  // docs/model-format.md

struct Row {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;
  std::string file;
};

class RowList {
 public:
  void Add(std::string name, std::vector<int64_t> shape,
           std::string file = "model.safetensors", std::string dtype = "F32") {
    rows_.push_back(
        {std::move(name), std::move(shape), std::move(dtype), std::move(file)});
  }
  std::vector<Row> rows() && { return std::move(rows_); }

 private:
  std::vector<Row> rows_;
};

void AddExpert(const TestModelSpec& s, int block, int e, RowList* rows) {
  const std::string p = absl::StrCat("blocks.", block, ".moe.experts.", e, ".");
  const std::string file = TestExpertFile(block, e);
  const std::string w = s.precision == "bf16"   ? "BF16"
                        : s.precision == "int8" ? "I8"
                                                : "F32";
  rows->Add(p + "fc1.weight", {s.mlp_dim, s.dim}, file, w);
  rows->Add(p + "fc1.bias", {s.mlp_dim}, file);
  rows->Add(p + "fc2.weight", {s.dim, s.mlp_dim}, file, w);
  rows->Add(p + "fc2.bias", {s.dim}, file);
  if (s.precision == "int8") {
    rows->Add(p + "fc1.weight_scale", {s.mlp_dim}, file);
    rows->Add(p + "fc2.weight_scale", {s.dim}, file);
  }
}

void AddBlock(const TestModelSpec& s, int i, RowList* rows) {
  const std::string b = absl::StrCat("blocks.", i, ".");
  const int64_t d = s.dim, f = s.mlp_dim;
  rows->Add(b + "norm1.weight", {d});
  rows->Add(b + "norm1.bias", {d});
  rows->Add(b + "attn.qkv.weight", {3 * d, d});
  rows->Add(b + "attn.qkv.bias", {3 * d});
  rows->Add(b + "attn.proj.weight", {d, d});
  rows->Add(b + "attn.proj.bias", {d});
  rows->Add(b + "norm2.weight", {d});
  rows->Add(b + "norm2.bias", {d});
  const auto& moe = s.moe_layers;
  if (std::find(moe.begin(), moe.end(), i) == moe.end()) {
    rows->Add(b + "mlp.fc1.weight", {f, d});
    rows->Add(b + "mlp.fc1.bias", {f});
    rows->Add(b + "mlp.fc2.weight", {d, f});
    rows->Add(b + "mlp.fc2.bias", {d});
    return;
  }
  rows->Add(b + "moe.router.weight", {s.num_experts, d});
  for (int e = 0; e < s.num_experts; ++e) AddExpert(s, i, e, rows);
}

// docs/model-spec.md's weight table for `s`.
std::vector<Row> Rows(const TestModelSpec& s) {
  RowList rows;
  const int64_t d = s.dim, p = s.patch_size;
  const int64_t grid = s.image_size / s.patch_size;
  rows.Add("patch_embed.proj.weight", {d, 3, p, p});
  rows.Add("patch_embed.proj.bias", {d});
  if (s.class_token) rows.Add("cls_token", {1, 1, d});
  rows.Add("pos_embed", {1, grid * grid + (s.class_token ? 1 : 0), d});
  for (int i = 0; i < s.depth; ++i) AddBlock(s, i, &rows);
  rows.Add("norm.weight", {d});
  rows.Add("norm.bias", {d});
  rows.Add("head.weight", {s.num_classes, d});
  rows.Add("head.bias", {s.num_classes});
  return std::move(rows).rows();
}

uint64_t SizeOf(const Row& row) {
  uint64_t n = row.dtype == "F32" ? 4 : row.dtype == "BF16" ? 2 : 1;
  for (const int64_t dim : row.shape) n *= static_cast<uint64_t>(dim);
  return n;
}

void SetArchitecture(const TestModelSpec& s, pb::Architecture* a) {
  a->set_image_size(s.image_size);
  a->set_patch_size(s.patch_size);
  a->set_dim(s.dim);
  a->set_depth(s.depth);
  a->set_heads(s.heads);
  a->set_mlp_dim(s.mlp_dim);
  a->set_num_classes(s.num_classes);
  if (s.class_token) a->set_class_token(true);
  if (s.moe_layers.empty()) return;
  for (const int layer : s.moe_layers) a->mutable_moe()->add_layers(layer);
  a->mutable_moe()->set_num_experts(s.num_experts);
  a->mutable_moe()->set_top_k(s.top_k);
}

// Places every row at the next 64-byte boundary of its file, the first at
// 64 (where a safetensors header would end), and lists the files.
void LayOut(const std::vector<Row>& rows, pb::Manifest* m) {
  std::map<std::string, uint64_t> next_offset;
  for (const Row& row : rows) {
    auto [it, first] = next_offset.emplace(row.file, kAlignment);
    if (first) m->add_files()->set_path(row.file);
    pb::TensorEntry* t = m->add_tensors();
    t->set_name(row.name);
    t->set_dtype(row.dtype);
    for (const int64_t dim : row.shape) t->add_shape(dim);
    t->set_file(row.file);
    t->set_offset_bytes(it->second);
    t->set_size_bytes(SizeOf(row));
    it->second =
        (it->second + SizeOf(row) + kAlignment - 1) / kAlignment * kAlignment;
  }
}

}  // namespace

std::string TestExpertFile(int layer, int expert) {
  return absl::StrFormat("experts/block%02d_expert%03d.safetensors", layer,
                         expert);
}

uint8_t TestTensorByte(const std::string& name, uint64_t i) {
  uint32_t hash = 2166136261u;  // FNV-1a: stable across platforms.
  for (const char c : name) hash = (hash ^ static_cast<uint8_t>(c)) * 16777619u;
  return static_cast<uint8_t>((hash >> 8) + i * 7);
}

std::string TestFileBytes(const pb::Manifest& manifest,
                          const std::string& path) {
  uint64_t end = 0;
  for (const pb::TensorEntry& t : manifest.tensors()) {
    if (t.file() == path)
      end = std::max(end, t.offset_bytes() + t.size_bytes());
  }
  std::string bytes(end, '\0');
  for (const pb::TensorEntry& t : manifest.tensors()) {
    if (t.file() != path) continue;
    for (uint64_t i = 0; i < t.size_bytes(); ++i) {
      bytes[t.offset_bytes() + i] =
          static_cast<char>(TestTensorByte(t.name(), i));
    }
  }
  return bytes;
}

pb::Manifest MakeTestManifest(const TestModelSpec& spec) {
  pb::Manifest m;
  m.set_format_version(1);
  m.set_name("test-vmoe");
  m.set_description("synthetic bytes: for tests only");
  SetArchitecture(spec, m.mutable_architecture());
  if (spec.precision != "float32") m.set_precision(spec.precision);
  LayOut(Rows(spec), &m);
  for (pb::FileEntry& file : *m.mutable_files()) {
    const std::string bytes = TestFileBytes(m, file.path());
    file.set_size_bytes(bytes.size());
    file.set_sha256(Sha256Hex(bytes.data(), bytes.size()));
  }
  return m;
}

std::string ManifestToJson(const pb::Manifest& manifest) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string json;
  google::protobuf::util::MessageToJsonString(manifest, &json, options);
  return json;
}

absl::Status WriteTestModel(const std::string& dir,
                            const pb::Manifest& manifest) {
  std::set<std::string> contents = {"manifest.json"};
  for (const pb::FileEntry& file : manifest.files())
    contents.insert(file.path());
  for (const std::string& name : contents) {
    const std::string path = dir + "/" + name;
    std::error_code error;
    std::filesystem::create_directories(
        std::filesystem::path(path).parent_path(), error);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::string bytes = name == "manifest.json"
                                  ? ManifestToJson(manifest)
                                  : TestFileBytes(manifest, name);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good()) return absl::InternalError("cannot write " + path);
  }
  return absl::OkStatus();
}

}  // namespace test_support
}  // namespace edge
