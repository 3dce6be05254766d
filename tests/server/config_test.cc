#include "server/config.h"

#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "cache/usage_profile.h"
#include "engine/vmoe_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config_options.h"
#include "tests/testing/temp_dir.h"

namespace edge {
namespace {

using test_support::TempDir;
using test_support::WriteFileOrDie;
using ::testing::HasSubstr;

TEST(ServerConfigTest, DefaultsComeFromTheSchema) {
  const ServerConfig c = DefaultServerConfig();
  EXPECT_EQ(c.listen_address(), "127.0.0.1:50051");
  EXPECT_EQ(c.metrics_address(), "127.0.0.1:9464");
  EXPECT_EQ(c.max_batch_size(), 16);
  EXPECT_EQ(c.max_queue_delay_us(), 0);
  EXPECT_EQ(c.max_queue_size(), 64);
  EXPECT_EQ(c.max_image_bytes(), 16u << 20);
  EXPECT_EQ(c.decode_threads(), 2);
  EXPECT_EQ(c.memory_limit_bytes(), 0u);  // the cgroup's, else half of RAM
  EXPECT_EQ(c.engine_spin_count(), 1000);
  EXPECT_EQ(c.model_dir(), "");
}

TEST(ServerConfigTest, FileOverridesOnlyWhatItNamesIncludingZeros) {
  TempDir tmp;
  const std::string path = tmp.Join("gateway.json");
  WriteFileOrDie(path, R"({"model_dir": "/m", "cache_profile_interval_s": 0,
                           "max_queue_delay_us": 500,
                           "maxBatchSize": 8, "max_image_bytes": 16777217})");
  ServerConfig c = DefaultServerConfig();
  ASSERT_TRUE(ApplyConfigFile(path, &c).ok());
  EXPECT_EQ(c.model_dir(), "/m");
  EXPECT_EQ(c.cache_profile_interval_s(), 0);  // zero overrides the default.
  EXPECT_EQ(c.max_queue_delay_us(), 500);
  EXPECT_EQ(c.max_batch_size(), 8);           // lowerCamelCase works too.
  EXPECT_EQ(c.max_image_bytes(), 16777217u);  // exact, not rounded.
  EXPECT_EQ(c.max_queue_size(), 64);          // untouched.
}

TEST(ServerConfigTest, FileErrorsNameTheFieldOrProblem) {
  TempDir tmp;
  const std::string path = tmp.Join("gateway.json");
  ServerConfig c = DefaultServerConfig();
  WriteFileOrDie(path, R"({"max_batch_sise": 8})");
  EXPECT_THAT(ApplyConfigFile(path, &c).message(),
              HasSubstr("unknown configuration field 'max_batch_sise'"));
  WriteFileOrDie(path, R"({"max_batch_size": 1.5})");
  EXPECT_THAT(ApplyConfigFile(path, &c).message(), HasSubstr("max_batch_size"));
  WriteFileOrDie(path, R"({"max_batch_size": [8]})");
  EXPECT_THAT(ApplyConfigFile(path, &c).message(),
              HasSubstr("must be a string, number or bool"));
  WriteFileOrDie(path, "{not json");
  EXPECT_THAT(ApplyConfigFile(path, &c).message(), HasSubstr(path));
  EXPECT_EQ(ApplyConfigFile(tmp.Join("missing.json"), &c).code(),
            absl::StatusCode::kNotFound);
}

TEST(ServerConfigTest, EnvironmentUsesUpperCaseFieldNames) {
  const std::map<std::string, std::string> env{
      {"EDGE_GATEWAY_MAX_BATCH_SIZE", "4"},
      {"EDGE_GATEWAY_LISTEN_ADDRESS", "0.0.0.0:1234"}};
  auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  ServerConfig c = DefaultServerConfig();
  ASSERT_TRUE(ApplyEnvironment(getenv, &c).ok());
  EXPECT_EQ(c.max_batch_size(), 4);
  EXPECT_EQ(c.listen_address(), "0.0.0.0:1234");
}

TEST(ServerConfigTest, BadEnvironmentValueNamesTheVariable) {
  auto getenv = [](const char* name) -> const char* {
    return std::string(name) == "EDGE_GATEWAY_MAX_QUEUE_SIZE" ? "lots"
                                                              : nullptr;
  };
  ServerConfig c = DefaultServerConfig();
  const absl::Status s = ApplyEnvironment(getenv, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("EDGE_GATEWAY_MAX_QUEUE_SIZE"));
  EXPECT_THAT(s.message(), HasSubstr("lots"));
}

TEST(ServerConfigTest, SetFieldParsesTypesAndRejectsUnknownNames) {
  ServerConfig c = DefaultServerConfig();
  ASSERT_TRUE(
      SetConfigField("cache_budget_bytes", "1073741824", "flag", &c).ok());
  EXPECT_EQ(c.cache_budget_bytes(), 1073741824u);
  EXPECT_FALSE(SetConfigField("cache_budget_bytes", "-1", "flag", &c).ok());
  EXPECT_THAT(SetConfigField("nope", "1", "flag --nope", &c).message(),
              HasSubstr("flag --nope: unknown configuration field 'nope'"));
}

TEST(ServerConfigTest, ValidationNamesTheField) {
  ServerConfig c = DefaultServerConfig();
  EXPECT_THAT(ValidateServerConfig(c).message(), HasSubstr("model_dir"));
  c.set_model_dir("/m");
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.set_max_batch_size(0);
  EXPECT_THAT(ValidateServerConfig(c).message(), HasSubstr("max_batch_size"));
  c = DefaultServerConfig();
  c.set_model_dir("/m");
  c.set_max_queue_size(4);
  EXPECT_THAT(ValidateServerConfig(c).message(), HasSubstr("max_queue_size"));
}

TEST(ServerConfigTest, EngineSpinCountIsChecked) {
  ServerConfig c = DefaultServerConfig();
  c.set_model_dir("/m");
  ASSERT_TRUE(SetConfigField("engine_spin_count", "-1", "flag", &c).ok());
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  ASSERT_TRUE(SetConfigField("engine_spin_count", "-2", "flag", &c).ok());
  EXPECT_THAT(ValidateServerConfig(c).message(),
              HasSubstr("engine_spin_count must be >= -1"));
}

TEST(ServerConfigTest, ComputeDtypeAndEngineThreadsAreChecked) {
  ServerConfig c = DefaultServerConfig();
  c.set_model_dir("/m");
  EXPECT_EQ(c.compute_dtype(), "f32");
  EXPECT_EQ(c.engine_threads(), 0);
  for (const char* ok : {"f32", "float32", "bf16", "bfloat16"}) {
    ASSERT_TRUE(SetConfigField("compute_dtype", ok, "flag", &c).ok());
    EXPECT_TRUE(ValidateServerConfig(c).ok()) << ok;
  }
  ASSERT_TRUE(SetConfigField("compute_dtype", "fp16", "flag", &c).ok());
  EXPECT_THAT(ValidateServerConfig(c).message(),
              HasSubstr("compute_dtype: compute dtype \"fp16\" must be"));
  c.set_compute_dtype("bf16");
  ASSERT_TRUE(SetConfigField("engine_threads", "2", "flag", &c).ok());
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.set_engine_threads(-1);
  EXPECT_THAT(ValidateServerConfig(c).message(), HasSubstr("engine_threads"));
}

TEST(ServerConfigTest, TlsFilesComeInPairsAndMutualTlsNeedsThem) {
  ServerConfig c = DefaultServerConfig();
  c.set_model_dir("/m");
  // A single box has no replica to move clients to: neither age is set.
  EXPECT_EQ(c.max_connection_age_ms(), 0);
  EXPECT_EQ(c.max_stream_age_ms(), 0);
  c.set_tls_cert_file("server.crt");
  EXPECT_THAT(ValidateServerConfig(c).message(), HasSubstr("tls_key_file"));
  c.set_tls_key_file("server.key");
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.set_tls_client_ca_file("ca.crt");
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.clear_tls_cert_file();
  c.clear_tls_key_file();
  EXPECT_THAT(ValidateServerConfig(c).message(),
              HasSubstr("tls_client_ca_file"));
  c = DefaultServerConfig();
  c.set_model_dir("/m");
  c.set_max_connection_age_ms(-1);
  EXPECT_THAT(ValidateServerConfig(c).message(),
              HasSubstr("max_connection_age_ms"));
  c.set_max_connection_age_ms(300000);
  ASSERT_TRUE(SetConfigField("max_stream_age_ms", "300000", "flag", &c).ok());
  EXPECT_TRUE(ValidateServerConfig(c).ok());
  c.set_max_stream_age_ms(-1);
  EXPECT_THAT(ValidateServerConfig(c).message(),
              HasSubstr("max_stream_age_ms must be >= 0"));
}

TEST(ServerConfigTest, ExpertCacheFieldsDefaultParseAndValidate) {
  ServerConfig c = DefaultServerConfig();
  c.set_model_dir("/m");
  // The numeric defaults are the components' own (ComponentOptionsTest).
  EXPECT_EQ(c.expert_failure_policy(), "fail");
  EXPECT_EQ(c.cache_profile(), "");
  EXPECT_EQ(c.cache_profile_interval_s(), 60);
  EXPECT_EQ(c.expert_trace_file(), "");
  ASSERT_TRUE(SetConfigField("cache_grow_below", "0.25", "flag", &c).ok());
  EXPECT_EQ(c.cache_grow_below(), 0.25);
  EXPECT_FALSE(SetConfigField("cache_grow_below", "half", "flag", &c).ok());
  ASSERT_TRUE(SetConfigField("prefetch_next_layer", "false", "flag", &c).ok());
  EXPECT_FALSE(c.prefetch_next_layer());
  ASSERT_TRUE(
      SetConfigField("expert_failure_policy", "reroute", "flag", &c).ok());
  EXPECT_TRUE(ValidateServerConfig(c).ok());
}

TEST(ServerConfigTest, ExpertCacheFileFieldsIncludingDoubles) {
  TempDir tmp;
  const std::string path = tmp.Join("gateway.json");
  WriteFileOrDie(path, R"({"cache_shrink_above": 0.95, "cacheGrowBelow": 0,
                           "cache_profile": "/var/lib/edge/profile.csv",
                           "prefetch_threads": 0})");
  ServerConfig c = DefaultServerConfig();
  ASSERT_TRUE(ApplyConfigFile(path, &c).ok());
  EXPECT_EQ(c.cache_shrink_above(), 0.95);
  EXPECT_EQ(c.cache_grow_below(), 0);
  EXPECT_EQ(c.cache_profile(), "/var/lib/edge/profile.csv");
  EXPECT_EQ(c.prefetch_threads(), 0);
}

