#include "engine/internal/fused_attention.h"

#include <immintrin.h>

// GCC 12's AVX-512 headers build "undefined" vectors as `__m512 __Y = __Y;`,
// which -Wuninitialized reports in every inlined intrinsic (GCC bug
// 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <algorithm>
#include <limits>

namespace edge::internal {
namespace {

// Every function that uses AVX-512 intrinsics carries the target itself, so
// the file builds for the baseline ISA and the callers check the CPU once.
#define EDGE_AVX512 __attribute__((target("avx512f,fma")))

// Query rows per block and vectors (of 16 floats) per accumulator row:
// 6 x 4 accumulators + 4 loaded vectors + 1 broadcast = 29 of the 32 zmm
// registers, and 24 independent FMA chains cover the FMA latency (4
// cycles) on two pipes with room to spare.
constexpr int kRowBlock = 6;
constexpr int kVectors = 4;
constexpr int kLanes = 16;

int64_t PaddedTokens(int64_t tokens) {
  return (tokens + kLanes - 1) / kLanes * kLanes;
}

// e^x for x <= 0 (scores minus their row maximum): x = n ln2 + r with
// |r| <= ln2 / 2, e^r by its degree-6 Taylor polynomial (relative error
// below 2e-7, about one float ulp), then scaled by 2^n. ln2 is split in
// two parts (Cephes' constants) so that n ln2 is exact enough; inputs
// below -87.3 give 2^-126-ish results, clamped there instead of going
// denormal.
EDGE_AVX512 inline __m512 ExpNonPositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(
      _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  for (const float c : {1.f / 120, 1.f / 24, 1.f / 6, 0.5f, 1.f, 1.f}) {
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  }
  return _mm512_scalef_ps(p, n);
}

// Transposes the 16 x 16 block at `src` (rows `ld` floats apart) into
// `dst` (rows `ld_dst` apart): unpack pairs, then 4-float lanes, then
// 128-bit lanes twice, 64 shuffles for 256 floats.
EDGE_AVX512 void Transpose16x16(const float* src, int64_t ld, float* dst,
                                int64_t ld_dst) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ld);
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
  }
  for (int i = 0; i < 16; ++i) _mm512_store_ps(dst + i * ld_dst, r[i]);
}

// kt[d * padded + j] = k[j * ld + d]; columns tokens..padded are zero.
EDGE_AVX512 void PackKeys(const float* k, int64_t ld, int64_t tokens,
                          int head_dim, int64_t padded, float* kt) {
  const int64_t full = tokens / kLanes * kLanes;
  for (int64_t j0 = 0; j0 < full; j0 += kLanes) {
    for (int d0 = 0; d0 < head_dim; d0 += kLanes) {
      Transpose16x16(k + j0 * ld + d0, ld, kt + d0 * padded + j0, padded);
    }
  }
  for (int d = 0; d < head_dim; ++d) {
    float* row = kt + d * padded;
    for (int64_t j = full; j < tokens; ++j) row[j] = k[j * ld + d];
    std::fill(row + tokens, row + padded, 0.f);
  }
}

// The micro-kernel of both products: for r < RB and vector v < NV,
//   acc[r][v] = sum_{i < depth} a[r * lda + i] * b[i * ldb + 16 v + lane]
// (rows of `a` broadcast, NV vectors of each row of `b` loaded).
template <int RB, int NV>
EDGE_AVX512 inline void MultiplyBlock(const float* a, int64_t lda,
                                      const float* b, int64_t ldb,
                                      int64_t depth, __m512 (&acc)[RB][NV]) {
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < depth; ++i) {
    __m512 row[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      row[v] = _mm512_loadu_ps(b + i * ldb + v * kLanes);
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) {
      const __m512 broadcast = _mm512_set1_ps(a[r * lda + i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        acc[r][v] = _mm512_fmadd_ps(broadcast, row[v], acc[r][v]);
      }
    }
  }
}

// s[r, j0 + 16 v + lane] = q[r, :] . k[j0 + 16 v + lane, :] for RB rows
// and NV vectors of keys.
template <int RB, int NV>
EDGE_AVX512 void ScoresBlock(const float* q, int64_t ld, const float* kt,
                             int64_t padded, int head_dim, int64_t j0,
                             float* s) {
  __m512 acc[RB][NV];
  MultiplyBlock<RB, NV>(q, ld, kt + j0, padded, head_dim, acc);
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      _mm512_store_ps(s + r * padded + j0 + v * kLanes, acc[r][v]);
    }
  }
}

// out[r, c0 + 16 v + lane] = inv[r] * sum_j p[r, j] v[j, c0 + 16 v + lane].
template <int RB, int NV>
EDGE_AVX512 void ContextBlock(const float* p, int64_t padded, const float* v,
                              int64_t ld, int64_t tokens, const float* inv,
                              int64_t c0, float* out, int64_t ld_out) {
  __m512 acc[RB][NV];
  MultiplyBlock<RB, NV>(p, padded, v + c0, ld, tokens, acc);
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
    const __m512 scale = _mm512_set1_ps(inv[r]);
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) {
      _mm512_storeu_ps(out + r * ld_out + c0 + c * kLanes,
                       _mm512_mul_ps(acc[r][c], scale));
    }
  }
}

