#include "engine/internal/forward.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/router.h"

namespace edge::internal {
namespace {

int64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now() - start)
      .count();
}

void Grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

void Workspace::Reserve(const ModelConfig& c, int b) {
  if (b <= batch) return;
  batch = b;
  const size_t rows = static_cast<size_t>(b) * c.num_tokens();
  const size_t t = c.num_tokens();
  Grow(patches, static_cast<size_t>(b) * c.num_patches() * 3 * c.patch_size *
                    c.patch_size);
  for (auto* v : {&x, &h, &context, &gathered, &expert_out})
    Grow(*v, rows * c.dim);
  Grow(qkv, rows * 3 * c.dim);
  Grow(scores, static_cast<size_t>(b) * c.heads * t * t);
  Grow(hidden, rows * c.mlp_dim);
  Grow(gates, rows * std::max(c.moe.num_experts, 1));
  Grow(pooled, static_cast<size_t>(b) * c.dim);
  Grow(logits, static_cast<size_t>(b) * c.num_classes);
}

ForwardPass::ForwardPass(const ForwardContext& ctx, Workspace* ws, int batch)
    : ctx_(ctx),
      c_(*ctx.config),
      ws_(*ws),
      batch_(batch),
      tokens_(ctx.config->num_tokens()),
      exec_(ws->exec),
      results_(batch) {
  ws_.Reserve(c_, batch);
  for (ImageResult& r : results_) {
    r.routing.resize(c_.moe.layers.size());
    for (size_t i = 0; i < c_.moe.layers.size(); ++i) {
      r.routing[i].layer = c_.moe.layers[i];
    }
  }
}

std::vector<ImageResult> ForwardPass::Run(const float* images,
                                          RunTiming* timing) {
  RunTiming local;
  RunTiming& t = timing != nullptr ? *timing : local;
  t = RunTiming();
  const auto start = std::chrono::steady_clock::now();
  auto lap = start;
  // Adds the time since the previous lap to `stage_us`.
  auto charge = [&lap](int64_t& stage_us) {
    const auto now = std::chrono::steady_clock::now();
    stage_us += std::chrono::duration_cast<std::chrono::microseconds>(now - lap)
                    .count();
    lap = now;
  };
  Embed(images);
  charge(t.embed_us);
  const int64_t rows = static_cast<int64_t>(batch_) * tokens_;
  int moe_index = 0;
  for (int i = 0; i < c_.depth; ++i) {
    const BlockWeights& w = ctx_.weights->blocks[i];
    Attention(w);
    charge(t.attention_us);
    ctx_.kernels->LayerNorm(exec_, w.norm2, rows, c_.dim, c_.norm_eps,
                            ws_.x.data(), ws_.h.data());
    if (c_.moe.IsMoeLayer(i)) {
      Moe(w, i, moe_index++);
      charge(t.moe_us);
    } else {
      Mlp(w);
      charge(t.mlp_us);
    }
  }
  Head();
  charge(t.head_us);
  t.total_us = MicrosSince(start);
  t.expert_fetch_us = fetch_us_;
  return std::move(results_);
}

void ForwardPass::Embed(const float* images) {
  const int s = c_.image_size, p = c_.patch_size, g = c_.grid();
  const int patch_len = 3 * p * p;
  float* out = ws_.patches.data();
  // Convolution with kernel == stride == P is a matmul over patches; each
  // patch is laid out (channel, y, x) like the conv weight [D, 3, P, P].
  for (int b = 0; b < batch_; ++b) {
    for (int gy = 0; gy < g; ++gy) {
      for (int gx = 0; gx < g; ++gx, out += patch_len) {
        for (int ch = 0; ch < 3; ++ch) {
          for (int py = 0; py < p; ++py) {
            const float* src =
                images +
                ((static_cast<size_t>(b) * 3 + ch) * s + gy * p + py) * s +
                gx * p;
            std::memcpy(out + (ch * p + py) * p, src, sizeof(float) * p);
          }
        }
      }
    }
  }
  const int n = c_.num_patches(), d = c_.dim;
  float* embedded = ws_.context.data();
  ctx_.kernels->Linear(exec_, ctx_.weights->patch_embed,
                       static_cast<int64_t>(batch_) * n, ws_.patches.data(),
                       embedded, Epilogue::kStore);
  exec_.stream().wait();
  const float* pos = ctx_.weights->pos_embed.data();
  const int first_patch = c_.class_token ? 1 : 0;
  for (int b = 0; b < batch_; ++b) {
    for (int t = 0; t < tokens_; ++t) {
      const float* src =
          t < first_patch
              ? ctx_.weights->cls_token.data()
              : embedded + (static_cast<size_t>(b) * n + t - first_patch) * d;
      float* dst = ws_.x.data() + (static_cast<size_t>(b) * tokens_ + t) * d;
      for (int i = 0; i < d; ++i) dst[i] = src[i] + pos[t * d + i];
    }
  }
}

