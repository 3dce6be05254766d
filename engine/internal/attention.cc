// Kernels::Attention: multi-head attention as independent tiles of (image,
// head, block of query rows), spread over the OpenMP threads by hand. Where
// the CPU has AVX-512 (AVX512-BF16 for bf16) and head_dim is a multiple of
// 16, each tile is the engine's fused kernel (fused_attention.h); otherwise
// each thread runs oneDNN primitives single-threaded on its own tiles
// (oneDNN does not open a nested parallel region), as described below.
//
// Why tiles and not one batched matmul -> softmax -> batched matmul over the
// whole batch (the previous design): a tile's scores (rows x T f32; 150 KB
// at T = 196) stay in L2 from the first matmul through the softmax to the
// second, where the batched form streams B*H*T*T floats (7.4 MB at batch 16)
// through memory three times; and one parallel region per block replaces
// three, which matters on a loaded 2-core box where every OpenMP barrier
// waits for a descheduled thread. q, k and v are read in place from the qkv
// matrix through strided memory descriptors: no copies (oneDNN picks
// gemm:jit for the strided operands; dense copies would get brgemm, about
// 10% faster on the two matmuls, which the copies cost back). On this path
// the softmax stays oneDNN's jit primitive: a hand-vectorised one alone
// measured no faster on 196-wide rows; fused into the tile it is (it runs
// on scores still in L1, and the division moves to the context).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <exception>

#include "engine/internal/fused_attention.h"
#include "engine/internal/kernels.h"

namespace edge::internal {
namespace {

using dnnl::memory;
using Dims = memory::dims;
using Tag = memory::format_tag;

size_t ElementBytes(DataType type) { return type == DataType::f32 ? 4 : 2; }

// Query blocks per (image, head): the fewest (at most 4) that give every
// thread the same number of tiles, or at least 8 tiles per thread. Batch 1
// with 3 heads on 2 threads gets 2 blocks (6 tiles) instead of a 2:1 split.
int QueryBlocks(int images_heads, int threads, int tokens) {
  int blocks = 1;
  while (blocks < 4 && blocks < tokens &&
         (images_heads * blocks) % threads != 0 &&
         images_heads * blocks < 8 * threads) {
    ++blocks;
  }
  return blocks;
}

}  // namespace

Kernels::AttentionTile Kernels::AttentionPrimitives(const AttentionShape& s,
                                                    int64_t rows,
                                                    DataType type) {
  const int64_t t = s.tokens, dh = s.head_dim, d3 = 3 * s.heads * dh;
  const int64_t d = s.heads * dh;
  AttentionTile tile;
  // Views of one (image, head, query block) inside qkv and out.
  tile.q = memory::desc({rows, dh}, type, Dims{d3, 1});
  tile.kt = memory::desc({dh, t}, type, Dims{1, d3});
  tile.v = memory::desc({t, dh}, type, Dims{d3, 1});
  tile.scores_md = memory::desc({rows, t}, DataType::f32, Tag::ab);
  tile.probs = memory::desc({rows, t}, type, Tag::ab);
  tile.out = memory::desc({rows, dh}, type, Dims{d, 1});
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  // primitive_attr is a handle: copies share one attribute, so each
  // primitive gets its own.
  auto attr = [] {
    dnnl::primitive_attr a;
    a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return a;
  };
  tile.scores = Get<dnnl::matmul>(
      Key{kScores, rows, t, d3, 0, scale, type, type, DataType::f32}, [&] {
        dnnl::primitive_attr scaled = attr();
        scaled.set_output_scales(0, {scale});
        return dnnl::matmul::primitive_desc(
            dnnl::matmul::desc(tile.q, tile.kt, tile.scores_md), scaled,
            engine_);
      });
  tile.softmax = Get<dnnl::softmax_v2_forward>(
      Key{kTileSoftmax, rows, t, 0, 0, 0.f, DataType::f32, type, type}, [&] {
        return dnnl::softmax_v2_forward::primitive_desc(
            dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference,
                                           dnnl::algorithm::softmax_accurate,
                                           tile.scores_md, tile.probs, 1),
            attr(), engine_);
      });
  tile.context = Get<dnnl::matmul>(
      Key{kContext, rows, t, d3, d, 0.f, type, type, type}, [&] {
        return dnnl::matmul::primitive_desc(
            dnnl::matmul::desc(tile.probs, tile.v, tile.out), attr(), engine_);
      });
  return tile;
}

