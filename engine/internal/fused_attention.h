// Fused float32 attention tile, hand-written for AVX-512: scores, softmax
// and context of a block of query rows in one pass, without oneDNN.
//
// Why: with oneDNN, a tile is three primitives (matmul, softmax, matmul).
// The matmuls read q, k and v in place through strided descriptors, which
// oneDNN 2.6 serves with gemm:jit at about 160 GFLOP/s per core, against
// about 255 for its brgemm on the large matmuls; and the softmax is a
// separate pass over the whole scores matrix (18% of a tile's time). Here a
// block of six query rows goes from scores to softmax to context while its
// scores are in L1: the keys are transposed once per (image, head) into a
// packed buffer, values are read in place, and 24 accumulators per block
// keep both FMA pipes busy. Measured on the 2-core AVX-512 VM: see
// BENCHMARKS.md ("Attention tiles").
//
// Thread-safe: the functions touch only their arguments.
#ifndef EDGE_ENGINE_INTERNAL_FUSED_ATTENTION_H_
#define EDGE_ENGINE_INTERNAL_FUSED_ATTENTION_H_

#include <cstddef>
#include <cstdint>

namespace edge::internal {

// True when this CPU has AVX-512F and `head_dim` is a multiple of 16 (one
// vector of floats), the conditions of FusedAttentionTile.
bool FusedAttentionSupported(int head_dim);

// Floats of scratch FusedAttentionTile needs for `tokens` keys.
size_t FusedAttentionScratchFloats(int64_t tokens, int head_dim);

// One (image, head) and a block of its query rows:
//   out[i, :] = softmax(q[i, :] k^T * scale) v   for i in [0, rows)
// q, k, v: rows (queries) or `tokens` rows (keys, values) of head_dim floats,
// `ld` floats apart (they are views into the qkv matrix); out: rows of
// head_dim floats, `ld_out` apart. `packed_keys` is the caller's scratch of
// FusedAttentionScratchFloats(); with `keys_packed` true it already holds
// these keys from an earlier call with the same k (a thread running several
// query blocks of one head packs once).
// REQUIRES: FusedAttentionSupported(head_dim).
void FusedAttentionTile(const float* q, const float* k, const float* v,
                        int64_t ld, int64_t rows, int64_t tokens, int head_dim,
                        float scale, float* out, int64_t ld_out, float* scratch,
                        bool keys_packed);

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_FUSED_ATTENTION_H_
