#include "server/config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/vmoe_engine.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "server/config_options.h"

namespace edge {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Reflection;

// By proto name (snake_case) or JSON name (lowerCamelCase).
const FieldDescriptor* FindField(absl::string_view name) {
  const auto* d = ServerConfig::descriptor();
  if (const auto* f = d->FindFieldByName(std::string(name))) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == name) return d->field(i);
  }
  return nullptr;
}

absl::Status SetFromText(const FieldDescriptor* f, absl::string_view text,
                         ServerConfig* config) {
  const Reflection* r = config->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      r->SetString(config, f, std::string(text));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v;
      if (!absl::SimpleAtoi(text, &v)) break;
      r->SetInt32(config, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v;
      if (!absl::SimpleAtoi(text, &v)) break;
      r->SetInt64(config, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v;
      if (!absl::SimpleAtoi(text, &v)) break;
      r->SetUInt32(config, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v;
      if (!absl::SimpleAtoi(text, &v)) break;
      r->SetUInt64(config, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v;
      if (!absl::SimpleAtod(text, &v)) break;
      r->SetDouble(config, f, v);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v;
      if (!absl::SimpleAtob(text, &v)) break;
      r->SetBool(config, f, v);
      return absl::OkStatus();
    }
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cannot parse '", text, "' as ", f->cpp_type_name()));
}

// JSON numbers arrive as doubles. Integral values are written out exactly
// (StrCat would round 16777216 to 6 digits); others keep full precision, so
// an integral field rejects "1.5" when it parses the text.
std::string NumberText(double v) {
  constexpr double kExactIntegers = 9007199254740992.0;  // 2^53
  if (std::trunc(v) == v && std::fabs(v) < kExactIntegers) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  return absl::StrFormat("%.17g", v);
}

// The adaptive sizing fields (AdaptivePolicyOptions' rules, checked here to
// name the fields).
absl::Status ValidateCacheSizing(const ServerConfig& c) {
  if (c.cache_min_bytes() > 0 && c.cache_budget_bytes() == 0) {
    return InvalidArgument(
        "cache_min_bytes needs a cache_budget_bytes (an unbounded ",
        "cache is not sized)");
  }
  if (c.cache_min_bytes() > c.cache_budget_bytes()) {
    return InvalidArgument("cache_min_bytes (", c.cache_min_bytes(),
                           ") must be <= cache_budget_bytes (",
                           c.cache_budget_bytes(), ")");
  }
  if (!(c.cache_grow_below() >= 0 && c.cache_grow_below() <= 1) ||
      !(c.cache_shrink_above() >= 0 && c.cache_shrink_above() <= 1)) {
    return InvalidArgument(
        "cache_grow_below and cache_shrink_above must be in [0, 1]", ", got ",
        c.cache_grow_below(), " and ", c.cache_shrink_above());
  }
  if (c.cache_grow_below() > c.cache_shrink_above()) {
    return InvalidArgument("cache_grow_below (", c.cache_grow_below(),
                           ") must be <= cache_shrink_above (",
                           c.cache_shrink_above(), ")");
  }
  // 2^20: at a few hundred accesses a second that is most of an hour of
  // traffic, far too long to follow drift.
  constexpr int kMaxWindow = 1 << 20;
  for (const auto& [name, value] :
       {std::pair<const char*, int>{"cache_window_accesses",
                                    c.cache_window_accesses()},
        {"cache_resize_interval_accesses",
         c.cache_resize_interval_accesses()}}) {
    if (value < 1 || value > kMaxWindow) {
      return InvalidArgument(name, " must be in [1, ", kMaxWindow, "], got ",
                             value);
    }
  }
  return absl::OkStatus();
}

// The expert cache's other fields: prefetch, failure policy, profile.
absl::Status ValidateExpertCacheConfig(const ServerConfig& c) {
  RETURN_IF_ERROR(ValidateCacheSizing(c));
  if (c.prefetch_threads() < 0 || c.prefetch_threads() > 64) {
    return InvalidArgument("prefetch_threads must be in [0, 64], got ",
                           c.prefetch_threads());
  }
  if (c.expert_failure_policy() != "fail" &&
      c.expert_failure_policy() != "reroute") {
    return InvalidArgument(
        "expert_failure_policy must be \"fail\" or \"reroute\", ", "got \"",
        c.expert_failure_policy(), "\"");
  }
  if (c.cache_profile_interval_s() < 0) {
    return InvalidArgument("cache_profile_interval_s must be >= 0, got ",
                           c.cache_profile_interval_s());
  }
  return absl::OkStatus();
}

}  // namespace

ServerConfig DefaultServerConfig() {
  ServerConfig config;
  const auto* d = ServerConfig::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string& value =
        f->options().GetExtension(gateway::v1::default_value);
    // Schema defaults are compile-time constants; a bad one is a bug that
    // the config tests catch.
    if (!value.empty()) SetFromText(f, value, &config).IgnoreError();
  }
  return config;
}

absl::Status SetConfigField(absl::string_view name, absl::string_view value,
                            absl::string_view source, ServerConfig* config) {
  const FieldDescriptor* f = FindField(name);
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": unknown configuration field '", name, "' (see --help)"));
  }
  absl::Status s = SetFromText(f, value, config);
  if (!s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field ", name, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status ApplyConfigFile(const std::string& path, ServerConfig* config) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read config file " + path);
  std::stringstream text;
  text << in.rdbuf();
  // Parsed as a Struct, not straight into ServerConfig: proto3 JSON cannot
  // tell an absent field from one set to zero, and "cache_profile_interval_s":
  // 0 must override the default.
  google::protobuf::Struct root;
  auto status = google::protobuf::util::JsonStringToMessage(text.str(), &root);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": ", status.message().as_string()));
  }
  const std::string source = "config file " + path;
  for (const auto& [key, value] : root.fields()) {
    const FieldDescriptor* f = FindField(key);
    const std::string name = f != nullptr ? f->name() : key;
    std::string text_value;
    switch (value.kind_case()) {
      case google::protobuf::Value::kStringValue:
        text_value = value.string_value();
        break;
      case google::protobuf::Value::kBoolValue:
        text_value = value.bool_value() ? "true" : "false";
        break;
      case google::protobuf::Value::kNumberValue:
        text_value = NumberText(value.number_value());
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            source, ": field ", key, " must be a string, number or bool"));
    }
    RETURN_IF_ERROR(SetConfigField(name, text_value, source, config));
  }
  return absl::OkStatus();
}

