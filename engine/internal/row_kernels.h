// Row kernels: the engine's hand-written loops over activation rows, for the
// steps oneDNN 2.6 has no primitive for (patchify, gather/scatter of routed
// tokens, dynamic int8 quantisation) or none that fits: its LayerNorm needs
// src and dst of one data type, and the bf16 path wants an f32 residual in
// and a bf16 row out.
//
// Each function splits its rows over OpenMP threads (the pool oneDNN's
// primitives use) once the work is large enough to pay for a parallel
// region, and is compiled twice, for AVX-512 and for any x86-64, with the
// AVX-512 version picked at load time when the CPU has it.
//
// Thread-safe: no state. Each call writes only its `dst` (and `x`).
#ifndef EDGE_ENGINE_INTERNAL_ROW_KERNELS_H_
#define EDGE_ENGINE_INTERNAL_ROW_KERNELS_H_

#include <cstdint>
#include <cstring>

#include "oneapi/dnnl/dnnl.hpp"

namespace edge::internal {

using DataType = dnnl::memory::data_type;

// A row-major activation matrix in a workspace buffer; the caller knows its
// shape. `type` is f32, bf16 or u8; u8 data q stands for
// scale * (q - zero_point).
struct MatrixRef {
  void* data = nullptr;
  DataType type = DataType::f32;
  float scale = 1.f;
  int32_t zero_point = 0;
};

// One token row's share of an expert's work.
struct RowWeight {
  int row;  // b * T + t
  float weight;
};

// bfloat16 with round-to-nearest-even, as oneDNN and PyTorch convert (inputs
// are finite; NaN payloads are not preserved).
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// dst[r] = LayerNorm(src[r]) * gamma + beta for `rows` rows of `d` floats,
// statistics in float32 (biased variance, as PyTorch). dst is f32 or bf16
// and may alias src when f32.
void LayerNormRows(const float* src, int64_t rows, int d, const float* gamma,
                   const float* beta, float eps, MatrixRef dst);

// Cuts [batch, 3, s, s] images into [batch * (s/p)^2, 3*p*p] patch rows
// laid out (channel, y, x) like the patch convolution's weight; dst f32 or
// bf16.
void Patchify(const float* images, int batch, int image_size, int patch,
              MatrixRef dst);

// x[b, t] = (t < first_patch ? cls : patches[b, t - first_patch]) + pos[t]
// for every image b and token t of `tokens`, rows of `d` floats.
void EmbedTokens(const float* patches, const float* cls, const float* pos,
                 int batch, int tokens, int first_patch, int d, float* x);

// dst[i] = src[rows[i].row] for i < n, rows of `d` elements. src and dst are
// f32 or bf16 (f32 -> bf16 converts; bf16 -> f32 is not needed).
void GatherRows(MatrixRef src, int d, const RowWeight* rows, int64_t n,
                MatrixRef dst);

// How a matrix was quantised to u8: x ~= scale * (q - zero_point).
struct Quantization {
  float scale = 1.f;
  int32_t zero_point = 0;
};

// Like GatherRows into u8, quantised asymmetrically with one scale and zero
// point for the whole gathered matrix, from its min and max (0 is always
// representable exactly, so zero padding and ReLU-like zeros stay exact).
// A constant matrix gets scale 1.
Quantization GatherRowsQuantized(MatrixRef src, int d, const RowWeight* rows,
                                 int64_t n, uint8_t* dst);

// Quantises `n` floats as GatherRowsQuantized does.
Quantization QuantizeU8(const float* src, int64_t n, uint8_t* dst);

// x[rows[i].row] += rows[i].weight * src[i] for i < n, rows of `d` floats.
// REQUIRES: the rows are distinct (one expert sees a token at most once).
void ScatterAddRows(const float* src, int d, const RowWeight* rows, int64_t n,
                    float* x);

// dst[b] = mean of rows [first, first + count) of image b's `tokens` rows,
// for `batch` images; src f32 or bf16, dst f32.
void MeanOfRows(MatrixRef src, int batch, int tokens, int first, int count,
                int d, float* dst);

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_ROW_KERNELS_H_
