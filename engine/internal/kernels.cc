#include "engine/internal/kernels.h"

#include <cmath>
#include <cstring>

namespace edge::internal {
namespace {

using dnnl::memory;

// Every primitive takes its scratchpad from the caller (see kernels.h).
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}
using Dims = memory::dims;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

// Primitive kinds, the first element of a cache key.
enum Kind { kLinear, kLayerNorm, kSoftmax, kScores, kContext };

memory Wrap(const memory::desc& md, const dnnl::engine& eng, const void* p) {
  return memory(md, eng, const_cast<void*>(p));
}

memory CopyIn(const memory::desc& md, const dnnl::engine& eng,
              const float* src) {
  memory m(md, eng);
  std::memcpy(m.get_data_handle(), src, md.get_size());
  return m;
}

}  // namespace

uint64_t LinearWeights::bytes() const {
  return weights.get_desc().get_size() + bias.get_desc().get_size();
}

Kernels::Kernels() : engine_(dnnl::engine::kind::cpu, 0) {}

dnnl::memory ExecContext::Scratchpad(const memory::desc& md) {
  const size_t need = md.get_size();
  if (need > size_) {
    // 64-byte alignment: what oneDNN's own allocator uses on AVX-512.
    const size_t rounded = (need + 63) / 64 * 64;
    buffer_.reset(std::aligned_alloc(64, rounded));
    if (!buffer_) throw std::bad_alloc();
    size_ = rounded;
  }
  return memory(md, engine_, buffer_.get());
}

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

void Kernels::Execute(ExecContext& x, const Cached& cached,
                      std::unordered_map<int, memory> args) {
  args.emplace(DNNL_ARG_SCRATCHPAD, x.Scratchpad(cached.scratchpad));
  cached.primitive.execute(x.stream(), args);
}

const memory::desc& Kernels::WeightsDesc(int in, int out) {
  auto it = weight_descs_.find({in, out});
  if (it != weight_descs_.end()) return it->second;
  // Ask the matmul which layout it wants; it is the same for every M.
  memory::desc src({1, in}, kF32, Tag::ab);
  memory::desc any({in, out}, kF32, Tag::any);
  memory::desc dst({1, out}, kF32, Tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), engine_);
  return weight_descs_.emplace(std::make_pair(in, out), pd.weights_desc())
      .first->second;
}

uint64_t Kernels::LinearBytes(int in, int out) {
  absl::MutexLock lock(&mu_);
  return WeightsDesc(in, out).get_size() + sizeof(float) * out;
}

LinearWeights Kernels::PrepareLinear(const float* weight, const float* bias,
                                     int in, int out) {
  memory::desc target;
  {
    absl::MutexLock lock(&mu_);
    target = WeightsDesc(in, out);
  }
  // PyTorch's [out, in] row-major is the [in, out] matrix in `ba` order.
  memory::desc plain({in, out}, kF32, Tag::ba);
  LinearWeights w;
  w.in = in;
  w.out = out;
  w.weights = memory(target, engine_);
  dnnl::stream s(engine_);
  memory src = Wrap(plain, engine_, weight);
  dnnl::reorder(src, w.weights).execute(s, src, w.weights);
  s.wait();
  w.bias = CopyIn(memory::desc({1, out}, kF32, Tag::ab), engine_, bias);
  return w;
}

NormWeights Kernels::PrepareNorm(const float* scale, const float* shift,
                                 int dim) {
  memory::desc md({dim}, kF32, Tag::a);
  return {CopyIn(md, engine_, scale), CopyIn(md, engine_, shift)};
}

void Kernels::Linear(ExecContext& x, const LinearWeights& w, int64_t m,
                     const float* src, float* dst, Epilogue epilogue) {
  const memory::desc src_md({m, w.in}, kF32, Tag::ab);
  const memory::desc dst_md({m, w.out}, kF32, Tag::ab);
  const Key key{kLinear, m, w.in, w.out, static_cast<int>(epilogue), 0.f};
  const Cached prim = Get<dnnl::matmul>(key, [&] {
    dnnl::post_ops ops;
    if (epilogue == Epilogue::kGelu) {
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
    } else if (epilogue == Epilogue::kAccumulate) {
      ops.append_sum(1.f);
    }
    dnnl::primitive_attr attr = UserScratchpad();
    attr.set_post_ops(ops);
    return dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(src_md, w.weights.get_desc(), w.bias.get_desc(),
                           dst_md),
        attr, engine_);
  });
  Execute(x, prim,
          {{DNNL_ARG_SRC, Wrap(src_md, engine_, src)},
           {DNNL_ARG_WEIGHTS, w.weights},
           {DNNL_ARG_BIAS, w.bias},
           {DNNL_ARG_DST, Wrap(dst_md, engine_, dst)}});
}