void ForwardPass::Attention(const BlockWeights& w) {
  Kernels& k = *ctx_.kernels;
  const int64_t rows = static_cast<int64_t>(batch_) * tokens_;
  k.LayerNorm(exec_, w.norm1, rows, c_.dim, c_.norm_eps, ws_.x.data(),
              ws_.h.data());
  k.Linear(exec_, w.qkv, rows, ws_.h.data(), ws_.qkv.data(), Epilogue::kStore);
  k.Attention(exec_, batch_, tokens_, c_.heads, c_.head_dim(), ws_.qkv.data(),
              ws_.scores.data(), ws_.context.data());
  k.Linear(exec_, w.proj, rows, ws_.context.data(), ws_.x.data(),
           Epilogue::kAccumulate);
}

void ForwardPass::Mlp(const BlockWeights& w) {
  const int64_t rows = static_cast<int64_t>(batch_) * tokens_;
  ctx_.kernels->Linear(exec_, w.fc1, rows, ws_.h.data(), ws_.hidden.data(),
                       Epilogue::kGelu);
  ctx_.kernels->Linear(exec_, w.fc2, rows, ws_.hidden.data(), ws_.x.data(),
                       Epilogue::kAccumulate);
}

void ForwardPass::Moe(const BlockWeights& w, int block, int moe_index) {
  const std::vector<std::vector<Assignment>> per_expert = Route(w, moe_index);
  for (int e = 0; e < c_.moe.num_experts; ++e) {
    const std::vector<Assignment>& rows = per_expert[e];
    if (rows.empty()) continue;
    const auto start = std::chrono::steady_clock::now();
    absl::StatusOr<ExpertHandle> handle = ctx_.cache->Acquire({block, e});
    fetch_us_ += MicrosSince(start);
    if (handle.ok()) {
      RunExpert(handle->value(), rows);
      continue;
    }
    // Only the images routed to this expert fail; the others go on.
    for (const Assignment& a : rows) {
      absl::Status& status = results_[a.row / tokens_].status;
      if (status.ok()) status = handle.status();
    }
  }
}

std::vector<std::vector<ForwardPass::Assignment>> ForwardPass::Route(
    const BlockWeights& w, int moe_index) {
  const MoeSpec& moe = c_.moe;
  const int e = moe.num_experts;
  std::vector<std::vector<Assignment>> per_expert(e);
  Kernels& k = *ctx_.kernels;
  if (moe.routing == Routing::kImage) {
    MeanOfPatchTokens(ws_.h.data(), ws_.pooled.data());
    k.Linear(exec_, w.router, batch_, ws_.pooled.data(), ws_.gates.data(),
             Epilogue::kStore);
    k.Softmax(exec_, batch_, e, ws_.gates.data());
    exec_.stream().wait();
    for (int b = 0; b < batch_; ++b) {
      LayerRouting& r = results_[b].routing[moe_index];
      r.image_choices =
          RouteImage(ws_.gates.data() + static_cast<size_t>(b) * e, e,
                     moe.top_k, moe.renormalize);
      for (const ExpertChoice& choice : r.image_choices) {
        for (int t = 0; t < tokens_; ++t) {
          per_expert[choice.expert].push_back({b * tokens_ + t, choice.weight});
        }
      }
    }
    return per_expert;
  }
  const int64_t rows = static_cast<int64_t>(batch_) * tokens_;
  k.Linear(exec_, w.router, rows, ws_.h.data(), ws_.gates.data(),
           Epilogue::kStore);
  k.Softmax(exec_, rows, e, ws_.gates.data());
  exec_.stream().wait();
  const int capacity = c_.expert_capacity();
  for (int b = 0; b < batch_; ++b) {
    TokenRouting routing =
        RouteTokens(ws_.gates.data() + static_cast<size_t>(b) * tokens_ * e,
                    tokens_, e, moe.top_k, capacity, moe.batch_priority);
    for (size_t i = 0; i < routing.choices.size(); ++i) {
      if (!routing.kept[i]) continue;
      const int t = static_cast<int>(i) / moe.top_k;
      per_expert[routing.choices[i].expert].push_back(
          {b * tokens_ + t, routing.choices[i].weight});
    }
    LayerRouting& r = results_[b].routing[moe_index];
    r.token_choices = std::move(routing.choices);
    r.token_kept = std::move(routing.kept);
  }
  return per_expert;
}