// Row r of s becomes e^{(s - max) * scale} (zero past `tokens`), and
// inv[r] the reciprocal of its sum: the division is left to the context,
// which has head_dim columns instead of `tokens`.
EDGE_AVX512 void SoftmaxRows(float* s, int rows, int64_t padded, int64_t tokens,
                             float scale, float* inv) {
  const int64_t full = tokens / kLanes * kLanes;
  const __mmask16 tail = static_cast<__mmask16>((1u << (tokens - full)) - 1);
  const __m512 lowest = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * padded;
    __m512 max = lowest;
    for (int64_t j = 0; j < full; j += kLanes) {
      max = _mm512_max_ps(max, _mm512_load_ps(row + j));
    }
    if (tail)
      max = _mm512_mask_max_ps(max, tail, max, _mm512_load_ps(row + full));
    const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(max) * scale);
    const __m512 factor = _mm512_set1_ps(scale);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < full; j += kLanes) {
      const __m512 e = ExpNonPositive(
          _mm512_fmsub_ps(_mm512_load_ps(row + j), factor, shift));
      _mm512_store_ps(row + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    if (tail) {
      const __m512 e = _mm512_maskz_mov_ps(
          tail, ExpNonPositive(_mm512_fmsub_ps(_mm512_load_ps(row + full),
                                               factor, shift)));
      _mm512_store_ps(row + full, e);
      sum = _mm512_add_ps(sum, e);
    }
    inv[r] = 1.f / _mm512_reduce_add_ps(sum);
  }
}

struct TileArgs {
  const float* q;
  const float* v;
  int64_t ld;
  int64_t tokens;
  int64_t padded;
  int head_dim;
  float scale;
  const float* kt;
  float* block;  // kRowBlock x padded scores, then probabilities.
  float* out;
  int64_t ld_out;
};

// Scores, softmax and context of RB query rows starting at row i0.
template <int RB>
EDGE_AVX512 void RowBlock(const TileArgs& a, int64_t i0) {
  const float* q = a.q + i0 * a.ld;
  int64_t j0 = 0;
  for (; j0 + kVectors * kLanes <= a.padded; j0 += kVectors * kLanes) {
    ScoresBlock<RB, kVectors>(q, a.ld, a.kt, a.padded, a.head_dim, j0, a.block);
  }
  switch ((a.padded - j0) / kLanes) {
    case 1:
      ScoresBlock<RB, 1>(q, a.ld, a.kt, a.padded, a.head_dim, j0, a.block);
      break;
    case 2:
      ScoresBlock<RB, 2>(q, a.ld, a.kt, a.padded, a.head_dim, j0, a.block);
      break;
    case 3:
      ScoresBlock<RB, 3>(q, a.ld, a.kt, a.padded, a.head_dim, j0, a.block);
      break;
  }
  float inv[RB];
  SoftmaxRows(a.block, RB, a.padded, a.tokens, a.scale, inv);
  float* out = a.out + i0 * a.ld_out;
  int64_t c0 = 0;
  for (; c0 + kVectors * kLanes <= a.head_dim; c0 += kVectors * kLanes) {
    ContextBlock<RB, kVectors>(a.block, a.padded, a.v, a.ld, a.tokens, inv, c0,
                               out, a.ld_out);
  }
  switch ((a.head_dim - c0) / kLanes) {
    case 1:
      ContextBlock<RB, 1>(a.block, a.padded, a.v, a.ld, a.tokens, inv, c0, out,
                          a.ld_out);
      break;
    case 2:
      ContextBlock<RB, 2>(a.block, a.padded, a.v, a.ld, a.tokens, inv, c0, out,
                          a.ld_out);
      break;
    case 3:
      ContextBlock<RB, 3>(a.block, a.padded, a.v, a.ld, a.tokens, inv, c0, out,
                          a.ld_out);
      break;
  }
}

}  // namespace

bool FusedAttentionSupported(int head_dim) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512 && head_dim > 0 && head_dim % kLanes == 0;
}

size_t FusedAttentionScratchFloats(int64_t tokens, int head_dim) {
  return static_cast<size_t>(PaddedTokens(tokens)) * (head_dim + kRowBlock);
}

void FusedAttentionTile(const float* q, const float* k, const float* v,
                        int64_t ld, int64_t rows, int64_t tokens, int head_dim,
                        float scale, float* out, int64_t ld_out, float* scratch,
                        bool keys_packed) {
  const int64_t padded = PaddedTokens(tokens);
  if (!keys_packed) PackKeys(k, ld, tokens, head_dim, padded, scratch);
  const TileArgs a{q,      v,       ld,
                   tokens, padded,  head_dim,
                   scale,  scratch, scratch + head_dim * padded,
                   out,    ld_out};
  int64_t i0 = 0;
  for (; i0 + kRowBlock <= rows; i0 += kRowBlock) RowBlock<kRowBlock>(a, i0);
  switch (rows - i0) {
    case 1:
      RowBlock<1>(a, i0);
      break;
    case 2:
      RowBlock<2>(a, i0);
      break;
    case 3:
      RowBlock<3>(a, i0);
      break;
    case 4:
      RowBlock<4>(a, i0);
      break;
    case 5:
      RowBlock<5>(a, i0);
      break;
  }
}

}  // namespace edge::internal