// Each bad value is INVALID_ARGUMENT and the message names the field.
TEST(ServerConfigTest, ExpertCacheValidationNamesTheField) {
  const std::vector<std::pair<std::function<void(ServerConfig*)>, std::string>>
      cases = {
          {[](ServerConfig* c) { c->set_cache_min_bytes(1); },
           "cache_min_bytes needs a cache_budget_bytes"},
          {[](ServerConfig* c) {
             c->set_cache_budget_bytes(100);
             c->set_cache_min_bytes(101);
           },
           "cache_min_bytes (101) must be <= cache_budget_bytes (100)"},
          {[](ServerConfig* c) { c->set_cache_grow_below(1.5); },
           "cache_grow_below"},
          {[](ServerConfig* c) { c->set_cache_shrink_above(-0.1); },
           "cache_shrink_above"},
          {[](ServerConfig* c) {
             c->set_cache_grow_below(0.8);
             c->set_cache_shrink_above(0.7);
           },
           "cache_grow_below (0.8) must be <= cache_shrink_above (0.7)"},
          {[](ServerConfig* c) { c->set_cache_window_accesses(0); },
           "cache_window_accesses must be in [1, 1048576], got 0"},
          {[](ServerConfig* c) {
             c->set_cache_resize_interval_accesses(1 << 21);
           },
           "cache_resize_interval_accesses"},
          {[](ServerConfig* c) { c->set_prefetch_threads(-1); },
           "prefetch_threads"},
          {[](ServerConfig* c) { c->set_expert_failure_policy("Reroute"); },
           "expert_failure_policy must be \"fail\" or \"reroute\", got "
           "\"Reroute\""},
          {[](ServerConfig* c) { c->set_cache_profile_interval_s(-5); },
           "cache_profile_interval_s"},
      };
  for (const auto& [mutate, want] : cases) {
    ServerConfig c = DefaultServerConfig();
    c.set_model_dir("/m");
    mutate(&c);
    const absl::Status s = ValidateServerConfig(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << want;
    EXPECT_THAT(s.message(), HasSubstr(want));
  }
  ServerConfig sized = DefaultServerConfig();
  sized.set_model_dir("/m");
  sized.set_cache_budget_bytes(100);
  sized.set_cache_min_bytes(100);
  EXPECT_TRUE(ValidateServerConfig(sized).ok());
}

TEST(ServerConfigTest, HelpListsEveryFieldWithDefaultAndVariable) {
  const std::string help = ServerConfigHelp();
  const auto* d = ServerConfig::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    EXPECT_THAT(help, HasSubstr("--" + d->field(i)->name() + "="));
  }
  EXPECT_THAT(help, HasSubstr("--max_batch_size=16"));
  EXPECT_THAT(help, HasSubstr("EDGE_GATEWAY_MAX_BATCH_SIZE"));
}