absl::Status ApplyEnvironment(
    const std::function<const char*(const char*)>& getenv,
    ServerConfig* config) {
  const auto* d = ServerConfig::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const std::string name = d->field(i)->name();
    const std::string var =
        absl::StrCat("EDGE_GATEWAY_", absl::AsciiStrToUpper(name));
    if (const char* value = getenv(var.c_str()); value != nullptr) {
      RETURN_IF_ERROR(SetConfigField(name, value, var, config));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateServerConfig(const ServerConfig& c) {
  auto invalid = [](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(parts...));
  };
  if (c.model_dir().empty()) return invalid("model_dir is required");
  if (c.listen_address().empty()) return invalid("listen_address is empty");
  if (c.max_batch_size() < 1 || c.max_batch_size() > kMaxBatchSize) {
    return invalid("max_batch_size must be in [1, ", kMaxBatchSize, "], got ",
                   c.max_batch_size());
  }
  if (c.max_queue_delay_us() < 0) {
    return invalid("max_queue_delay_us must be >= 0, got ",
                   c.max_queue_delay_us());
  }
  if (c.max_queue_size() < c.max_batch_size()) {
    return invalid("max_queue_size (", c.max_queue_size(),
                   ") must be >= max_batch_size (", c.max_batch_size(), ")");
  }
  if (c.decode_threads() < 1 || c.decode_threads() > 64) {
    return invalid("decode_threads must be in [1, 64], got ",
                   c.decode_threads());
  }
  if (c.max_image_bytes() == 0) return invalid("max_image_bytes must be > 0");
  if (c.max_image_pixels() == 0) return invalid("max_image_pixels must be > 0");
  if (c.max_top_k() == 0) return invalid("max_top_k must be > 0");
  if (c.drain_timeout_ms() < 0) return invalid("drain_timeout_ms must be >= 0");
  if (c.warmup_batches() < 0) return invalid("warmup_batches must be >= 0");
  if (c.max_connection_age_ms() < 0) {
    return invalid("max_connection_age_ms must be >= 0, got ",
                   c.max_connection_age_ms());
  }
  if (c.max_stream_age_ms() < 0) {
    return invalid("max_stream_age_ms must be >= 0, got ",
                   c.max_stream_age_ms());
  }
  // compute_dtype, parsed where it is used.
  RETURN_IF_ERROR(EngineOptionsFrom(c, /*cache_budget_bytes=*/0).status());
  if (c.engine_spin_count() < -1) {
    return invalid("engine_spin_count must be >= -1, got ",
                   c.engine_spin_count());
  }
  if (c.engine_threads() < 0 || c.engine_threads() > 1024) {
    return invalid("engine_threads must be in [0, 1024], got ",
                   c.engine_threads());
  }
  if (c.tls_cert_file().empty() != c.tls_key_file().empty()) {
    return invalid("tls_cert_file and tls_key_file must be set together");
  }
  if (!c.tls_client_ca_file().empty() && c.tls_cert_file().empty()) {
    return invalid(
        "tls_client_ca_file (mutual TLS) needs tls_cert_file and "
        "tls_key_file");
  }
  RETURN_IF_ERROR(ValidateExpertCacheConfig(c));
  return absl::OkStatus();
}

std::string ServerConfigHelp() {
  std::string out;
  const auto* d = ServerConfig::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    const std::string& def =
        f->options().GetExtension(gateway::v1::default_value);
    absl::StrAppend(&out, "  --", f->name(), "=", def.empty() ? "\"\"" : def,
                    "\n      ", f->options().GetExtension(gateway::v1::help),
                    "\n      (env EDGE_GATEWAY_",
                    absl::AsciiStrToUpper(f->name()), ")\n");
  }
  return out;
}

}  // namespace edge
