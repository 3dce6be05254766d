// The engine's kernels (engine/internal/kernels.h, row_kernels.h) against
// naive double-precision loops, in every data type they take. The parity
// tests compare whole models with PyTorch; these pin a wrong kernel down to
// its function and shape (e.g. attention tiles split into query blocks).
#include "engine/internal/kernels.h"

#include <cmath>
#include <random>
#include <vector>

#include "engine/internal/fused_attention.h"
#include "engine/internal/row_kernels.h"
#include "gtest/gtest.h"

namespace edge::internal {
namespace {

std::vector<float> Random(size_t n, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatToBf16(v[i]);
  return out;
}

double MaxError(const std::vector<float>& got,
                const std::vector<double>& want) {
  double e = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    e = std::max(e, std::abs(got[i] - want[i]));
  }
  return e;
}

// softmax(q k^T / sqrt(dh)) v per image and head; qkv [B, T, 3, H, dh].
std::vector<double> NaiveAttention(const std::vector<float>& qkv, int b_n,
                                   int t_n, int h_n, int dh) {
  const int d = h_n * dh;
  std::vector<double> out(static_cast<size_t>(b_n) * t_n * d);
  auto at = [&](int b, int t, int part, int h, int c) {
    return qkv[((static_cast<size_t>(b) * t_n + t) * 3 + part) * d + h * dh +
               c];
  };
  for (int b = 0; b < b_n; ++b) {
    for (int h = 0; h < h_n; ++h) {
      for (int i = 0; i < t_n; ++i) {
        std::vector<double> s(t_n);
        double max = -1e300, sum = 0;
        for (int j = 0; j < t_n; ++j) {
          for (int c = 0; c < dh; ++c)
            s[j] += at(b, i, 0, h, c) * at(b, j, 1, h, c);
          s[j] /= std::sqrt(static_cast<double>(dh));
          max = std::max(max, s[j]);
        }
        for (double& x : s) sum += (x = std::exp(x - max));
        for (int c = 0; c < dh; ++c) {
          double acc = 0;
          for (int j = 0; j < t_n; ++j) acc += s[j] / sum * at(b, j, 2, h, c);
          out[(static_cast<size_t>(b) * t_n + i) * d + h * dh + c] = acc;
        }
      }
    }
  }
  return out;
}

TEST(KernelsTest, AttentionMatchesNaiveInF32AndBf16) {
  Kernels k;
  ExecContext x(k.engine());
  // Batch 1 with 3 heads splits queries into blocks; batch 4 does not.
  for (const int batch : {1, 4}) {
    const int t = 13, h = 3, dh = 8, d = h * dh;
    const std::vector<float> qkv = Random(batch * t * 3 * d, batch);
    const std::vector<double> want = NaiveAttention(qkv, batch, t, h, dh);
    std::vector<float> out(batch * t * d);
    k.Attention(x, {batch, t, h, dh},
                {const_cast<float*>(qkv.data()), DataType::f32},
                {out.data(), DataType::f32});
    EXPECT_LT(MaxError(out, want), 1e-5) << "f32, batch " << batch;

    std::vector<uint16_t> qkv16 = ToBf16(qkv), out16(out.size());
    k.Attention(x, {batch, t, h, dh}, {qkv16.data(), DataType::bf16},
                {out16.data(), DataType::bf16});
    for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(out16[i]);
    EXPECT_LT(MaxError(out, want), 3e-2) << "bf16, batch " << batch;
  }
}

// The fused AVX-512 tiles (taken when head_dim is a multiple of 16)
// through Kernels::Attention, with shapes that reach every partial block:
// rows not a multiple of 6 (query blocks at batch 1), keys not a multiple
// of 16 or 64 (odd too, for bf16's pairs), head_dim not a multiple of 64
// (nor, in bf16 words, of 16).
TEST(KernelsTest, FusedAttentionTilesMatchNaive) {
  Kernels k;
  ExecContext x(k.engine());
  struct Shape {
    int batch, tokens, heads, head_dim;
  };
  for (const Shape& s :
       {Shape{1, 13, 3, 16}, Shape{1, 37, 3, 64}, Shape{2, 196, 3, 64},
        Shape{1, 50, 2, 80}, Shape{3, 65, 1, 32}, Shape{1, 33, 2, 96},
        Shape{2, 21, 4, 48}}) {
    const int d = s.heads * s.head_dim;
    const std::vector<float> qkv = Random(s.batch * s.tokens * 3 * d, s.tokens);
    const std::vector<double> want =
        NaiveAttention(qkv, s.batch, s.tokens, s.heads, s.head_dim);
    const AttentionShape shape{s.batch, s.tokens, s.heads, s.head_dim};
    std::vector<float> out(s.batch * s.tokens * d);
    if (FusedAttentionSupported(DataType::f32, s.head_dim)) {
      k.Attention(x, shape, {const_cast<float*>(qkv.data()), DataType::f32},
                  {out.data(), DataType::f32});
      EXPECT_LT(MaxError(out, want), 1e-5)
          << "f32 " << s.batch << "x" << s.tokens << " tokens, " << s.heads
          << "x" << s.head_dim;
    }
    if (FusedAttentionSupported(DataType::bf16, s.head_dim)) {
      std::vector<uint16_t> qkv16 = ToBf16(qkv), out16(out.size());
      k.Attention(x, shape, {qkv16.data(), DataType::bf16},
                  {out16.data(), DataType::bf16});
      for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(out16[i]);
      EXPECT_LT(MaxError(out, want), 3e-2)
          << "bf16 " << s.batch << "x" << s.tokens << " tokens, " << s.heads
          << "x" << s.head_dim;
    }
  }
}

// Two query blocks of one head, the second reusing the keys and values the
// first packed into the scratch.
TEST(KernelsTest, FusedAttentionReusesPackedKeysAndValues) {
  if (!FusedAttentionSupported(DataType::f32, 32)) GTEST_SKIP() << "no AVX-512";
  const int t = 40, dh = 32, split = 17;
  const std::vector<float> qkv = Random(t * 3 * dh, 7);
  const std::vector<double> want = NaiveAttention(qkv, 1, t, 1, dh);
  std::vector<float> out(t * dh, -1.f);
  AlignedBuffer scratch;
  scratch.Reserve(FusedAttentionScratchBytes(DataType::f32, t, dh));
  TileSpec spec;
  spec.k = qkv.data() + dh;
  spec.v = qkv.data() + 2 * dh;
  spec.ld = 3 * dh;
  spec.tokens = t;
  spec.head_dim = dh;
  spec.scale = 1.f / std::sqrt(static_cast<float>(dh));
  spec.ld_out = dh;
  for (const int q0 : {0, split}) {
    spec.q = qkv.data() + q0 * 3 * dh;
    spec.rows = q0 == 0 ? split : t - split;
    spec.out = out.data() + q0 * dh;
    FusedAttentionTile(DataType::f32, spec, scratch.data(), q0 != 0);
  }
  EXPECT_LT(MaxError(out, want), 1e-5);
}

// dst = src W^T + b with W [out, in] as PyTorch stores it.
std::vector<double> NaiveLinear(const std::vector<float>& src,
                                const std::vector<float>& w,
                                const std::vector<float>& b, int m, int in,
                                int out) {
  std::vector<double> dst(static_cast<size_t>(m) * out);
  for (int r = 0; r < m; ++r) {
    for (int o = 0; o < out; ++o) {
      double acc = b[o];
      for (int i = 0; i < in; ++i) acc += src[r * in + i] * w[o * in + i];
      dst[r * out + o] = acc;
    }
  }
  return dst;
}

TEST(KernelsTest, LinearMatchesNaiveInEveryWeightType) {
  Kernels k;
  ExecContext x(k.engine());
  const int m = 7, in = 48, out = 40;
  const std::vector<float> src = Random(m * in, 1), w = Random(out * in, 2),
                           b = Random(out, 3);
  const std::vector<double> want = NaiveLinear(src, w, b, m, in, out);
  std::vector<float> dst(m * out);

  LinearWeights f32 =
      k.PrepareLinear({w.data()}, b.data(), in, out, DataType::f32);
  k.Linear(x, f32, m, {const_cast<float*>(src.data())}, {dst.data()},
           Epilogue::kStore);
  EXPECT_LT(MaxError(dst, want), 1e-4);

  // bf16 weights from f32 (converted by the reorder) and bf16 inputs.
  LinearWeights bf16 =
      k.PrepareLinear({w.data()}, b.data(), in, out, DataType::bf16);
  std::vector<uint16_t> src16 = ToBf16(src);
  k.Linear(x, bf16, m, {src16.data(), DataType::bf16}, {dst.data()},
           Epilogue::kStore);
  EXPECT_LT(MaxError(dst, want), 0.1);  // 7 significant bits, sums of 48.

  // s8 weights with per-output-channel scales, u8 inputs with one scale and
  // zero point.
  std::vector<float> scales(out);
  std::vector<int8_t> w8(w.size());
  std::vector<uint8_t> src8(src.size());
  for (int o = 0; o < out; ++o) {
    float max = 0;
    for (int i = 0; i < in; ++i) max = std::max(max, std::abs(w[o * in + i]));
    scales[o] = max / 127;
    for (int i = 0; i < in; ++i) {
      w8[o * in + i] =
          static_cast<int8_t>(std::lround(w[o * in + i] / scales[o]));
    }
  }
  LinearWeights s8 = k.PrepareLinear({w8.data(), DataType::s8, scales.data()},
                                     b.data(), in, out, DataType::s8);
  const Quantization q =
      QuantizeU8(src.data(), static_cast<int64_t>(src.size()), src8.data());
  EXPECT_GT(q.zero_point, 0);  // normal inputs have both signs.
  k.Linear(x, s8, m, {src8.data(), DataType::u8, q.scale, q.zero_point},
           {dst.data()}, Epilogue::kStore);
  EXPECT_LT(MaxError(dst, want), 0.25);  // both sides rounded to ~1/127.
  EXPECT_EQ(s8.bytes(),
            static_cast<uint64_t>(k.LinearBytes(in, out, DataType::s8)));
}

TEST(KernelsTest, LayerNormRowsMatchesNaive) {
  const int rows = 5, d = 40;
  const std::vector<float> x = Random(rows * d, 4), g = Random(d, 5),
                           b = Random(d, 6);
  std::vector<double> want(rows * d);
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < d; ++i) mean += x[r * d + i] / d;
    for (int i = 0; i < d; ++i) var += std::pow(x[r * d + i] - mean, 2) / d;
    for (int i = 0; i < d; ++i) {
      want[r * d + i] =
          (x[r * d + i] - mean) / std::sqrt(var + 1e-6) * g[i] + b[i];
    }
  }
  std::vector<float> out(rows * d);
  LayerNormRows(x.data(), rows, d, g.data(), b.data(), 1e-6f, {out.data()});
  EXPECT_LT(MaxError(out, want), 1e-5);
  std::vector<uint16_t> out16(rows * d);
  LayerNormRows(x.data(), rows, d, g.data(), b.data(), 1e-6f,
                {out16.data(), DataType::bf16});
  for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(out16[i]);
  EXPECT_LT(MaxError(out, want), 2e-2);
}