// The gateway's configuration as it starts with no settings but the
// required model_dir.
ServerConfig DefaultGatewayConfig() {
  ServerConfig c = DefaultServerConfig();
  c.set_model_dir("/m");
  return c;
}

// Every schema default equals the component's own default, field by field:
// a component built without a configuration (tests, tools) behaves as in a
// default gateway.
TEST(ComponentOptionsTest, DefaultConfigGivesThePipelineItsDefaults) {
  const InferencePipelineOptions got =
      PipelineOptionsFrom(DefaultGatewayConfig());
  const InferencePipelineOptions want;
  EXPECT_EQ(got.batcher.max_batch_size, want.batcher.max_batch_size);
  EXPECT_EQ(got.batcher.max_queue_delay_us, want.batcher.max_queue_delay_us);
  EXPECT_EQ(got.max_queue_size, want.max_queue_size);
  EXPECT_EQ(got.decode_threads, want.decode_threads);
  EXPECT_EQ(got.max_top_k, want.max_top_k);
  EXPECT_EQ(got.default_top_k, want.default_top_k);
}

TEST(ComponentOptionsTest, DefaultConfigGivesTheCacheAndEngineTheirDefaults) {
  const ServerConfig c = DefaultGatewayConfig();
  // A model whose experts fit in half the limit: unbounded, the default.
  const uint64_t budget = CacheBudgetBytesFrom(c, 1 << 30, 1 << 20);
  const absl::StatusOr<EngineOptions> got = EngineOptionsFrom(c, budget);
  ASSERT_TRUE(got.ok()) << got.status();
  const EngineOptions want;
  EXPECT_EQ(got->compute_dtype, want.compute_dtype);
  EXPECT_EQ(got->num_threads, want.num_threads);
  EXPECT_EQ(got->expert_failure_policy, want.expert_failure_policy);
  EXPECT_EQ(got->prefetch_next_layer, want.prefetch_next_layer);
  // The one exception: an engine built without a configuration accepts
  // the largest batch a gateway may be configured for.
  EXPECT_EQ(got->max_batch_size, c.max_batch_size());
  EXPECT_EQ(want.max_batch_size, kMaxBatchSize);

  const ExpertCacheOptions& cache = got->cache;
  EXPECT_EQ(cache.budget_bytes, want.cache.budget_bytes);
  EXPECT_EQ(cache.policy.min_bytes, want.cache.policy.min_bytes);
  EXPECT_EQ(cache.policy.grow_below, want.cache.policy.grow_below);
  EXPECT_EQ(cache.policy.shrink_above, want.cache.policy.shrink_above);
  EXPECT_EQ(cache.policy.window_accesses, want.cache.policy.window_accesses);
  EXPECT_EQ(cache.policy.resize_interval_accesses,
            want.cache.policy.resize_interval_accesses);
  EXPECT_EQ(cache.prefetch_threads, want.cache.prefetch_threads);
  // The usage profile's recorder takes its interval from the field too.
  EXPECT_EQ(absl::Seconds(c.cache_profile_interval_s()),
            UsageProfileRecorderOptions().interval);
}

