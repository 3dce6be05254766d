#include "engine/internal/kernels.h"

#include <algorithm>
#include <cstring>

namespace edge::internal {
namespace {

using dnnl::memory;
using Tag = memory::format_tag;

// Every primitive takes its scratchpad from the caller (see kernels.h).
dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// An int8 matmul's output scales, one per output channel (mask: dim 1 of
// [M, N]), and its source zero point, given at execution time because the
// activation quantisation changes with every call. (Runtime scales make
// oneDNN 2.6 pick gemm:jit, its VNNI int8 GEMM, not brg:avx512_core_vnni;
// brgemm with the scales as binary post-ops measured slower, 1.0 vs
// 0.55 ms for expert fc1 at M = 784, one thread.)
void SetRuntimeQuantization(dnnl::primitive_attr& attr) {
  attr.set_output_scales(1 << 1, {DNNL_RUNTIME_F32_VAL});
  attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
}

// The activation type a layer with weights of type `weights` reads.
DataType SourceType(DataType weights) {
  return weights == DataType::s8 ? DataType::u8 : weights;
}

dnnl::post_ops EpilogueOps(Epilogue epilogue) {
  dnnl::post_ops ops;
  if (epilogue == Epilogue::kGelu) {
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
  } else if (epilogue == Epilogue::kAccumulate) {
    ops.append_sum(1.f);
  }
  return ops;
}

}  // namespace

uint64_t LinearWeights::bytes() const {
  return weights.get_desc().get_size() + bias.get_desc().get_size() +
         sizeof(float) * scales.size();
}

Kernels::Kernels() : engine_(dnnl::engine::kind::cpu, 0) {}

void* ExecContext::Scratchpad(size_t bytes) {
  scratchpad_.Reserve(std::max<size_t>(bytes, 1));
  return scratchpad_.data();
}

void ExecContext::ReserveSlots(int threads) {
  while (static_cast<int>(slots_.size()) < threads) {
    slots_.push_back(std::make_unique<ThreadSlot>(engine_));
  }
}

memory Kernels::Wrap(const memory::desc& md, const void* p) const {
  return memory(md, engine_, const_cast<void*>(p));
}

const memory::desc& Kernels::WeightsDesc(int in, int out, DataType type) {
  const auto key = std::make_tuple(in, out, type);
  auto it = weight_descs_.find(key);
  if (it != weight_descs_.end()) return it->second;
  // Ask the matmul which layout it wants; it is the same for every M.
  memory::desc src({1, in}, SourceType(type), Tag::ab);
  memory::desc any({in, out}, type, Tag::any);
  memory::desc dst({1, out}, DataType::f32, Tag::ab);
  dnnl::primitive_attr attr;
  if (type == DataType::s8) SetRuntimeQuantization(attr);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any, dst), attr,
                                  engine_);
  return weight_descs_.emplace(key, pd.weights_desc()).first->second;
}

uint64_t Kernels::LinearBytes(int in, int out, DataType target) {
  absl::MutexLock lock(&mu_);
  const uint64_t scales = target == DataType::s8 ? sizeof(float) * out : 0;
  return WeightsDesc(in, out, target).get_size() + sizeof(float) * out + scales;
}

LinearWeights Kernels::PrepareLinear(const WeightSource& weight,
                                     const float* bias, int in, int out,
                                     DataType target) {
  memory::desc layout;
  {
    absl::MutexLock lock(&mu_);
    layout = WeightsDesc(in, out, target);
  }
  // PyTorch's [out, in] row-major is the [in, out] matrix in `ba` order.
  memory::desc plain({in, out}, weight.type, Tag::ba);
  LinearWeights w;
  w.in = in;
  w.out = out;
  w.weights = memory(layout, engine_);
  dnnl::stream s(engine_);
  memory src = Wrap(plain, weight.data);
  dnnl::reorder(src, w.weights).execute(s, src, w.weights);
  s.wait();
  w.bias = memory(memory::desc({1, out}, DataType::f32, Tag::ab), engine_);
  std::memcpy(w.bias.get_data_handle(), bias, sizeof(float) * out);
  if (target == DataType::s8)
    w.scales.assign(weight.scales, weight.scales + out);
  return w;
}

