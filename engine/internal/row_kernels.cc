#include "engine/internal/row_kernels.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace edge::internal {
namespace {

// AVX-512 and generic clones of each hot loop, chosen by the dynamic loader
// (GCC's target_clones; ifunc). Applied to per-chunk functions, not to the
// OpenMP regions, so the outlined parallel bodies need no target of their
// own.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define EDGE_VECTORIZED \
  __attribute__((target_clones("arch=x86-64-v4", "default")))
#else
#define EDGE_VECTORIZED
#endif

// Below this many element-operations a parallel region costs more than it
// saves (a region is a few microseconds; 64 Ki simple operations take about
// as long on one core).
constexpr int64_t kParallelWork = 64 * 1024;

// Calls f(begin, end) on contiguous slices of [0, rows), one per OpenMP
// thread, or f(0, rows) when the work is small or we already run inside a
// parallel region.
template <typename F>
void ParallelRows(int64_t rows, int64_t work_per_row, F f) {
  if (rows * work_per_row < kParallelWork || omp_in_parallel() ||
      omp_get_max_threads() == 1) {
    f(0, rows);
    return;
  }
#pragma omp parallel
  {
    const int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
    f(rows * i / n, rows * (i + 1) / n);
  }
}

// The smallest and largest value over ParallelRows' slices, where
// f(begin, end) returns a slice's {min, max}.
template <typename F>
std::pair<float, float> ParallelRange(int64_t rows, int64_t work_per_row, F f) {
  if (rows * work_per_row < kParallelWork || omp_in_parallel() ||
      omp_get_max_threads() == 1) {
    return f(0, rows);
  }
  float lo = 0.f, hi = 0.f;
#pragma omp parallel reduction(min : lo) reduction(max : hi)
  {
    const int64_t n = omp_get_num_threads(), i = omp_get_thread_num();
    const auto [slice_lo, slice_hi] = f(rows * i / n, rows * (i + 1) / n);
    lo = slice_lo;
    hi = slice_hi;
  }
  return {lo, hi};
}

// Branch-free max and min: std::max returns a reference, which keeps GCC
// from vectorising reductions and clamps built on it.
inline float Max(float a, float b) { return a > b ? a : b; }
inline float Min(float a, float b) { return a < b ? a : b; }

// Stores `v` as element i of a row of type `type` (f32 or bf16).
inline void Store(float v, DataType type, void* row, int i) {
  if (type == DataType::f32) {
    static_cast<float*>(row)[i] = v;
  } else {
    static_cast<uint16_t*>(row)[i] = FloatToBf16(v);
  }
}

EDGE_VECTORIZED void NormChunk(const float* src, int64_t begin, int64_t end,
                               int d, const float* gamma, const float* beta,
                               float eps, MatrixRef dst) {
  for (int64_t r = begin; r < end; ++r) {
    const float* s = src + r * d;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < d; ++i) sum += s[i];
    const float mean = sum / d;
    float var = 0.f;
#pragma omp simd reduction(+ : var)
    for (int i = 0; i < d; ++i) var += (s[i] - mean) * (s[i] - mean);
    const float rstd = 1.f / std::sqrt(var / d + eps);
    if (dst.type == DataType::f32) {
      float* o = static_cast<float*>(dst.data) + r * d;
#pragma omp simd
      for (int i = 0; i < d; ++i)
        o[i] = (s[i] - mean) * rstd * gamma[i] + beta[i];
    } else {
      uint16_t* o = static_cast<uint16_t*>(dst.data) + r * d;
#pragma omp simd
      for (int i = 0; i < d; ++i) {
        o[i] = FloatToBf16((s[i] - mean) * rstd * gamma[i] + beta[i]);
      }
    }
  }
}

// Copies `n` floats to f32 or bf16.
EDGE_VECTORIZED void ConvertRow(const float* src, int n, DataType type,
                                void* dst) {
  if (type == DataType::f32) {
    std::memcpy(dst, src, sizeof(float) * n);
    return;
  }
  uint16_t* o = static_cast<uint16_t*>(dst);
#pragma omp simd
  for (int i = 0; i < n; ++i) o[i] = FloatToBf16(src[i]);
}