void ForwardPass::RunExpert(const CachedExpert& cached,
                            const std::vector<Assignment>& rows) {
  const auto& expert = static_cast<const PreparedExpert&>(cached);
  const int d = c_.dim;
  const size_t row_bytes = sizeof(float) * d;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(ws_.gathered.data() + i * d,
                ws_.h.data() + static_cast<size_t>(rows[i].row) * d, row_bytes);
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  ctx_.kernels->Linear(exec_, expert.fc1(), m, ws_.gathered.data(),
                       ws_.hidden.data(), Epilogue::kGelu);
  ctx_.kernels->Linear(exec_, expert.fc2(), m, ws_.hidden.data(),
                       ws_.expert_out.data(), Epilogue::kStore);
  exec_.stream().wait();
  for (size_t i = 0; i < rows.size(); ++i) {
    const float* y = ws_.expert_out.data() + i * d;
    float* x = ws_.x.data() + static_cast<size_t>(rows[i].row) * d;
    const float weight = rows[i].weight;
    for (int j = 0; j < d; ++j) x[j] += weight * y[j];
  }
}

void ForwardPass::MeanOfPatchTokens(const float* src, float* dst) {
  exec_.stream().wait();
  const int d = c_.dim, n = c_.num_patches();
  const int first_patch = c_.class_token ? 1 : 0;
  for (int b = 0; b < batch_; ++b) {
    float* out = dst + static_cast<size_t>(b) * d;
    std::fill(out, out + d, 0.0f);
    const float* rows =
        src + (static_cast<size_t>(b) * tokens_ + first_patch) * d;
    for (int t = 0; t < n; ++t) {
      for (int i = 0; i < d; ++i)
        out[i] += rows[static_cast<size_t>(t) * d + i];
    }
    for (int i = 0; i < d; ++i) out[i] /= static_cast<float>(n);
  }
}

void ForwardPass::Head() {
  Kernels& k = *ctx_.kernels;
  const int d = c_.dim, classes = c_.num_classes;
  k.LayerNorm(exec_, ctx_.weights->norm, static_cast<int64_t>(batch_) * tokens_,
              d, c_.norm_eps, ws_.x.data(), ws_.h.data());
  if (c_.global_pool == Pooling::kAvg) {
    MeanOfPatchTokens(ws_.h.data(), ws_.pooled.data());
  } else {
    exec_.stream().wait();
    for (int b = 0; b < batch_; ++b) {
      std::memcpy(ws_.pooled.data() + static_cast<size_t>(b) * d,
                  ws_.h.data() + static_cast<size_t>(b) * tokens_ * d,
                  sizeof(float) * d);
    }
  }
  k.Linear(exec_, ctx_.weights->head, batch_, ws_.pooled.data(),
           ws_.logits.data(), Epilogue::kStore);
  exec_.stream().wait();
  for (int b = 0; b < batch_; ++b) {
    if (!results_[b].status.ok()) continue;  // its output is not trustworthy.
    const float* l = ws_.logits.data() + static_cast<size_t>(b) * classes;
    results_[b].logits.assign(l, l + classes);
  }
}

}  // namespace edge::internal
