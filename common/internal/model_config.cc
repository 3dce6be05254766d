#include "common/internal/model_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace edge {
namespace {

namespace pb = ::edge::model::v1;

absl::Status CheckRange(const char* field, int value, int max) {
  if (value < 1 || value > max) {
    return InvalidArgument("architecture.", field, " must be in [1, ", max,
                           "], got ", value);
  }
  return absl::OkStatus();
}

absl::Status CheckSizes(const pb::Architecture& a) {
  const struct {
    const char* field;
    int value;
    int max;
  } sizes[] = {{"image_size", a.image_size(), kMaxImageSize},
               {"patch_size", a.patch_size(), kMaxImageSize},
               {"dim", a.dim(), kMaxDim},
               {"depth", a.depth(), kMaxDepth},
               {"heads", a.heads(), kMaxDim},
               {"mlp_dim", a.mlp_dim(), kMaxDim},
               {"num_classes", a.num_classes(), kMaxClasses}};
  for (const auto& size : sizes) {
    RETURN_IF_ERROR(CheckRange(size.field, size.value, size.max));
  }
  if (a.image_size() % a.patch_size() != 0) {
    return InvalidArgument("architecture.patch_size ", a.patch_size(),
                           " does not divide image_size ", a.image_size());
  }
  if (a.dim() % a.heads() != 0) {
    return InvalidArgument("architecture.heads ", a.heads(),
                           " does not divide dim ", a.dim());
  }
  const int64_t grid = a.image_size() / a.patch_size();
  const int64_t tokens = grid * grid + (a.class_token() ? 1 : 0);
  if (tokens > kMaxTokens) {
    return InvalidArgument("architecture: image_size ", a.image_size(),
                           " / patch_size ", a.patch_size(), " gives ", tokens,
                           " tokens, more than ", kMaxTokens);
  }
  return absl::OkStatus();
}

// Sorted, unique, each in [0, depth).
absl::StatusOr<std::vector<int>> MoeLayers(const pb::MoeConfig& m, int depth) {
  std::vector<int> layers(m.layers().begin(), m.layers().end());
  std::sort(layers.begin(), layers.end());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= depth) {
      return InvalidArgument("architecture.moe.layers entry ", layers[i],
                             " is outside [0, depth ", depth, ")");
    }
    if (i > 0 && layers[i] == layers[i - 1]) {
      return InvalidArgument("architecture.moe.layers lists block ", layers[i],
                             " twice");
    }
  }
  return layers;
}

