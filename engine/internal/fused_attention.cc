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

// Every function that uses intrinsics carries the target itself, so the
// file builds for
// the baseline ISA and FusedAttentionSupported() checks the CPU. One target
// for all: GCC inlines a callee only into callers whose target includes
// its own, and the micro-kernel is shared. The f32 instantiations use no
// AVX512-BF16 instruction (they are only run where AVX-512 F/BW/VL are).
#define EDGE_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

// Query rows per block and vectors (of 16 outputs) per accumulator row:
// 6 x 4 accumulators + 4 loaded vectors + 1 broadcast = 29 of the 32 zmm
// registers, and 24 independent FMA chains cover the FMA latency (4
// cycles) on two pipes with room to spare.
constexpr int kRowBlock = 6;
constexpr int kVectors = 4;
constexpr int kLanes = 16;

int64_t PaddedTokens(int64_t tokens) {
  return (tokens + kLanes - 1) / kLanes * kLanes;
}

// The two element types. The micro-kernel works on 32-bit words: one f32,
// or a pair of bf16 that vdpbf16ps multiplies and adds in one step (so for
// bf16 the reduction runs over pairs, and both operands of a product hold
// the pair of one reduction step in one word).
struct F32 {
  using Element = float;
  static constexpr int kPerWord = 1;
  EDGE_AVX512 static __m512 MultiplyAdd(__m512 acc, __m512i a, __m512i b) {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), acc);
  }
  EDGE_AVX512 static void Store16(float* dst, __m512 v) {
    _mm512_storeu_ps(dst, v);
  }
};

struct Bf16 {
  using Element = uint16_t;
  static constexpr int kPerWord = 2;
  EDGE_AVX512 static __m512 MultiplyAdd(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(a),
                            reinterpret_cast<__m512bh>(b));
  }
  EDGE_AVX512 static void Store16(uint16_t* dst, __m512 v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                        reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
  }
};

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

// Transposes the 16 x 16 block of 32-bit words at `src` (rows `ld` words
// apart) into `dst` (rows `ld_dst` apart): unpack pairs, then 4-float lanes,
// then 128-bit lanes twice, 64 shuffles for 256 floats.
EDGE_AVX512 void Transpose16x16(const uint32_t* src, int64_t ld, uint32_t* dst,
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
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ld_dst, r[i]);
}

// kp[w * padded + j] = word w of key j (k viewed as words, `ld` words
// apart); keys tokens..padded are zero. Whole 16 x 16 blocks are
// transposed in registers, the rest (the last keys, and the words past a
// multiple of 16 when a bf16 head_dim is an odd multiple of 16) word by
// word.
EDGE_AVX512 void PackKeys(const uint32_t* k, int64_t ld, int64_t tokens,
                          int words, int64_t padded, uint32_t* kp) {
  const int64_t full_keys = tokens / kLanes * kLanes;
  const int full_words = words / kLanes * kLanes;
  for (int64_t j0 = 0; j0 < full_keys; j0 += kLanes) {
    for (int w0 = 0; w0 < full_words; w0 += kLanes) {
      Transpose16x16(k + j0 * ld + w0, ld, kp + w0 * padded + j0, padded);
    }
  }
  for (int w = 0; w < words; ++w) {
    uint32_t* row = kp + w * padded;
    for (int64_t j = w < full_words ? full_keys : 0; j < tokens; ++j) {
      row[j] = k[j * ld + w];
    }
    std::fill(row + tokens, row + padded, 0u);
  }
}

// bf16 values as the context's second operand: word (u, c) of vp holds
// v[2u, c] and v[2u + 1, c] (zero past the last token).
EDGE_AVX512 void PackValuePairs(const uint16_t* v, int64_t ld, int64_t tokens,
                                int head_dim, uint32_t* vp) {
  alignas(64) static constexpr uint16_t kInterleave[32] = {
      0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
      8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i order = _mm512_load_si512(kInterleave);
  for (int64_t u = 0; 2 * u < tokens; ++u) {
    const uint16_t* even = v + 2 * u * ld;
    const uint16_t* odd = 2 * u + 1 < tokens ? even + ld : nullptr;
    for (int c = 0; c < head_dim; c += kLanes) {
      const __m256i lo =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(even + c));
      const __m256i hi =
          odd ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(odd + c))
              : _mm256_setzero_si256();
      const __m512i both =
          _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      _mm512_storeu_si512(vp + u * head_dim + c,
                          _mm512_permutexvar_epi16(order, both));
    }
  }
}

