// Kernels: the engine's oneDNN primitives, created on first use of a shape
// and data types and reused for every later call (oneDNN's own advice: build
// primitives once, only execute() on the hot path).
//
// Primitives do not depend on weight values, only on shapes and types, so
// every expert of a layer shares one primitive per token count. Weight
// layouts do not depend on the token count (checked on oneDNN 2.6 for f32,
// bf16 and s8): weights are reordered once, at load, into the layout the
// matmul prefers, and that layout serves every M.
//
// Precision: a linear layer's weights are f32, bf16 (computed with f32
// accumulation, brg:avx512_core_bf16) or s8 with a float scale per output
// channel. An s8 layer takes u8 activations quantised with one scale and
// zero point per matrix (MatrixRef) and runs an int8 matmul (VNNI) whose
// output scales (src_scale * weight_scale[n]) and zero point are passed at
// execution time.
//
// Thread-safe: primitives are created under a mutex and executed without it.
// Every primitive uses a user-provided scratchpad (scratchpad_mode::user):
// with oneDNN's default library scratchpad, shared by all primitives, a
// primitive must not run on a thread other than its creator's, and results
// from concurrent Run() calls were wrong (measured). Each caller brings its
// own ExecContext, so shared primitives run concurrently on private memory.
// All methods may throw dnnl::error; VmoeEngine converts it to absl::Status.
#ifndef EDGE_ENGINE_INTERNAL_KERNELS_H_
#define EDGE_ENGINE_INTERNAL_KERNELS_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "engine/internal/aligned_buffer.h"
#include "engine/internal/bound_call.h"
#include "engine/internal/row_kernels.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace edge::internal {

// What a linear layer does after `x W^T + b`.
enum class Epilogue {
  kStore,       // dst = x W^T + b
  kGelu,        // dst = GELU_erf(x W^T + b): MLP fc1, fused as a post-op.
  kAccumulate,  // dst += x W^T + b: residual add, fused as a sum post-op.
};

// A linear layer's weights in oneDNN's preferred layout, plus its bias.
struct LinearWeights {
  int in = 0;            // K
  int out = 0;           // N
  dnnl::memory weights;  // [K, N] f32, bf16 or s8, in the preferred layout.
  dnnl::memory bias;     // [1, N] f32.
  // s8 weights only: the real weight is scales[n] * weights[k, n].
  std::vector<float> scales;

  DataType type() const { return weights.get_desc().data_type(); }
  // Bytes held (weights + bias + scales).
  uint64_t bytes() const;
};

// A weight matrix as stored: PyTorch's [out, in], row-major.
struct WeightSource {
  const void* data = nullptr;
  DataType type = DataType::f32;  // f32, bf16 or s8.
  const float* scales = nullptr;  // s8: [out] per-output-channel scales.
};

// LayerNorm scale and shift, each [D] f32.
struct NormWeights {
  std::vector<float> scale;
  std::vector<float> shift;
};

// One caller's streams and scratch memory. Buffers grow to the largest any
// call asked for and are then reused: no allocation per call.
// Not thread-safe: one per concurrent caller; slot i is used only by
// OpenMP thread i of that caller's parallel regions.
class ExecContext {
 public:
  // Scratch of one OpenMP thread in hand-parallelised kernels (attention).
  struct ThreadSlot {
    explicit ThreadSlot(const dnnl::engine& engine) : stream(engine) {}
    dnnl::stream stream;
    AlignedBuffer scratchpad;
    AlignedBuffer scores;  // a tile's f32 scores, or a fused tile's scratch
    AlignedBuffer probs;   // softmax output, activation type.
    CallCache calls;
  };

  explicit ExecContext(const dnnl::engine& engine)
      : engine_(engine), stream_(engine) {}
  dnnl::stream& stream() { return stream_; }
  // This context's scratchpad, grown to at least `bytes`.
  void* Scratchpad(size_t bytes);
  CallCache& calls() { return calls_; }
  // Makes slots 0 .. threads-1 exist. Call outside parallel regions.
  void ReserveSlots(int threads);
  ThreadSlot& slot(int thread) { return *slots_[thread]; }
  // Per-call output scales and bias of an int8 layer, [N] f32 each.
  AlignedBuffer& quant_scales() { return quant_scales_; }
  AlignedBuffer& quant_bias() { return quant_bias_; }

 private:
  dnnl::engine engine_;
  dnnl::stream stream_;
  AlignedBuffer scratchpad_;
  CallCache calls_;
  std::vector<std::unique_ptr<ThreadSlot>> slots_;
  AlignedBuffer quant_scales_;
  AlignedBuffer quant_bias_;
};