void Kernels::RunTile(ExecContext::ThreadSlot& slot, const AttentionTile& tile,
                      const void* q, const void* k, const void* v,
                      void* out) const {
  using Args = std::vector<std::pair<int, memory::desc>>;
  BoundCall& scores = slot.calls.Get(tile.scores.primitive, engine_, [&] {
    return Args{{DNNL_ARG_SRC, tile.q},
                {DNNL_ARG_WEIGHTS, tile.kt},
                {DNNL_ARG_DST, tile.scores_md},
                {DNNL_ARG_SCRATCHPAD, tile.scores.scratchpad}};
  });
  BoundCall& softmax = slot.calls.Get(tile.softmax.primitive, engine_, [&] {
    return Args{{DNNL_ARG_SRC, tile.scores_md},
                {DNNL_ARG_DST, tile.probs},
                {DNNL_ARG_SCRATCHPAD, tile.softmax.scratchpad}};
  });
  BoundCall& context = slot.calls.Get(tile.context.primitive, engine_, [&] {
    return Args{{DNNL_ARG_SRC, tile.probs},
                {DNNL_ARG_WEIGHTS, tile.v},
                {DNNL_ARG_DST, tile.out},
                {DNNL_ARG_SCRATCHPAD, tile.context.scratchpad}};
  });
  void* pad = slot.scratchpad.data();
  scores.Set(DNNL_ARG_SRC, q);
  scores.Set(DNNL_ARG_WEIGHTS, k);
  scores.Set(DNNL_ARG_DST, slot.scores.data());
  scores.Set(DNNL_ARG_SCRATCHPAD, pad);
  scores.Execute(slot.stream);
  softmax.Set(DNNL_ARG_SRC, slot.scores.data());
  softmax.Set(DNNL_ARG_DST, slot.probs.data());
  softmax.Set(DNNL_ARG_SCRATCHPAD, pad);
  softmax.Execute(slot.stream);
  context.Set(DNNL_ARG_SRC, slot.probs.data());
  context.Set(DNNL_ARG_WEIGHTS, v);
  context.Set(DNNL_ARG_DST, out);
  context.Set(DNNL_ARG_SCRATCHPAD, pad);
  context.Execute(slot.stream);
}

void Kernels::Attention(ExecContext& x, const AttentionShape& s, MatrixRef qkv,
                        MatrixRef out) {
  const int threads = omp_get_max_threads();
  const int images_heads = s.batch * s.heads;
  const int blocks = QueryBlocks(images_heads, threads, s.tokens);
  if (FusedAttentionSupported(qkv.type, s.head_dim)) {
    FusedAttention(x, s, blocks, qkv, out);
    return;
  }
  // Block i holds queries [T*i/blocks, T*(i+1)/blocks): two sizes at most.
  const int64_t small_rows = s.tokens / blocks;
  const int64_t large_rows = (s.tokens + blocks - 1) / blocks;
  const AttentionTile small = AttentionPrimitives(s, small_rows, qkv.type);
  const AttentionTile large = AttentionPrimitives(s, large_rows, qkv.type);
  ReserveTileSlots(x, threads, {&small, &large}, large_rows * s.tokens,
                   qkv.type);
  const int64_t t = s.tokens, dh = s.head_dim, d = s.heads * dh, d3 = 3 * d;
  const size_t e = ElementBytes(qkv.type);
  const char* in = static_cast<const char*>(qkv.data);
  char* dst = static_cast<char*>(out.data);
  const int64_t tiles = static_cast<int64_t>(images_heads) * blocks;
  // An exception must not leave an OpenMP region: the first is kept and
  // rethrown after it.
  std::exception_ptr error;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < tiles; ++i) try {
      const int64_t b = i / (s.heads * blocks), h = i / blocks % s.heads;
      const int64_t block = i % blocks;
      const int64_t q0 = t * block / blocks, q1 = t * (block + 1) / blocks;
      const char* image = in + b * t * d3 * e;
      RunTile(
          x.slot(omp_get_thread_num()), q1 - q0 == small_rows ? small : large,
          image + (q0 * d3 + h * dh) * e, image + (d + h * dh) * e,
          image + (2 * d + h * dh) * e, dst + ((b * t + q0) * d + h * dh) * e);
    } catch (...) {
#pragma omp critical(edge_attention_error)
      if (!error) error = std::current_exception();
    }
  if (error) std::rethrow_exception(error);
}