TEST(KernelsTest, GatherQuantizesAndScatterAddsTheRoutedRows) {
  const int d = 24;
  const std::vector<float> h = Random(6 * d, 7);
  const std::vector<RowWeight> rows{{4, 0.5f}, {1, 0.25f}};
  std::vector<uint8_t> q(rows.size() * d);
  const Quantization quant =
      GatherRowsQuantized({const_cast<float*>(h.data())}, d, rows.data(),
                          static_cast<int64_t>(rows.size()), q.data());
  float lo = 0, hi = 0;
  for (const RowWeight& r : rows) {
    for (int i = 0; i < d; ++i) {
      lo = std::min(lo, h[r.row * d + i]);
      hi = std::max(hi, h[r.row * d + i]);
    }
  }
  EXPECT_FLOAT_EQ(quant.scale, (hi - lo) / 255);
  EXPECT_EQ(quant.zero_point, std::lround(-lo / quant.scale));
  for (size_t j = 0; j < rows.size(); ++j) {
    for (int i = 0; i < d; ++i) {
      EXPECT_NEAR((q[j * d + i] - quant.zero_point) * quant.scale,
                  h[rows[j].row * d + i], quant.scale * 0.51f);
    }
  }
  std::vector<float> x(6 * d, 1.f), y = Random(rows.size() * d, 8);
  ScatterAddRows(y.data(), d, rows.data(), static_cast<int64_t>(rows.size()),
                 x.data());
  for (int r = 0; r < 6; ++r) {
    for (int i = 0; i < d; ++i) {
      float want = 1.f;
      for (size_t j = 0; j < rows.size(); ++j) {
        if (rows[j].row == r) want += rows[j].weight * y[j * d + i];
      }
      EXPECT_FLOAT_EQ(x[r * d + i], want);
    }
  }
}

}  // namespace
}  // namespace edge::internal