// Shape of one multi-head attention call.
struct AttentionShape {
  int batch = 0;
  int tokens = 0;  // T
  int heads = 0;   // H
  int head_dim = 0;
};

class Kernels {
 public:
  Kernels();

  const dnnl::engine& engine() const { return engine_; }

  // Reorders `weight` ([out, in], row-major) into a new LinearWeights of
  // type `target` in the preferred layout, with `bias` [out] f32.
  // f32 and bf16 convert into each other; s8 stays s8 (with its scales).
  LinearWeights PrepareLinear(const WeightSource& weight, const float* bias,
                              int in, int out, DataType target);
  // Bytes PrepareLinear() would hold for this shape and target type.
  uint64_t LinearBytes(int in, int out, DataType target);

  // dst[m, out] (op)= src[m, in] W^T + b. src has the weights' type (u8
  // for s8 weights); dst is f32 or (for f32/bf16 weights) bf16.
  void Linear(ExecContext& x, const LinearWeights& w, int64_t m, MatrixRef src,
              MatrixRef dst, Epilogue epilogue);
  // In place softmax over each row of data[rows, cols], f32.
  void Softmax(ExecContext& x, int64_t rows, int cols, float* data);
  // Multi-head attention core: qkv is [batch, tokens, 3, heads, head_dim]
  // (docs/model-spec.md's column layout) and out [batch, tokens, heads,
  // head_dim], both of type `qkv.type` (f32 or bf16): out = softmax(q k^T /
  // sqrt(head_dim)) v, scores and softmax in f32.
  void Attention(ExecContext& x, const AttentionShape& shape, MatrixRef qkv,
                 MatrixRef out);

 private:
  // Primitive kinds, the first element of a cache key.
  enum Kind { kLinear, kSoftmax, kScores, kTileSoftmax, kContext };
  // kind, up to three sizes, an epilogue, a float, and three data types.
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int, float, DataType,
                         DataType, DataType>;
  const dnnl::memory::desc& WeightsDesc(int in, int out, DataType type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct Cached {
    dnnl::primitive primitive;
    dnnl::memory::desc scratchpad;
  };
  // The primitive cached under `key`, built on first use from the
  // primitive_desc `make` returns (which must use scratchpad_mode::user).
  template <typename Primitive, typename Make>
  Cached Get(const Key& key, Make make) ABSL_LOCKS_EXCLUDED(mu_);
  Cached LinearPrimitive(const LinearWeights& w, int64_t m, DataType src,
                         DataType dst, Epilogue epilogue);
  // The primitives of one attention tile of `rows` queries, and the memory
  // descriptors of its operands.
  struct AttentionTile {
    Cached scores, softmax, context;
    dnnl::memory::desc q, kt, v, scores_md, probs, out;
  };
  AttentionTile AttentionPrimitives(const AttentionShape& s, int64_t rows,
                                    DataType type);
  // Attention() on the fused AVX-512 tiles (fused_attention.h), each
  // (image, head) split into `blocks` query blocks.
  void FusedAttention(ExecContext& x, const AttentionShape& s, int blocks,
                      MatrixRef qkv, MatrixRef out);
  // scores -> softmax -> context of one tile, on the calling thread.
  void RunTile(ExecContext::ThreadSlot& slot, const AttentionTile& tile,
               const void* q, const void* k, const void* v, void* out) const;
  // Gives each of `threads` slots scratch for the largest of `tiles`.
  static void ReserveTileSlots(
      ExecContext& x, int threads,
      std::initializer_list<const AttentionTile*> tiles, int64_t tile_elements,
      DataType type);
  dnnl::memory Wrap(const dnnl::memory::desc& md, const void* p) const;

  const dnnl::engine engine_;
  absl::Mutex mu_;
  absl::flat_hash_map<Key, Cached> primitives_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::tuple<int, int, DataType>, dnnl::memory::desc>
      weight_descs_ ABSL_GUARDED_BY(mu_);
};

// Implementation details follow.

template <typename Primitive, typename Make>
Kernels::Cached Kernels::Get(const Key& key, Make make) {
  absl::MutexLock lock(&mu_);
  auto it = primitives_.find(key);
  if (it == primitives_.end()) {
    auto pd = make();
    it = primitives_.emplace(key, Cached{Primitive(pd), pd.scratchpad_desc()})
             .first;
  }
  return it->second;
}

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_KERNELS_H_