absl::Status CheckExpertCounts(const MoeSpec& moe) {
  if (moe.layers.empty()) {
    // A dense model; experts without layers is a mistake, not a default.
    if (moe.num_experts != 0 || moe.top_k != 0) {
      return InvalidArgument("architecture.moe.num_experts ", moe.num_experts,
                             " and top_k ", moe.top_k,
                             " are set but moe.layers is empty");
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(CheckRange("moe.num_experts", moe.num_experts, kMaxExperts));
  if (moe.top_k < 1 || moe.top_k > moe.num_experts) {
    return InvalidArgument("architecture.moe.top_k must be in [1, num_experts ",
                           moe.num_experts, "], got ", moe.top_k);
  }
  return absl::OkStatus();
}

absl::StatusOr<MoeSpec> BuildMoe(const pb::MoeConfig& m, int depth) {
  MoeSpec moe;
  ASSIGN_OR_RETURN(moe.layers, MoeLayers(m, depth));
  moe.num_experts = m.num_experts();
  moe.top_k = m.top_k();
  RETURN_IF_ERROR(CheckExpertCounts(moe));
  const std::string routing = m.has_routing() ? m.routing() : "image";
  if (routing != "image" && routing != "token") {
    return InvalidArgument("architecture.moe.routing \"", routing,
                           "\" must be \"image\" or \"token\"");
  }
  moe.routing = routing == "image" ? Routing::kImage : Routing::kToken;
  if (m.has_renormalize()) moe.renormalize = m.renormalize();
  if (m.has_batch_priority()) moe.batch_priority = m.batch_priority();
  if (m.has_capacity_factor()) moe.capacity_factor = m.capacity_factor();
  // JSON may spell "NaN" or "Infinity" for a float field.
  if (!std::isfinite(moe.capacity_factor) || moe.capacity_factor <= 0) {
    return InvalidArgument(
        "architecture.moe.capacity_factor must be positive, got ",
        moe.capacity_factor);
  }
  return moe;
}

absl::StatusOr<Pooling> BuildPooling(const pb::Architecture& a) {
  const std::string pool = a.has_global_pool() ? a.global_pool() : "avg";
  if (pool != "avg" && pool != "token") {
    return InvalidArgument("architecture.global_pool \"", pool,
                           "\" must be \"avg\" or \"token\"");
  }
  if (pool == "token" && !a.class_token()) {
    return InvalidArgument(
        "architecture.global_pool \"token\" needs class_token: true");
  }
  return pool == "avg" ? Pooling::kAvg : Pooling::kToken;
}

// ceil(numerator * factor / denominator), at most `limit`, computed exactly
// on the decimal the manifest wrote. The factor arrives as a float, so the
// manifest's 1.1 is 1.10000002 and ceil(1 * 10 * 1.1 / 11) would come out 2,
// not 1; even double arithmetic on 1.1 gives 7 * 10 * 1.1 = 77.00000000000001.
// The shortest decimal that round-trips the float is what was written (and
// what tools/model/vmoe_reference.py computes with), so this works on that
// decimal in integers. REQUIRES: numerator, denominator, factor > 0;
// numerator <= kMaxExperts * kMaxTokens and denominator <= kMaxExperts, so no
// overflow.
int64_t CeilOfScaledRatio(int64_t numerator, int64_t denominator, float factor,
                          int64_t limit) {
  char text[32];  // "d.dddddddde-xx": at most 9 digits for a float
  const char* end = std::to_chars(text, text + sizeof(text), factor,
                                  std::chars_format::scientific)
                        .ptr;
  unsigned __int128 mantissa = 0;
  int scale = 0;  // factor == mantissa * 10^scale
  const char* p = text;
  for (bool after_point = false; *p != 'e'; ++p) {
    if (*p == '.') {
      after_point = true;
      continue;
    }
    mantissa = mantissa * 10 + (*p - '0');
    if (after_point) --scale;
  }
  int exponent = 0;
  std::from_chars(p + (p[1] == '+' ? 2 : 1), end, exponent);
  scale += exponent;
  // Beyond these the answer is `limit` (factor >= 1e13) or 1 (factor <
  // 1e-21), and the powers of ten below would overflow.
  if (scale > 12) return limit;
  if (scale < -30) return std::min<int64_t>(1, limit);
  unsigned __int128 num = mantissa * static_cast<uint64_t>(numerator);
  unsigned __int128 den = static_cast<uint64_t>(denominator);
  for (int i = 0; i < scale; ++i) num *= 10;
  for (int i = 0; i < -scale; ++i) den *= 10;
  const unsigned __int128 result = (num + den - 1) / den;
  return result > static_cast<uint64_t>(limit) ? limit
                                               : static_cast<int64_t>(result);
}

}  // namespace

namespace internal {

absl::StatusOr<ModelConfig> BuildModelConfig(const pb::Manifest& manifest) {
  if (!manifest.has_architecture())
    return InvalidArgument("architecture is required");
  const pb::Architecture& a = manifest.architecture();
  RETURN_IF_ERROR(CheckSizes(a));
  ModelConfig c;
  c.image_size = a.image_size();
  c.patch_size = a.patch_size();
  c.dim = a.dim();
  c.depth = a.depth();
  c.heads = a.heads();
  c.mlp_dim = a.mlp_dim();
  c.num_classes = a.num_classes();
  if (a.has_norm_eps()) c.norm_eps = a.norm_eps();
  if (!std::isfinite(c.norm_eps) || c.norm_eps <= 0) {
    return InvalidArgument("architecture.norm_eps must be positive, got ",
                           c.norm_eps);
  }
  c.class_token = a.class_token();
  ASSIGN_OR_RETURN(c.global_pool, BuildPooling(a));
  ASSIGN_OR_RETURN(c.moe, BuildMoe(a.moe(), c.depth));
  return c;
}

}  // namespace internal

bool MoeSpec::IsMoeLayer(int block) const {
  return std::binary_search(layers.begin(), layers.end(), block);
}

int ModelConfig::expert_capacity() const {
  if (moe.num_experts <= 0 || moe.top_k <= 0) return 0;
  if (!std::isfinite(moe.capacity_factor) || moe.capacity_factor <= 0) {
    return 0;
  }
  // An expert receives at most one assignment per token (a token's k choices
  // are distinct), so any capacity above T behaves as T.
  return static_cast<int>(CeilOfScaledRatio(int64_t{moe.top_k} * num_tokens(),
                                            moe.num_experts,
                                            moe.capacity_factor, num_tokens()));
}

const char* ModelConfig::routing_name() const {
  if (moe.layers.empty()) return "dense";
  return moe.routing == Routing::kImage ? "image" : "token";
}

}  // namespace edge
