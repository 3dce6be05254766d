// Fused attention tile, hand-written for AVX-512 (f32) and AVX512-BF16
// (bf16): scores, softmax and context of a block of query rows in one
// pass, without oneDNN.
//
// Why: with oneDNN, a tile is three primitives (matmul, softmax, matmul).
// The matmuls read q, k and v in place through strided descriptors, which
// oneDNN 2.6 serves with gemm:jit at about 160 GFLOP/s per core in f32
// (350 in bf16), against about 255 (516) for its brgemm on the large
// matmuls; and the softmax is a separate pass over the whole scores matrix
// (a fifth of a tile's time in f32, a third in bf16). Here a block of six query
// rows goes from scores to softmax to context while its scores are in L1:
// the keys (and in bf16 the values, as row pairs) are packed once per
// (image, head), and 24 accumulators per block keep both FMA pipes busy.
// Scores, softmax and accumulation are f32 in both types; in bf16 the
// probabilities are rounded to bf16 before the context product, as with
// oneDNN's tiles. Measured on the 2-core AVX-512 VM: see BENCHMARKS.md.
//
// Thread-safe: the functions touch only their arguments.
#ifndef EDGE_ENGINE_INTERNAL_FUSED_ATTENTION_H_
#define EDGE_ENGINE_INTERNAL_FUSED_ATTENTION_H_

#include <cstddef>
#include <cstdint>

#include "engine/internal/row_kernels.h"

namespace edge::internal {

// True when this CPU can run tiles of `type` (f32: AVX-512 F, BW, VL;
// bf16: also AVX512-BF16) and `head_dim` is a multiple of 16.
bool FusedAttentionSupported(DataType type, int head_dim);

// Bytes of scratch FusedAttentionTile needs, 64-byte aligned.
size_t FusedAttentionScratchBytes(DataType type, int64_t tokens, int head_dim);

// One (image, head) and a block of its query rows:
//   out[i, :] = softmax(q[i, :] k^T * scale) v   for i in [0, rows)
// q, k, v: rows (queries) or `tokens` rows (keys, values) of head_dim
// elements, `ld` elements apart (views into the qkv matrix); out: rows of
// head_dim elements, `ld_out` apart. All of one type, f32 or bf16.
struct TileSpec {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t ld = 0;
  int64_t rows = 0;
  int64_t tokens = 0;
  int head_dim = 0;
  float scale = 1.f;
  void* out = nullptr;
  int64_t ld_out = 0;
};

// Runs one tile. `scratch` is the caller's, of FusedAttentionScratchBytes();
// with `kv_packed` true it already holds this k and v packed by an earlier
// call (a thread running several query blocks of one head packs once).
// REQUIRES: FusedAttentionSupported(type, spec.head_dim).
void FusedAttentionTile(DataType type, const TileSpec& spec, void* scratch,
                        bool kv_packed);

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_FUSED_ATTENTION_H_
