// matmul_roofline: the machine's reachable matmul FLOP rate through oneDNN,
// the yardstick tools/bench/benchmark_peers.py divides the engine's rate by.
//
//   matmul_roofline [--shapes MxKxN,...] [--dtypes f32,bf16]
//                   [--seconds_per_shape S] [--json]
//
// For each dtype and shape, one oneDNN matmul dst[M,N] = src[M,K] W[K,N]
// (dst always f32; for bf16 src and W are bf16, as the engine's reduced-
// precision experts would be) is created once, W reordered once into the
// layout the primitive prefers (as the engine does at load), then executed
// repeatedly for --seconds_per_shape after two warm-up runs. The rate of a
// shape is 2*M*K*N over its fastest run: the rate the machine reached, which
// is what a roofline is; on a machine shared with other processes the
// median run is slowed by them (both are printed). The summary is the best
// shape per dtype. Threads: oneDNN's OpenMP pool (OMP_NUM_THREADS,
// default one per core), the same pool the engine uses.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "oneapi/dnnl/dnnl.hpp"

// 2048^3 is the classic square case (17 GFLOP a run, big enough to amortise
// threading and small enough to take ~0.1 s here). The others are
// vmoe-tiny-224's own products at batch 16 (M = 16 images x 196 tokens):
// qkv [M,192]x[192,576], fc1 [M,192]x[192,768], fc2 [M,768]x[768,192]; and
// fc1 at 4x that M, the "large M" limit of the same shape.
ABSL_FLAG(std::string, shapes,
          "2048x2048x2048,3136x192x576,3136x192x768,3136x768x192,"
          "12544x192x768",
          "comma-separated MxKxN shapes");
ABSL_FLAG(std::string, dtypes, "f32,bf16", "comma-separated: f32, bf16");
ABSL_FLAG(double, seconds_per_shape, 2.0, "measurement time per shape");
ABSL_FLAG(bool, json, false, "print one JSON object instead of a table");

namespace {

using dnnl::memory;

struct Shape {
  int64_t m = 0, k = 0, n = 0;
};

struct Result {
  std::string dtype;
  Shape shape;
  std::string impl;  // oneDNN's implementation name, e.g. brg:avx512_core.
  int runs = 0;
  double gflops = 0;         // at the fastest run.
  double median_gflops = 0;  // at the median run time.
  bool ok = false;           // false: oneDNN has no implementation here.
};

bool ParseShapes(const std::string& text, std::vector<Shape>* shapes) {
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> dims = absl::StrSplit(item, 'x');
    Shape s;
    if (dims.size() != 3 || !absl::SimpleAtoi(dims[0], &s.m) ||
        !absl::SimpleAtoi(dims[1], &s.k) || !absl::SimpleAtoi(dims[2], &s.n) ||
        s.m <= 0 || s.k <= 0 || s.n <= 0) {
      return false;
    }
    shapes->push_back(s);
  }
  return !shapes->empty();
}

// A memory of `md` filled with uniform values in [-1, 1) (converted through
// an f32 buffer and a reorder, so that bf16 works the same way).
memory RandomMemory(const dnnl::engine& engine, dnnl::stream& stream,
                    const memory::desc& md, const memory::dims& dims,
                    std::mt19937* rng) {
  memory::desc plain(
      dims, memory::data_type::f32,
      dims.size() == 2 ? memory::format_tag::ab : memory::format_tag::a);
  memory f32(plain, engine);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  float* p = static_cast<float*>(f32.get_data_handle());
  for (size_t i = 0; i < plain.get_size() / sizeof(float); ++i) {
    p[i] = uniform(*rng);
  }
  memory out(md, engine);
  dnnl::reorder(f32, out).execute(stream, f32, out);
  stream.wait();
  return out;
}

Result Measure(const dnnl::engine& engine, memory::data_type dt, const Shape& s,
               double seconds) {
  Result r;
  r.dtype = dt == memory::data_type::bf16 ? "bf16" : "f32";
  r.shape = s;
  dnnl::stream stream(engine);
  const memory::desc src_md({s.m, s.k}, dt, memory::format_tag::ab);
  const memory::desc any_w({s.k, s.n}, dt, memory::format_tag::any);
  const memory::desc dst_md({s.m, s.n}, memory::data_type::f32,
                            memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src_md, any_w, dst_md),
                                      engine);
  } catch (const dnnl::error&) {
    return r;  // ok = false: not implemented for this dtype on this CPU.
  }
  std::mt19937 rng(1);
  memory src = RandomMemory(engine, stream, src_md, {s.m, s.k}, &rng);
  memory w = RandomMemory(engine, stream, pd.weights_desc(), {s.k, s.n}, &rng);
  memory dst(dst_md, engine);
  dnnl::matmul mm(pd);
  auto run = [&] {
    mm.execute(
        stream,
        {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}});
    stream.wait();
  };
  for (int i = 0; i < 2; ++i) run();  // warm-up: caches, thread pool.
  std::vector<double> times;
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  while (times.size() < 3 ||
         std::chrono::duration<double>(Clock::now() - start).count() <
             seconds) {
    const auto t0 = Clock::now();
    run();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  r.impl = pd.impl_info_str();
  r.runs = static_cast<int>(times.size());
  std::sort(times.begin(), times.end());
  const double flop = 2.0 * s.m * s.k * s.n;
  r.gflops = flop / times.front() / 1e9;
  r.median_gflops = flop / times[times.size() / 2] / 1e9;
  r.ok = true;
  return r;
}