Kernels::Cached Kernels::LinearPrimitive(const LinearWeights& w, int64_t m,
                                         DataType src, DataType dst,
                                         Epilogue epilogue) {
  const Key key{kLinear, m,   w.in,     w.out, static_cast<int>(epilogue),
                0.f,     src, w.type(), dst};
  return Get<dnnl::matmul>(key, [&] {
    dnnl::primitive_attr attr = UserScratchpad();
    attr.set_post_ops(EpilogueOps(epilogue));
    if (w.type() == DataType::s8) SetRuntimeQuantization(attr);
    return dnnl::matmul::primitive_desc(
        dnnl::matmul::desc(memory::desc({m, w.in}, src, Tag::ab),
                           w.weights.get_desc(), w.bias.get_desc(),
                           memory::desc({m, w.out}, dst, Tag::ab)),
        attr, engine_);
  });
}

void Kernels::Linear(ExecContext& x, const LinearWeights& w, int64_t m,
                     MatrixRef src, MatrixRef dst, Epilogue epilogue) {
  const Cached prim = LinearPrimitive(w, m, src.type, dst.type, epilogue);
  const bool int8 = w.type() == DataType::s8;
  BoundCall& call = x.calls().Get(prim.primitive, engine_, [&] {
    std::vector<std::pair<int, memory::desc>> args{
        {DNNL_ARG_SRC, memory::desc({m, w.in}, src.type, Tag::ab)},
        {DNNL_ARG_WEIGHTS, w.weights.get_desc()},
        {DNNL_ARG_BIAS, w.bias.get_desc()},
        {DNNL_ARG_DST, memory::desc({m, w.out}, dst.type, Tag::ab)},
        {DNNL_ARG_SCRATCHPAD, prim.scratchpad}};
    if (int8) {
      args.push_back({DNNL_ARG_ATTR_OUTPUT_SCALES,
                      memory::desc({w.out}, DataType::f32, Tag::a)});
      args.push_back({DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC,
                      memory::desc({1}, DataType::s32, Tag::a)});
    }
    return args;
  });
  call.Set(DNNL_ARG_SRC, src.data);
  call.Set(DNNL_ARG_WEIGHTS, w.weights.get_data_handle());
  call.Set(DNNL_ARG_BIAS, w.bias.get_data_handle());
  call.Set(DNNL_ARG_DST, dst.data);
  call.Set(DNNL_ARG_SCRATCHPAD, x.Scratchpad(prim.scratchpad.get_size()));
  if (int8) {
    // oneDNN 2.6's int8 matmul computes scale[n] * (acc + bias[n]), so the
    // bias is divided by the scale it will be multiplied with.
    x.quant_scales().Reserve(sizeof(float) * w.out);
    x.quant_bias().Reserve(sizeof(float) * w.out);
    float* scales = x.quant_scales().as<float>();
    float* bias = x.quant_bias().as<float>();
    const float* b = static_cast<const float*>(w.bias.get_data_handle());
    for (int n = 0; n < w.out; ++n) {
      scales[n] = src.scale * w.scales[n];
      bias[n] = b[n] / scales[n];
    }
    call.Set(DNNL_ARG_ATTR_OUTPUT_SCALES, scales);
    call.Set(DNNL_ARG_BIAS, bias);
    call.Set(DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC, &src.zero_point);
  }
  call.Execute(x.stream());
}

void Kernels::Softmax(ExecContext& x, int64_t rows, int cols, float* data) {
  const memory::desc md({rows, cols}, DataType::f32, Tag::ab);
  const Key key{kSoftmax,      rows,          cols,         0, 0, 0.f,
                DataType::f32, DataType::f32, DataType::f32};
  const Cached prim = Get<dnnl::softmax_forward>(key, [&] {
    return dnnl::softmax_forward::primitive_desc(
        dnnl::softmax_forward::desc(dnnl::prop_kind::forward_inference, md, 1),
        UserScratchpad(), engine_);
  });
  BoundCall& call = x.calls().Get(prim.primitive, engine_, [&] {
    return std::vector<std::pair<int, memory::desc>>{
        {DNNL_ARG_SRC, md},
        {DNNL_ARG_DST, md},
        {DNNL_ARG_SCRATCHPAD, prim.scratchpad}};
  });
  call.Set(DNNL_ARG_SRC, data);
  call.Set(DNNL_ARG_DST, data);
  call.Set(DNNL_ARG_SCRATCHPAD, x.Scratchpad(prim.scratchpad.get_size()));
  call.Execute(x.stream());
}

}  // namespace edge::internal