void Kernels::LayerNorm(ExecContext& x, const NormWeights& w, int64_t m, int d,
                        float eps, const float* src, float* dst) {
  const memory::desc md({m, d}, kF32, Tag::ab);
  const Cached prim = Get<dnnl::layer_normalization_forward>(
      Key{kLayerNorm, m, d, 0, 0, eps}, [&] {
        using dnnl::normalization_flags;
        return dnnl::layer_normalization_forward::primitive_desc(
            dnnl::layer_normalization_forward::desc(
                dnnl::prop_kind::forward_inference, md, eps,
                normalization_flags::use_scale |
                    normalization_flags::use_shift),
            UserScratchpad(), engine_);
      });
  Execute(x, prim,
          {{DNNL_ARG_SRC, Wrap(md, engine_, src)},
           {DNNL_ARG_SCALE, w.scale},
           {DNNL_ARG_SHIFT, w.shift},
           {DNNL_ARG_DST, Wrap(md, engine_, dst)}});
}

void Kernels::Softmax(ExecContext& x, int64_t rows, int cols, float* data) {
  const memory::desc md({rows, cols}, kF32, Tag::ab);
  const Cached prim =
      Get<dnnl::softmax_forward>(Key{kSoftmax, rows, cols, 0, 0, 0.f}, [&] {
        return dnnl::softmax_forward::primitive_desc(
            dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, md,
                                        1),
            UserScratchpad(), engine_);
      });
  memory m = Wrap(md, engine_, data);
  Execute(x, prim, {{DNNL_ARG_SRC, m}, {DNNL_ARG_DST, m}});
}

void Kernels::Attention(ExecContext& x, int batch, int tokens, int heads,
                        int head_dim, const float* qkv, float* scores,
                        float* out) {
  const int64_t b = batch, t = tokens, h = heads, dh = head_dim;
  const int64_t d = h * dh;
  // Views into qkv [b, t, 3, h, dh]: q and v as [b, h, t, dh], k^T as
  // [b, h, dh, t]; no copies.
  const Dims qkv_strides{t * 3 * d, dh, 3 * d, 1};
  const memory::desc q_md({b, h, t, dh}, kF32, qkv_strides);
  const memory::desc kt_md({b, h, dh, t}, kF32, Dims{t * 3 * d, dh, 1, 3 * d});
  const memory::desc scores_md({b, h, t, t}, kF32, Tag::abcd);
  const memory::desc out_md({b, h, t, dh}, kF32, Dims{t * d, dh, d, 1});
  const Key key{kScores, b, t, h, static_cast<int>(dh), 0.f};

  const Cached qk = Get<dnnl::matmul>(key, [&] {
    dnnl::primitive_attr attr = UserScratchpad();
    attr.set_output_scales(0, {1.0f / std::sqrt(static_cast<float>(dh))});
    return dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(q_md, kt_md, scores_md), attr, engine_);
  });
  Execute(x, qk,
          {{DNNL_ARG_SRC, Wrap(q_md, engine_, qkv)},
           {DNNL_ARG_WEIGHTS, Wrap(kt_md, engine_, qkv + d)},
           {DNNL_ARG_DST, Wrap(scores_md, engine_, scores)}});

  Softmax(x, b * h * t, tokens, scores);

  const Cached av =
      Get<dnnl::matmul>(Key{kContext, b, t, h, static_cast<int>(dh), 0.f}, [&] {
        return dnnl::matmul::primitive_desc(
            dnnl::matmul::desc(scores_md, q_md, out_md), UserScratchpad(),
            engine_);
      });
  Execute(x, av,
          {{DNNL_ARG_SRC, Wrap(scores_md, engine_, scores)},
           {DNNL_ARG_WEIGHTS, Wrap(q_md, engine_, qkv + 2 * d)},
           {DNNL_ARG_DST, Wrap(out_md, engine_, out)}});
}

}  // namespace edge::internal