void Kernels::FusedAttention(ExecContext& x, const AttentionShape& s,
                             int blocks, MatrixRef qkv, MatrixRef out) {
  const int threads = omp_get_max_threads();
  x.ReserveSlots(threads);
  const size_t scratch =
      FusedAttentionScratchBytes(qkv.type, s.tokens, s.head_dim);
  for (int i = 0; i < threads; ++i) x.slot(i).scores.Reserve(scratch);
  const int64_t t = s.tokens, dh = s.head_dim, d = s.heads * dh, d3 = 3 * d;
  const size_t e = ElementBytes(qkv.type);
  const float scale = 1.f / std::sqrt(static_cast<float>(dh));
  const int64_t tiles = static_cast<int64_t>(s.batch) * s.heads * blocks;
#pragma omp parallel num_threads(threads)
  {
    // Static schedule: each thread's tiles are consecutive, so the query
    // blocks of one (image, head) that share a thread share its packed keys
    // and values.
    const int64_t n = omp_get_num_threads(), thread = omp_get_thread_num();
    void* scratch_bytes = x.slot(thread).scores.data();
    int64_t packed = -1;  // the (image, head) whose keys are packed
    for (int64_t i = tiles * thread / n; i < tiles * (thread + 1) / n; ++i) {
      const int64_t image_head = i / blocks, block = i % blocks;
      const int64_t b = image_head / s.heads, h = image_head % s.heads;
      const int64_t q0 = t * block / blocks, q1 = t * (block + 1) / blocks;
      const char* image = static_cast<const char*>(qkv.data) + b * t * d3 * e;
      TileSpec spec;
      spec.q = image + (q0 * d3 + h * dh) * e;
      spec.k = image + (d + h * dh) * e;
      spec.v = image + (2 * d + h * dh) * e;
      spec.ld = d3;
      spec.rows = q1 - q0;
      spec.tokens = t;
      spec.head_dim = s.head_dim;
      spec.scale = scale;
      spec.out = static_cast<char*>(out.data) + ((b * t + q0) * d + h * dh) * e;
      spec.ld_out = d;
      FusedAttentionTile(qkv.type, spec, scratch_bytes, packed == image_head);
      packed = image_head;
    }
  }
}

void Kernels::ReserveTileSlots(
    ExecContext& x, int threads,
    std::initializer_list<const AttentionTile*> tiles, int64_t tile_elements,
    DataType type) {
  size_t scratch = 1;
  for (const AttentionTile* tile : tiles) {
    for (const Cached* c : {&tile->scores, &tile->softmax, &tile->context}) {
      scratch = std::max(scratch, c->scratchpad.get_size());
    }
  }
  x.ReserveSlots(threads);
  for (int i = 0; i < threads; ++i) {
    ExecContext::ThreadSlot& slot = x.slot(i);
    slot.scratchpad.Reserve(scratch);
    slot.scores.Reserve(sizeof(float) * tile_elements);
    slot.probs.Reserve(ElementBytes(type) * tile_elements);
  }
}

}  // namespace edge::internal