TEST(ComponentOptionsTest, DefaultConfigGivesTheServingSideItsDefaults) {
  const ServerConfig c = DefaultGatewayConfig();
  const ModelManifest model;  // the model's fields are not the schema's.
  const ImageDecoderOptions decoder = DecoderOptionsFrom(c, model);
  EXPECT_EQ(decoder.max_encoded_bytes, ImageDecoderOptions().max_encoded_bytes);
  EXPECT_EQ(decoder.max_pixels, ImageDecoderOptions().max_pixels);

  const GatewayMetricsOptions metrics = MetricsOptionsFrom(c, model, "");
  EXPECT_EQ(metrics.listen_address, GatewayMetricsOptions().listen_address);

  const GatewayServiceOptions service = ServiceOptionsFrom(c, 0);
  EXPECT_EQ(service.max_batch_size, GatewayServiceOptions().max_batch_size);
  EXPECT_EQ(service.cache_budget_bytes,
            GatewayServiceOptions().cache_budget_bytes);
  EXPECT_EQ(service.max_stream_age_ms,
            GatewayServiceOptions().max_stream_age_ms);

  const GrpcServerOptions grpc = GrpcServerOptionsFrom(c, 512 << 20);
  EXPECT_EQ(grpc.listen_address, GrpcServerOptions().listen_address);
  EXPECT_EQ(grpc.max_connection_age_ms,
            GrpcServerOptions().max_connection_age_ms);
  EXPECT_EQ(grpc.max_connection_age_grace_ms,
            GrpcServerOptions().max_connection_age_grace_ms);
}

