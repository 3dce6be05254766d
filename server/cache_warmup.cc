#include "server/cache_warmup.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace edge {
namespace {

// The profile's keys that name an expert of `config`, most used first.
std::vector<ExpertKey> KeysOfThisModel(const UsageProfile& profile,
                                       const ModelConfig& config) {
  std::vector<ExpertKey> keys;
  for (const ExpertKey& key : MostUsedFirst(profile)) {
    const auto& layers = config.moe.layers;
    if (std::find(layers.begin(), layers.end(), key.layer) != layers.end() &&
        key.expert < config.moe.num_experts) {
      keys.push_back(key);
    }
  }
  return keys;
}

// The profile at `path` if it is usable for `model`, else empty (logged).
UsageProfile ReadProfileFor(const std::string& path, const std::string& model,
                            const LogLine& log) {
  absl::StatusOr<UsageProfile> profile = ReadUsageProfile(path);
  if (absl::IsNotFound(profile.status())) {
    log(absl::StrCat("cache warm-up: no usage profile at ", path,
                     " yet; starting cold, it will be written"));
    return {};
  }
  if (!profile.ok()) {
    log(absl::StrCat("cache warm-up: ignoring the usage profile: ",
                     profile.status().ToString(), "; starting cold"));
    return {};
  }
  if (profile->model != model) {
    log(absl::StrCat("cache warm-up: ignoring the usage profile ", path,
                     ": it was written for model '", profile->model, "', not '",
                     model, "'; starting cold"));
    return {};
  }
  return *std::move(profile);
}

}  // namespace

UsageProfile WarmCacheFromProfile(const std::string& path, VmoeEngine& engine,
                                  const LogLine& log) {
  UsageProfile profile = ReadProfileFor(path, engine.manifest().name(), log);
  const std::vector<ExpertKey> keys = KeysOfThisModel(profile, engine.config());
  if (keys.empty()) return profile;
  const ExpertCacheStats before = engine.cache_stats();
  const absl::Time start = absl::Now();
  const int resident = engine.cache()->Warm(keys);
  const absl::Duration took = absl::Now() - start;
  const ExpertCacheStats after = engine.cache_stats();
  log(absl::StrFormat(
      "cache warm-up: loaded %d experts (%d bytes) in %.1f ms from %s; %d of "
      "its %d experts of this model are resident (capacity %d bytes, 0 = "
      "unbounded), %d failed to load",
      after.loads - before.loads, after.resident_bytes - before.resident_bytes,
      absl::ToDoubleMilliseconds(took), path, resident, keys.size(),
      after.capacity_bytes, after.load_failures - before.load_failures));
  return profile;
}

absl::StatusOr<std::unique_ptr<UsageProfileRecorder>> RecordCacheProfile(
    const std::string& path, absl::Duration interval, UsageProfile previous,
    VmoeEngine* engine, const LogLine& log) {
  // Acquires so far (the warm-up batches) are not traffic.
  std::map<ExpertKey, uint64_t> baseline;
  for (const auto& [key, count] : engine->cache()->UsageCounts()) {
    baseline[key] = count;
  }
  UsageProfileRecorderOptions options;
  options.path = path;
  options.model = engine->manifest().name();
  options.interval = interval;
  options.previous = std::move(previous);
  options.on_error = [log](const absl::Status& status) {
    log("usage profile: " + status.ToString());
  };
  ExpertCache* cache = engine->cache();
  return UsageProfileRecorder::Create(
      std::move(options), [cache, baseline = std::move(baseline)] {
        std::vector<std::pair<ExpertKey, uint64_t>> since;
        for (auto [key, count] : cache->UsageCounts()) {
          const auto it = baseline.find(key);
          if (it != baseline.end()) count -= it->second;
          if (count > 0) since.emplace_back(key, count);
        }
        return since;
      });
}

}  // namespace edge
