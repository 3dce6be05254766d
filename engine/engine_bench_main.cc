// engine_bench: engine-only throughput and latency for any model directory.
//
//   engine_bench --model DIR --batch N --seconds S [--cache_budget_bytes B]
//                [--json]
//
// Feeds random normal "images" (the engine's cost does not depend on pixel
// values, only routing does, and random inputs spread routing across experts
// like varied scenes do) for --seconds after --warmup_batches, and prints
// images/s, ms per batch (mean, P50, P99) and the share of time spent
// waiting for experts; with --json, the same as one JSON object (read by
// tools/bench/benchmark_peers.py).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "engine/vmoe_engine.h"

ABSL_FLAG(std::string, model, "", "model directory");
ABSL_FLAG(int, batch, 1, "images per batch");
ABSL_FLAG(double, seconds, 5.0, "measurement time after warm-up");
ABSL_FLAG(int, warmup_batches, 3,
          "batches run before measuring (primitive creation, expert loads)");
ABSL_FLAG(uint64_t, cache_budget_bytes, 0,
          "expert cache budget in bytes; 0 = unbounded");
ABSL_FLAG(std::string, dtype, "f32",
          "compute dtype of the large matmuls: f32 or bf16");
ABSL_FLAG(int, threads, 0, "OpenMP threads; 0 = OpenMP's default");
ABSL_FLAG(int, seed, 1, "seed of the random inputs");
ABSL_FLAG(bool, json, false, "print the result as one JSON object");
ABSL_FLAG(bool, stages, false,
          "also print the mean time per batch of each stage (embed, "
          "attention, mlp, moe, head)");

namespace {

// CPU seconds (user + system) this process has used: with one OpenMP
// thread, CPU time per batch is the compute time even on a loaded machine,
// where wall time also counts the time other processes held the core.
double ProcessCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * v.size()));
  return v[i];
}

// Sums RunTiming fields over the measured batches.
void Accumulate(const edge::RunTiming& t, edge::RunTiming* sum) {
  sum->total_us += t.total_us;
  sum->expert_fetch_us += t.expert_fetch_us;
  sum->embed_us += t.embed_us;
  sum->attention_us += t.attention_us;
  sum->mlp_us += t.mlp_us;
  sum->moe_us += t.moe_us;
  sum->head_us += t.head_us;
}

void PrintStages(const edge::RunTiming& sum, size_t batches) {
  const std::pair<const char*, int64_t> stages[] = {
      {"embed", sum.embed_us}, {"attention", sum.attention_us},
      {"mlp", sum.mlp_us},     {"moe", sum.moe_us},
      {"head", sum.head_us},   {"(expert_fetch)", sum.expert_fetch_us}};
  for (const auto& [name, us] : stages) {
    std::printf("  %-15s %8.3f ms/batch %5.1f%%\n", name, us / 1e3 / batches,
                sum.total_us > 0 ? 100.0 * us / sum.total_us : 0.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "engine_bench --model DIR --batch N --seconds S");
  absl::ParseCommandLine(argc, argv);
  const int batch = absl::GetFlag(FLAGS_batch);
  edge::EngineOptions options;
  options.max_batch_size = std::max(1, batch);
  options.cache.budget_bytes = absl::GetFlag(FLAGS_cache_budget_bytes);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  auto dtype = edge::ParseComputeDtype(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n",
                 dtype.status().ToString().c_str());
    return 1;
  }
  options.compute_dtype = *dtype;
  auto engine = edge::VmoeEngine::Create(absl::GetFlag(FLAGS_model), options);
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n",
                 engine.status().ToString().c_str());
    return 1;
  }
  const edge::ModelConfig& c = (*engine)->config();
  // Several distinct batches so routing varies from batch to batch.
  constexpr int kDistinctBatches = 8;
  const size_t per_batch =
      static_cast<size_t>(batch) * 3 * c.image_size * c.image_size;
  std::vector<float> inputs(per_batch * kDistinctBatches);
  std::mt19937 rng(absl::GetFlag(FLAGS_seed));
  std::normal_distribution<float> normal;
  for (float& v : inputs) v = normal(rng);

  auto run = [&](int i, edge::RunTiming* timing) {
    auto r = (*engine)->Run(inputs.data() + per_batch * (i % kDistinctBatches),
                            batch, timing);
    if (!r.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", r.status().ToString().c_str());
      std::exit(1);
    }
  };
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup_batches); ++i) run(i, nullptr);

  std::vector<double> ms;
  edge::RunTiming sum;
  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ProcessCpuSeconds();
  const double seconds = absl::GetFlag(FLAGS_seconds);
  double elapsed = 0;
  for (int i = 0; elapsed < seconds || ms.empty(); ++i) {
    edge::RunTiming timing;
    run(i, &timing);
    ms.push_back(timing.total_us / 1e3);
    Accumulate(timing, &sum);
    elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
  }
  const double mean_ms = sum.total_us / 1e3 / ms.size();
  const double cpu_ms = (ProcessCpuSeconds() - cpu_start) * 1e3 / ms.size();
  const bool json = absl::GetFlag(FLAGS_json);
  // One printf, so that the compiler checks both formats against the
  // arguments.
  std::printf(
      json ? "{\"model\": \"%s\", \"dtype\": \"%s\", \"batch\": %d, "
             "\"batches\": %zu, \"images_per_s\": %.3f, "
             "\"ms_per_batch_mean\": %.4f, \"ms_per_batch_p50\": %.4f, "
             "\"ms_per_batch_p99\": %.4f, \"cpu_ms_per_batch\": %.4f, "
             "\"expert_fetch_percent\": %.2f}\n"
           : "model=%s dtype=%s batch=%d batches=%zu images/s=%.1f ms/batch "
             "mean=%.3f p50=%.3f p99=%.3f cpu_ms/batch=%.3f "
             "expert_fetch=%.1f%%\n",
      (*engine)->manifest().name().c_str(),
      edge::ComputeDtypeName(options.compute_dtype), batch, ms.size(),
      batch * ms.size() / elapsed, mean_ms, Percentile(ms, 0.5),
      Percentile(ms, 0.99), cpu_ms,
      sum.total_us > 0 ? 100.0 * sum.expert_fetch_us / sum.total_us : 0.0);
  if (json) return 0;  // stdout is the JSON object alone
  const edge::ExpertCacheStats cache = (*engine)->cache_stats();
  if (cache.resident_experts > 0) {
    std::printf(
        "precision=%s expert_cache resident=%llu bytes in %d "
        "experts (%llu bytes each)\n",
        (*engine)->precision().c_str(),
        static_cast<unsigned long long>(cache.resident_bytes),
        cache.resident_experts,
        static_cast<unsigned long long>(cache.resident_bytes /
                                        cache.resident_experts));
  }
  if (absl::GetFlag(FLAGS_stages)) PrintStages(sum, ms.size());
  return 0;
}