// OpenMP's thread count: OMP_NUM_THREADS, else one per hardware thread.
int Threads() {
  const char* env = std::getenv("OMP_NUM_THREADS");
  int n = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &n) && n > 0) return n;
  return static_cast<int>(std::thread::hardware_concurrency());
}

// The best rate of `dtype` over the shapes; 0 if none ran.
double Best(const std::vector<Result>& results, const std::string& dtype) {
  double best = 0;
  for (const Result& r : results) {
    if (r.ok && r.dtype == dtype) best = std::max(best, r.gflops);
  }
  return best;
}

void PrintTable(const std::vector<Result>& results) {
  std::printf("threads=%d\n%-5s %-18s %9s %9s %6s  %s\n", Threads(), "dtype",
              "MxKxN", "GFLOP/s", "median", "runs", "implementation");
  for (const Result& r : results) {
    const std::string shape = std::to_string(r.shape.m) + "x" +
                              std::to_string(r.shape.k) + "x" +
                              std::to_string(r.shape.n);
    if (!r.ok) {
      std::printf("%-5s %-18s %9s\n", r.dtype.c_str(), shape.c_str(), "n/a");
      continue;
    }
    std::printf("%-5s %-18s %9.1f %9.1f %6d  %s\n", r.dtype.c_str(),
                shape.c_str(), r.gflops, r.median_gflops, r.runs,
                r.impl.c_str());
  }
  for (const char* dtype : {"f32", "bf16"}) {
    if (Best(results, dtype) > 0) {
      std::printf("best %s: %.1f GFLOP/s\n", dtype, Best(results, dtype));
    }
  }
}

// {"threads": T, "results": [...], "best_gflops": {"f32": G, "bf16": G}};
// a dtype without any implemented shape is left out of best_gflops.
void PrintJson(const std::vector<Result>& results) {
  std::printf("{\"threads\": %d, \"results\": [", Threads());
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    std::printf(
        "%s\n  {\"dtype\": \"%s\", \"m\": %lld, \"k\": %lld, \"n\": %lld, "
        "\"ok\": %s, \"gflops\": %.2f, \"median_gflops\": %.2f, "
        "\"runs\": %d, \"impl\": \"%s\"}",
        i ? "," : "", r.dtype.c_str(), static_cast<long long>(r.shape.m),
        static_cast<long long>(r.shape.k), static_cast<long long>(r.shape.n),
        r.ok ? "true" : "false", r.gflops, r.median_gflops, r.runs,
        r.impl.c_str());
  }
  std::printf("],\n \"best_gflops\": {");
  bool first = true;
  for (const char* dtype : {"f32", "bf16"}) {
    const double best = Best(results, dtype);
    if (best == 0) continue;
    std::printf("%s\"%s\": %.2f", first ? "" : ", ", dtype, best);
    first = false;
  }
  std::printf("}}\n");
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "matmul_roofline [--shapes MxKxN,...] [--dtypes f32,bf16] "
      "[--seconds_per_shape S] [--json]");
  absl::ParseCommandLine(argc, argv);
  std::vector<Shape> shapes;
  if (!ParseShapes(absl::GetFlag(FLAGS_shapes), &shapes)) {
    std::fprintf(stderr, "matmul_roofline: bad --shapes (want MxKxN,...)\n");
    return 2;
  }
  std::vector<memory::data_type> dtypes;
  for (absl::string_view d : absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',')) {
    if (d != "f32" && d != "bf16") {
      std::fprintf(stderr, "matmul_roofline: unknown dtype in --dtypes\n");
      return 2;
    }
    dtypes.push_back(d == "f32" ? memory::data_type::f32
                                : memory::data_type::bf16);
  }
  const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  std::vector<Result> results;
  for (memory::data_type dt : dtypes) {
    for (const Shape& s : shapes) {
      results.push_back(
          Measure(engine, dt, s, absl::GetFlag(FLAGS_seconds_per_shape)));
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(results);
  } else {
    PrintTable(results);
  }
  return 0;
}