// The micro-kernel of both products: for r < RB and vector v < NV,
//   acc[r][v] = sum_{i < depth} a[r * lda + i] (x) b[i * ldb + 16 v + lane]
// over words (rows of `a` broadcast, NV vectors of each row of `b`
// loaded), (x) being E's multiply-add of one word.
template <typename E, int RB, int NV>
EDGE_AVX512 inline void MultiplyBlock(const uint32_t* a, int64_t lda,
                                      const uint32_t* b, int64_t ldb,
                                      int64_t depth, __m512 (&acc)[RB][NV]) {
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  for (int64_t i = 0; i < depth; ++i) {
    __m512i row[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      row[v] = _mm512_loadu_si512(b + i * ldb + v * kLanes);
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) {
      const __m512i broadcast =
          _mm512_set1_epi32(static_cast<int>(a[r * lda + i]));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        acc[r][v] = E::MultiplyAdd(acc[r][v], broadcast, row[v]);
      }
    }
  }
}

// Where one tile's operands and scratch are; pointers to words.
struct TileArgs {
  const uint32_t* q;
  int64_t ld;  // words between rows of q (and of k, v in qkv)
  int64_t tokens;
  int64_t padded;
  int head_dim;
  float scale;
  const uint32_t* keys;    // packed, head_dim / kPerWord rows of `padded`
  const uint32_t* values;  // f32: v itself; bf16: pairs (PackValuePairs)
  int64_t ld_values;       // words between rows of `values`
  float* scores;           // kRowBlock x padded
  uint32_t* probs;         // kRowBlock x padded elements
  void* out;
  int64_t ld_out;  // elements between rows of out
};

// scores[r, j0 + 16 v + lane] = q[r, :] . k[j0 + 16 v + lane, :].
template <typename E, int RB, int NV>
EDGE_AVX512 void ScoresBlock(const TileArgs& t, const uint32_t* q, int64_t j0) {
  __m512 acc[RB][NV];
  MultiplyBlock<E, RB, NV>(q, t.ld, t.keys + j0, t.padded,
                           t.head_dim / E::kPerWord, acc);
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      _mm512_store_ps(t.scores + r * t.padded + j0 + v * kLanes, acc[r][v]);
    }
  }
}

// out[r, c0 + 16 v + lane] = inv[r] * sum_j p[r, j] v[j, c0 + 16 v + lane].
template <typename E, int RB, int NV>
EDGE_AVX512 void ContextBlock(const TileArgs& t, const float* inv, int64_t c0,
                              typename E::Element* out) {
  __m512 acc[RB][NV];
  const int64_t depth = (t.tokens + E::kPerWord - 1) / E::kPerWord;
  MultiplyBlock<E, RB, NV>(t.probs, t.padded / E::kPerWord, t.values + c0,
                           t.ld_values, depth, acc);
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
    const __m512 scale = _mm512_set1_ps(inv[r]);
#pragma GCC unroll 4
    for (int c = 0; c < NV; ++c) {
      E::Store16(out + r * t.ld_out + c0 + c * kLanes,
                 _mm512_mul_ps(acc[r][c], scale));
    }
  }
}

// Row r of the scores becomes e^{(s - max) * scale} in probs (zero past
// `tokens`), and inv[r] the reciprocal of its sum: the division is left to
// the context, which has head_dim columns instead of `tokens`.
template <typename E>
EDGE_AVX512 void SoftmaxRows(const TileArgs& t, int rows, float* inv) {
  const int64_t full = t.tokens / kLanes * kLanes;
  const __mmask16 tail = static_cast<__mmask16>((1u << (t.tokens - full)) - 1);
  const __m512 factor = _mm512_set1_ps(t.scale);
  for (int r = 0; r < rows; ++r) {
    const float* row = t.scores + r * t.padded;
    auto* probs =
        reinterpret_cast<typename E::Element*>(t.probs) + r * t.padded;
    __m512 max = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < full; j += kLanes) {
      max = _mm512_max_ps(max, _mm512_load_ps(row + j));
    }
    if (tail) {
      max = _mm512_mask_max_ps(max, tail, max, _mm512_load_ps(row + full));
    }
    const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(max) * t.scale);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < t.padded; j += kLanes) {
      __m512 e = ExpNonPositive(
          _mm512_fmsub_ps(_mm512_load_ps(row + j), factor, shift));
      if (j == full) e = _mm512_maskz_mov_ps(tail, e);
      E::Store16(probs + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    inv[r] = 1.f / _mm512_reduce_add_ps(sum);
  }
}