// Patch rows [begin, end) of Patchify: row r = (image b, grid cell gy, gx)
// holds the cell's 3 x P x P pixels, channel-major. One clone call per
// chunk, not per P-pixel run: per run (16 floats at P = 16) the indirect
// call of the clone cost more than the copy (2.4% of a bf16 batch).
EDGE_VECTORIZED void PatchifyChunk(const float* images, int64_t begin,
                                   int64_t end, int g, int p, int s,
                                   MatrixRef dst) {
  const int patch_len = 3 * p * p;
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / (g * g), gy = r / g % g, gx = r % g;
    for (int ch = 0; ch < 3; ++ch) {
      for (int py = 0; py < p; ++py) {
        const float* src =
            images + ((b * 3 + ch) * s + gy * p + py) * s + gx * p;
        const int64_t at = r * patch_len + (ch * p + py) * p;
        if (dst.type == DataType::f32) {
          float* o = static_cast<float*>(dst.data) + at;
#pragma omp simd
          for (int i = 0; i < p; ++i) o[i] = src[i];
        } else {
          uint16_t* o = static_cast<uint16_t*>(dst.data) + at;
#pragma omp simd
          for (int i = 0; i < p; ++i) o[i] = FloatToBf16(src[i]);
        }
      }
    }
  }
}

EDGE_VECTORIZED void AddRow(const float* a, const float* b, int d, float* o) {
#pragma omp simd
  for (int i = 0; i < d; ++i) o[i] = a[i] + b[i];
}

EDGE_VECTORIZED void AxpyRow(float w, const float* y, int d, float* x) {
#pragma omp simd
  for (int i = 0; i < d; ++i) x[i] += w * y[i];
}

// Adds row `src` (f32 or bf16) to `acc`.
EDGE_VECTORIZED void AccumulateRow(const void* src, DataType type, int d,
                                   float* acc) {
  if (type == DataType::f32) {
    const float* s = static_cast<const float*>(src);
#pragma omp simd
    for (int i = 0; i < d; ++i) acc[i] += s[i];
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp simd
    for (int i = 0; i < d; ++i) acc[i] += Bf16ToFloat(s[i]);
  }
}

// Widens [lo, hi] to cover a row of f32 or bf16.
EDGE_VECTORIZED void RangeOfRow(const void* src, DataType type, int64_t n,
                                float& lo, float& hi) {
  float l = lo, h = hi;
  if (type == DataType::f32) {
    const float* s = static_cast<const float*>(src);
#pragma omp simd reduction(min : l) reduction(max : h)
    for (int64_t i = 0; i < n; ++i) {
      l = Min(l, s[i]);
      h = Max(h, s[i]);
    }
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
#pragma omp simd reduction(min : l) reduction(max : h)
    for (int64_t i = 0; i < n; ++i) {
      l = Min(l, Bf16ToFloat(s[i]));
      h = Max(h, Bf16ToFloat(s[i]));
    }
  }
  lo = l;
  hi = h;
}

// dst = clamp(round(x * inv_scale) + zero_point, 0, 255), rounding half
// up (truncating a non-negative float floors it).
EDGE_VECTORIZED void QuantizeRow(const void* src, DataType type, int64_t n,
                                 float inv_scale, float zero_point,
                                 uint8_t* dst) {
  const float* f = static_cast<const float*>(src);
  const uint16_t* h = static_cast<const uint16_t*>(src);
  const bool is_f32 = type == DataType::f32;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float v = (is_f32 ? f[i] : Bf16ToFloat(h[i])) * inv_scale;
    const float q = Min(255.f, Max(0.f, v + zero_point + .5f));
    dst[i] = static_cast<uint8_t>(static_cast<int>(q));
  }
}

// The u8 quantisation of values in [lo, hi]: the range is widened to hold 0
// so that zero_point is an integer in [0, 255].
Quantization QuantizationFor(float lo, float hi) {
  lo = Min(lo, 0.f);
  hi = Max(hi, 0.f);
  if (hi - lo <= 0.f) return {};
  const float scale = (hi - lo) / 255.f;
  return {scale, static_cast<int32_t>(-lo / scale + .5f)};
}

size_t ElementSize(DataType type) {
  return type == DataType::f32 ? 4 : type == DataType::bf16 ? 2 : 1;
}

const char* RowOf(MatrixRef m, int64_t row, int d) {
  return static_cast<const char*>(m.data) + row * d * ElementSize(m.type);
}

}  // namespace

void LayerNormRows(const float* src, int64_t rows, int d, const float* gamma,
                   const float* beta, float eps, MatrixRef dst) {
  ParallelRows(rows, 4 * d, [&](int64_t begin, int64_t end) {
    NormChunk(src, begin, end, d, gamma, beta, eps, dst);
  });
}