TEST(ComponentOptionsTest, EachFieldLandsInItsComponentsField) {
  ServerConfig c = DefaultGatewayConfig();
  c.set_max_batch_size(8);
  c.set_max_queue_delay_us(500);
  c.set_max_queue_size(32);
  c.set_decode_threads(3);
  c.set_max_top_k(7);
  c.set_cache_budget_bytes(4096);
  c.set_cache_min_bytes(100);
  c.set_cache_grow_below(0.5);
  c.set_cache_shrink_above(0.75);
  c.set_cache_window_accesses(64);
  c.set_cache_resize_interval_accesses(32);
  c.set_prefetch_threads(2);
  c.set_prefetch_next_layer(false);
  c.set_expert_failure_policy("reroute");
  c.set_compute_dtype("bf16");
  c.set_engine_threads(4);
  c.set_max_image_bytes(1000);
  c.set_max_image_pixels(2000);
  c.set_metrics_address("127.0.0.1:0");
  c.set_max_stream_age_ms(3000);
  ASSERT_EQ(ValidateServerConfig(c), absl::OkStatus());

  const InferencePipelineOptions pipeline = PipelineOptionsFrom(c);
  EXPECT_EQ(pipeline.batcher.max_batch_size, 8);
  EXPECT_EQ(pipeline.batcher.max_queue_delay_us, 500);
  EXPECT_EQ(pipeline.max_queue_size, 32);
  EXPECT_EQ(pipeline.decode_threads, 3);
  EXPECT_EQ(pipeline.max_top_k, 7u);

  const absl::StatusOr<EngineOptions> engine = EngineOptionsFrom(c, 4096);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ(engine->max_batch_size, 8);
  EXPECT_EQ(engine->compute_dtype, ComputeDtype::kBfloat16);
  EXPECT_EQ(engine->num_threads, 4);
  EXPECT_EQ(engine->expert_failure_policy, ExpertFailurePolicy::kReroute);
  EXPECT_FALSE(engine->prefetch_next_layer);
  EXPECT_EQ(engine->cache.budget_bytes, 4096u);
  EXPECT_EQ(engine->cache.policy.min_bytes, 100u);
  EXPECT_EQ(engine->cache.policy.grow_below, 0.5);
  EXPECT_EQ(engine->cache.policy.shrink_above, 0.75);
  EXPECT_EQ(engine->cache.policy.window_accesses, 64);
  EXPECT_EQ(engine->cache.policy.resize_interval_accesses, 32);
  EXPECT_EQ(engine->cache.prefetch_threads, 2);

  const ModelManifest model;
  const ImageDecoderOptions decoder = DecoderOptionsFrom(c, model);
  EXPECT_EQ(decoder.max_encoded_bytes, 1000u);
  EXPECT_EQ(decoder.max_pixels, 2000u);
  EXPECT_EQ(decoder.image_size, model.config().image_size);

  const GatewayMetricsOptions metrics = MetricsOptionsFrom(c, model, "bf16");
  EXPECT_EQ(metrics.listen_address, "127.0.0.1:0");
  EXPECT_EQ(metrics.precision, "bf16");
  EXPECT_TRUE(metrics.moe_layers.empty());  // a model without MoE layers.

  const GatewayServiceOptions service = ServiceOptionsFrom(c, 4096);
  EXPECT_EQ(service.max_batch_size, 8);
  EXPECT_EQ(service.cache_budget_bytes, 4096u);
  EXPECT_EQ(service.max_stream_age_ms, 3000);
}