// Scores, softmax and context of RB query rows starting at row i0.
template <typename E, int RB>
EDGE_AVX512 void RowBlock(const TileArgs& t, int64_t i0) {
  const uint32_t* q = t.q + i0 * t.ld;
  int64_t j0 = 0;
  for (; j0 + kVectors * kLanes <= t.padded; j0 += kVectors * kLanes) {
    ScoresBlock<E, RB, kVectors>(t, q, j0);
  }
  switch ((t.padded - j0) / kLanes) {
    case 1:
      ScoresBlock<E, RB, 1>(t, q, j0);
      break;
    case 2:
      ScoresBlock<E, RB, 2>(t, q, j0);
      break;
    case 3:
      ScoresBlock<E, RB, 3>(t, q, j0);
      break;
  }
  float inv[RB];
  SoftmaxRows<E>(t, RB, inv);
  auto* out = static_cast<typename E::Element*>(t.out) + i0 * t.ld_out;
  int64_t c0 = 0;
  for (; c0 + kVectors * kLanes <= t.head_dim; c0 += kVectors * kLanes) {
    ContextBlock<E, RB, kVectors>(t, inv, c0, out);
  }
  switch ((t.head_dim - c0) / kLanes) {
    case 1:
      ContextBlock<E, RB, 1>(t, inv, c0, out);
      break;
    case 2:
      ContextBlock<E, RB, 2>(t, inv, c0, out);
      break;
    case 3:
      ContextBlock<E, RB, 3>(t, inv, c0, out);
      break;
  }
}

// Scratch layout, in words from the start: packed keys, scores,
// probabilities, then (bf16) value pairs. Every part starts 64-byte
// aligned: `padded` is a multiple of 16 words.
template <typename E>
struct ScratchLayout {
  ScratchLayout(int64_t tokens, int head_dim)
      : padded(PaddedTokens(tokens)),
        words(head_dim / E::kPerWord),
        scores(words * padded),
        probs(scores + kRowBlock * padded),
        pairs(probs + kRowBlock * padded / E::kPerWord),
        total(pairs + (E::kPerWord == 2 ? (tokens + 1) / 2 * head_dim : 0)) {}
  int64_t padded;                       // tokens rounded up to 16
  int words;                            // words per key row
  int64_t scores, probs, pairs, total;  // offsets, and the size
};

template <typename E>
void Tile(const TileSpec& s, void* scratch, bool kv_packed) {
  const ScratchLayout<E> layout(s.tokens, s.head_dim);
  const int64_t padded = layout.padded;
  const int words = layout.words;
  auto* keys = static_cast<uint32_t*>(scratch);
  auto* scores = reinterpret_cast<float*>(keys + layout.scores);
  uint32_t* probs = keys + layout.probs;
  uint32_t* pairs = keys + layout.pairs;
  const int64_t ld = s.ld / E::kPerWord;
  if (!kv_packed) {
    PackKeys(static_cast<const uint32_t*>(s.k), ld, s.tokens, words, padded,
             keys);
    if constexpr (E::kPerWord == 2) {
      PackValuePairs(static_cast<const uint16_t*>(s.v), s.ld, s.tokens,
                     s.head_dim, pairs);
    }
  }
  const bool f32 = E::kPerWord == 1;
  const TileArgs t{static_cast<const uint32_t*>(s.q),
                   ld,
                   s.tokens,
                   padded,
                   s.head_dim,
                   s.scale,
                   keys,
                   f32 ? static_cast<const uint32_t*>(s.v) : pairs,
                   f32 ? ld : s.head_dim,
                   scores,
                   probs,
                   s.out,
                   s.ld_out};
  int64_t i0 = 0;
  for (; i0 + kRowBlock <= s.rows; i0 += kRowBlock) {
    RowBlock<E, kRowBlock>(t, i0);
  }
  switch (s.rows - i0) {
    case 1:
      RowBlock<E, 1>(t, i0);
      break;
    case 2:
      RowBlock<E, 2>(t, i0);
      break;
    case 3:
      RowBlock<E, 3>(t, i0);
      break;
    case 4:
      RowBlock<E, 4>(t, i0);
      break;
    case 5:
      RowBlock<E, 5>(t, i0);
      break;
  }
}

}  // namespace

bool FusedAttentionSupported(DataType type, int head_dim) {
  static const bool avx512 = __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  static const bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  // The context is stored 16 columns at a time.
  if (head_dim <= 0 || head_dim % kLanes != 0) return false;
  return type == DataType::f32 ? avx512 : type == DataType::bf16 && bf16;
}

size_t FusedAttentionScratchBytes(DataType type, int64_t tokens, int head_dim) {
  return sizeof(uint32_t) *
         static_cast<size_t>(type == DataType::f32
                                 ? ScratchLayout<F32>(tokens, head_dim).total
                                 : ScratchLayout<Bf16>(tokens, head_dim).total);
}

void FusedAttentionTile(DataType type, const TileSpec& spec, void* scratch,
                        bool kv_packed) {
  if (type == DataType::f32) {
    Tile<F32>(spec, scratch, kv_packed);
  } else {
    Tile<Bf16>(spec, scratch, kv_packed);
  }
}

}  // namespace edge::internal