void Patchify(const float* images, int batch, int image_size, int patch,
              MatrixRef dst) {
  const int g = image_size / patch;
  const int64_t rows = static_cast<int64_t>(batch) * g * g;
  ParallelRows(rows, 3 * patch * patch, [&](int64_t begin, int64_t end) {
    PatchifyChunk(images, begin, end, g, patch, image_size, dst);
  });
}

void EmbedTokens(const float* patches, const float* cls, const float* pos,
                 int batch, int tokens, int first_patch, int d, float* x) {
  const int n = tokens - first_patch;
  ParallelRows(
      static_cast<int64_t>(batch) * tokens, d, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const int64_t b = r / tokens, t = r % tokens;
          const float* src =
              t < first_patch ? cls : patches + (b * n + t - first_patch) * d;
          AddRow(src, pos + t * d, d, x + r * d);
        }
      });
}

void GatherRows(MatrixRef src, int d, const RowWeight* rows, int64_t n,
                MatrixRef dst) {
  const size_t row_bytes = d * ElementSize(dst.type);
  ParallelRows(n, d, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      char* out = static_cast<char*>(dst.data) + i * row_bytes;
      const char* in = RowOf(src, rows[i].row, d);
      if (src.type == dst.type) {
        std::memcpy(out, in, row_bytes);
      } else {  // f32 -> bf16
        ConvertRow(reinterpret_cast<const float*>(in), d, dst.type, out);
      }
    }
  });
}

Quantization GatherRowsQuantized(MatrixRef src, int d, const RowWeight* rows,
                                 int64_t n, uint8_t* dst) {
  const auto [lo, hi] = ParallelRange(n, d, [&](int64_t begin, int64_t end) {
    float l = 0.f, h = 0.f;
    for (int64_t i = begin; i < end; ++i) {
      RangeOfRow(RowOf(src, rows[i].row, d), src.type, d, l, h);
    }
    return std::make_pair(l, h);
  });
  const Quantization q = QuantizationFor(lo, hi);
  ParallelRows(n, d, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      QuantizeRow(RowOf(src, rows[i].row, d), src.type, d, 1.f / q.scale,
                  static_cast<float>(q.zero_point), dst + i * d);
    }
  });
  return q;
}

Quantization QuantizeU8(const float* src, int64_t n, uint8_t* dst) {
  // Slices of whole 4 KiB blocks, so the work splits without a row shape.
  constexpr int64_t kBlock = 1024;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  auto range = [&](int64_t begin, int64_t end) {
    return std::make_pair(begin * kBlock, std::min(n, end * kBlock));
  };
  const auto [lo, hi] =
      ParallelRange(blocks, kBlock, [&](int64_t begin, int64_t end) {
        const auto [first, last] = range(begin, end);
        float l = 0.f, h = 0.f;
        if (last > first) {
          RangeOfRow(src + first, DataType::f32, last - first, l, h);
        }
        return std::make_pair(l, h);
      });
  const Quantization q = QuantizationFor(lo, hi);
  ParallelRows(blocks, kBlock, [&](int64_t begin, int64_t end) {
    const auto [first, last] = range(begin, end);
    if (last > first) {
      QuantizeRow(src + first, DataType::f32, last - first, 1.f / q.scale,
                  static_cast<float>(q.zero_point), dst + first);
    }
  });
  return q;
}

void ScatterAddRows(const float* src, int d, const RowWeight* rows, int64_t n,
                    float* x) {
  ParallelRows(n, d, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      AxpyRow(rows[i].weight, src + i * d, d,
              x + static_cast<int64_t>(rows[i].row) * d);
    }
  });
}

void MeanOfRows(MatrixRef src, int batch, int tokens, int first, int count,
                int d, float* dst) {
  ParallelRows(batch, static_cast<int64_t>(count) * d,
               [&](int64_t begin, int64_t end) {
                 for (int64_t b = begin; b < end; ++b) {
                   float* out = dst + b * d;
                   std::fill(out, out + d, 0.f);
                   for (int t = 0; t < count; ++t) {
                     AccumulateRow(RowOf(src, b * tokens + first + t, d),
                                   src.type, d, out);
                   }
                   for (int i = 0; i < d; ++i) out[i] /= count;
                 }
               });
}

}  // namespace edge::internal
