// Kernels: the engine's oneDNN primitives, created on first use of a shape
// and reused for every later call (oneDNN's own advice: build primitives
// once, only execute() on the hot path).
//
// Primitives do not depend on weight values, only on shapes, so every
// expert of a layer shares one primitive per token count. Weight layouts do
// not depend on the token count either (checked on oneDNN 2.6 for f32 and
// bf16): weights are reordered once, at load, into the layout the matmul
// prefers, and that layout serves every M.
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
#include <cstdlib>
#include <memory>
#include <tuple>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
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
  dnnl::memory weights;  // [K, N] in the matmul's preferred layout.
  dnnl::memory bias;     // [1, N] f32.
  // Bytes held (weights + bias).
  uint64_t bytes() const;
};

// LayerNorm scale and shift, each [D] f32.
struct NormWeights {
  dnnl::memory scale;
  dnnl::memory shift;
};

// One caller's stream and scratchpad. The scratchpad grows to the largest
// any primitive asked for and is then reused: no allocation per call.
// Not thread-safe: one per concurrent caller.
class ExecContext {
 public:
  explicit ExecContext(const dnnl::engine& engine)
      : engine_(engine), stream_(engine) {}
  dnnl::stream& stream() { return stream_; }
  // A scratchpad memory object of `md`'s size over this context's buffer.
  dnnl::memory Scratchpad(const dnnl::memory::desc& md);

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::unique_ptr<void, Free> buffer_;
  size_t size_ = 0;
};

class Kernels {
 public:
  Kernels();

  const dnnl::engine& engine() const { return engine_; }

  // Copies PyTorch's `weight` [out, in] and `bias` [out] (row-major f32)
  // into a new LinearWeights in the preferred layout.
  LinearWeights PrepareLinear(const float* weight, const float* bias, int in,
                              int out);
  // Bytes PrepareLinear() would hold for this shape.
  uint64_t LinearBytes(int in, int out);
  NormWeights PrepareNorm(const float* scale, const float* shift, int dim);

  // dst[m, out] (op)= src[m, in] W^T + b.
  void Linear(ExecContext& x, const LinearWeights& w, int64_t m,
              const float* src, float* dst, Epilogue epilogue);
  // dst[m, d] = LayerNorm(src[m, d]); src may equal dst.
  void LayerNorm(ExecContext& x, const NormWeights& w, int64_t m, int d,
                 float eps, const float* src, float* dst);
  // In place softmax over each row of data[rows, cols].
  void Softmax(ExecContext& x, int64_t rows, int cols, float* data);
  // Multi-head attention core for `batch` images of `tokens` tokens:
  // qkv is [batch, tokens, 3, heads, head_dim] (MODEL_SPEC's column layout),
  // scores is scratch of batch*heads*tokens*tokens floats, out is
  // [batch, tokens, heads, head_dim] = softmax(q k^T / sqrt(head_dim)) v.
  void Attention(ExecContext& x, int batch, int tokens, int heads, int head_dim,
                 const float* qkv, float* scores, float* out);

 private:
  using Key = std::tuple<int, int64_t, int64_t, int64_t, int, float>;
  const dnnl::memory::desc& WeightsDesc(int in, int out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  struct Cached {
    dnnl::primitive primitive;
    dnnl::memory::desc scratchpad;
  };
  // The primitive cached under `key`, built on first use from the
  // primitive_desc `make` returns (which must use scratchpad_mode::user).
  template <typename Primitive, typename Make>
  Cached Get(const Key& key, Make make) ABSL_LOCKS_EXCLUDED(mu_);
  // Executes a cached primitive with the caller's scratchpad.
  static void Execute(ExecContext& x, const Cached& cached,
                      std::unordered_map<int, dnnl::memory> args);

  const dnnl::engine engine_;
  absl::Mutex mu_;
  absl::flat_hash_map<Key, Cached> primitives_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::pair<int, int>, dnnl::memory::desc> weight_descs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_KERNELS_H_