// Validation checks the engine's fields with the engine's own rules.
TEST(ComponentOptionsTest, ValidationUsesTheEnginesDtypeNamesAndBatchLimit) {
  ServerConfig c = DefaultGatewayConfig();
  c.set_compute_dtype("fp16");
  const absl::Status s = EngineOptionsFrom(c, 0).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("compute_dtype: compute dtype"));
  EXPECT_EQ(ValidateServerConfig(c), s);
  c.set_max_batch_size(kMaxBatchSize + 1);
  EXPECT_THAT(ValidateServerConfig(c).message(),
              HasSubstr("max_batch_size must be in [1, 64]"));
}

TEST(ComponentOptionsTest, MemoryLimitAndCacheBudget) {
  ServerConfig c = DefaultGatewayConfig();
  c.set_memory_limit_bytes(1000);
  const absl::StatusOr<MemoryLimit> limit = MemoryLimitFrom(c);
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(limit->bytes, 1000u);
  EXPECT_EQ(limit->source, "memory_limit_bytes");
  // Unbounded while every expert fits in half the limit, else half of it.
  EXPECT_EQ(CacheBudgetBytesFrom(c, 1000, 500), 0u);
  EXPECT_EQ(CacheBudgetBytesFrom(c, 1000, 501), 500u);
  c.set_cache_budget_bytes(300);
  EXPECT_EQ(CacheBudgetBytesFrom(c, 1000, 501), 300u);
}

TEST(ComponentOptionsTest, GrpcServerAgesAndMessageSize) {
  ServerConfig c = DefaultGatewayConfig();
  c.set_listen_address("0.0.0.0:1234");
  // 512 MiB: a quota of 128 MiB, messages up to 64 MiB, below the 120 MB
  // raw frame of 40 MP.
  GrpcServerOptions grpc = GrpcServerOptionsFrom(c, 512u << 20);
  EXPECT_EQ(grpc.listen_address, "0.0.0.0:1234");
  EXPECT_EQ(grpc.transport_quota_bytes, 128u << 20);
  EXPECT_EQ(grpc.max_receive_message_bytes, 64 << 20);
  c.set_max_image_pixels(1000);  // now the encoded 16 MiB is the largest.
  grpc = GrpcServerOptionsFrom(c, 512u << 20);
  EXPECT_EQ(grpc.max_receive_message_bytes, (16 << 20) + 65536);
  // The grace outlasts the streams' own age by 10 s; without a stream age
  // it is gRPC's "never".
  c.set_max_connection_age_ms(300000);
  grpc = GrpcServerOptionsFrom(c, 512u << 20);
  EXPECT_EQ(grpc.max_connection_age_ms, 300000);
  EXPECT_EQ(grpc.max_connection_age_grace_ms, INT32_MAX);
  c.set_max_stream_age_ms(300000);
  grpc = GrpcServerOptionsFrom(c, 512u << 20);
  EXPECT_EQ(grpc.max_connection_age_grace_ms, 310000);
  c.set_max_connection_age_ms(int64_t{1} << 40);
  c.set_max_stream_age_ms(INT64_MAX);
  grpc = GrpcServerOptionsFrom(c, 512u << 20);
  EXPECT_EQ(grpc.max_connection_age_ms, INT32_MAX);
  EXPECT_EQ(grpc.max_connection_age_grace_ms, INT32_MAX);
}

}  // namespace
}  // namespace edge
