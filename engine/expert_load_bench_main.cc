// expert_load_bench: where the time of one expert load goes.
//
//   expert_load_bench --model DIR [--rounds N] [--cold] [--dtype f32|bf16]
//
// Loads every expert of the model --rounds times as the expert cache's
// loader does: ExpertStore::Load (read the file into memory, SHA-256 of
// the bytes read) then PrepareExpert (the reorder into oneDNN's layout, on
// one OpenMP thread as on the prefetch threads). Then, in separate passes
// so that neither disturbs the other's caches, the read alone
// (FileBuffer::Read) and the hash alone (SHA-256 of a buffer already in
// memory). Prints the mean milliseconds per expert of each. With --cold,
// each read first drops the file's pages from the page cache
// (posix_fadvise DONTNEED), so it reads from the device.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "cache/expert_store.h"
#include "common/file_buffer.h"
#include "common/model_manifest.h"
#include "common/sha256.h"
#include "engine/internal/compute_thread.h"
#include "engine/internal/kernels.h"
#include "engine/internal/model_weights.h"
#include "engine/vmoe_engine.h"

ABSL_FLAG(std::string, model, "", "model directory");
ABSL_FLAG(int, rounds, 5, "times every expert is loaded");
ABSL_FLAG(bool, cold, false, "drop each file from the page cache first");
ABSL_FLAG(std::string, dtype, "f32", "compute dtype: f32 or bf16");

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// Clean pages of a file we only read are dropped at once.
void DropFromPageCache(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

struct StepTimes {
  double load_ms = 0;     // ExpertStore::Load: read + SHA-256.
  double prepare_ms = 0;  // PrepareExpert.
  double read_ms = 0;     // FileBuffer::Read alone.
  double hash_ms = 0;     // Sha256Hex alone.
  int loads = 0;
};

int Fail(const std::string& what) {
  std::fprintf(stderr, "expert_load_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("expert_load_bench --model DIR [--cold]");
  absl::ParseCommandLine(argc, argv);
  auto manifest = edge::ModelManifest::Load(absl::GetFlag(FLAGS_model));
  if (!manifest.ok()) return Fail(manifest.status().ToString());
  auto compute = edge::ParseComputeDtype(absl::GetFlag(FLAGS_dtype));
  if (!compute.ok()) return Fail(compute.status().ToString());
  const auto act = *compute == edge::ComputeDtype::kBfloat16
                       ? edge::internal::DataType::bf16
                       : edge::internal::DataType::f32;
  auto store = edge::ExpertStore::Create(&*manifest);
  if (!store.ok()) return Fail(store.status().ToString());
  edge::internal::Kernels kernels;
  edge::internal::OmpSingleThread one_thread;
  const bool cold = absl::GetFlag(FLAGS_cold);
  const edge::MoeSpec& moe = manifest->config().moe;
  StepTimes t;
  uint64_t file_bytes = 0;
  const int rounds = absl::GetFlag(FLAGS_rounds);
  auto for_each_expert = [&](const auto& step) {
    for (int round = 0; round < rounds; ++round) {
      for (const int layer : moe.layers) {
        for (int e = 0; e < moe.num_experts; ++e) {
          const edge::FileInfo& info =
              *manifest->FindFile(manifest->ExpertFile(layer, e));
          const std::string path = manifest->PathOf(info.path);
          if (cold) DropFromPageCache(path);
          if (!step(edge::ExpertKey{layer, e}, info, path)) return false;
        }
      }
    }
    return true;
  };
  const bool ok =
      for_each_expert([&](const edge::ExpertKey& key,
                          const edge::FileInfo& info, const std::string&) {
        auto start = Clock::now();
        auto raw = (*store)->Load(key);
        t.load_ms += MsSince(start);
        if (!raw.ok()) return Fail(raw.status().ToString()) == 0;
        start = Clock::now();
        auto prepared = edge::internal::PrepareExpert(*raw, kernels, act);
        t.prepare_ms += MsSince(start);
        if (!prepared.ok()) return Fail(prepared.status().ToString()) == 0;
        file_bytes = info.size_bytes;
        ++t.loads;
        return true;
      });
  if (!ok) return 1;
  std::unique_ptr<edge::FileBuffer> last;
  for_each_expert([&](const edge::ExpertKey&, const edge::FileInfo& info,
                      const std::string& path) {
    last.reset();  // as a load frees its buffer before the next one
    const auto start = Clock::now();
    auto buffer = edge::FileBuffer::Read(path, info.size_bytes);
    t.read_ms += MsSince(start);
    if (buffer.ok()) last = *std::move(buffer);
    return last != nullptr;
  });
  for (int i = 0; i < t.loads && last != nullptr; ++i) {
    const auto start = Clock::now();
    const std::string digest = edge::Sha256Hex(last->data(), last->size());
    t.hash_ms += MsSince(start);
    if (digest.empty()) return 1;
  }
  if (t.loads == 0) return Fail("the model has no experts");
  const double n = t.loads;
  std::printf(
      "%d loads of %.2f MB experts (%s, %s), ms per expert: "
      "ExpertStore::Load %.2f (of which read %.2f, sha256 %.2f) + prepare "
      "%.2f = %.2f; sha256 is %.0f%% of the load\n",
      t.loads, file_bytes / 1e6, cold ? "cold" : "page cache",
      absl::GetFlag(FLAGS_dtype).c_str(), t.load_ms / n, t.read_ms / n,
      t.hash_ms / n, t.prepare_ms / n, (t.load_ms + t.prepare_ms) / n,
      100 * t.hash_ms / (t.load_ms + t.prepare_ms));
  return 0;
}
