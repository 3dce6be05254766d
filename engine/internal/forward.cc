#include "engine/internal/forward.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/router.h"

namespace edge::internal {
namespace {

int64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now() - start)
      .count();
}

bool AllFinite(const float* values, int n) {
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) return false;
  }
  return true;
}

// "block 7: 2, 5; block 9: 0, 3": the experts `result` used per MoE layer
// (with token routing, every expert that kept one of its tokens).
std::string DescribeExperts(const ImageResult& result) {
  std::string out;
  for (const LayerRouting& layer : result.routing) {
    std::set<int> experts;
    for (const ExpertChoice& c : layer.image_choices) experts.insert(c.expert);
    for (size_t i = 0; i < layer.token_choices.size(); ++i) {
      if (layer.token_kept[i]) experts.insert(layer.token_choices[i].expert);
    }
    absl::StrAppend(&out, out.empty() ? "" : "; ", "block ", layer.layer, ": ",
                    absl::StrJoin(experts, ", "));
  }
  return out.empty() ? "none (no MoE layer)" : out;
}

// Why an image with non-finite logits is refused: it cannot be told which
// weights (or which overflow) produced them, so the message names every
// expert the image used, and the substitutes it was given.
absl::Status NonFiniteLogits(const ImageResult& result) {
  std::string message = absl::StrCat(
      "non-finite logits (NaN or Inf): the weights or arithmetic produced "
      "non-finite values; experts used: ",
      DescribeExperts(result));
  if (result.degraded) {
    absl::StrAppend(&message,
                    "; served with substitutes: ", result.degraded_reason);
  }
  return absl::DataLossError(message);
}

}  // namespace

void Workspace::Reserve(const ModelConfig& c, int b) {
  if (b <= batch) return;
  batch = b;
  const size_t rows = static_cast<size_t>(b) * c.num_tokens();
  const size_t f32 = sizeof(float);
  patches.Reserve(f32 * b * c.num_patches() * 3 * c.patch_size * c.patch_size);
  for (AlignedBuffer* v : {&x, &h, &context, &gathered, &rows_f32}) {
    v->Reserve(f32 * rows * c.dim);
  }
  qkv.Reserve(f32 * rows * 3 * c.dim);
  hidden.Reserve(f32 * rows * c.mlp_dim);
  hidden_q.Reserve(rows * c.mlp_dim);
  gates.Reserve(f32 * rows * std::max(c.moe.num_experts, 1));
  pooled.Reserve(f32 * b * c.dim);
  logits.Reserve(f32 * b * c.num_classes);
}

ForwardPass::ForwardPass(const ForwardContext& ctx, Workspace* ws, int batch)
    : ctx_(ctx),
      c_(*ctx.config),
      ws_(*ws),
      batch_(batch),
      tokens_(ctx.config->num_tokens()),
      first_patch_(ctx.config->class_token ? 1 : 0),
      act_(ctx.activations),
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
  int moe_index = 0;
  for (int i = 0; i < c_.depth; ++i) {
    const BlockWeights& w = ctx_.weights->blocks[i];
    Attention(w);
    charge(t.attention_us);
    LayerNormRows(ws_.x.as<float>(), rows(), c_.dim, w.norm2.scale.data(),
                  w.norm2.shift.data(), c_.norm_eps, Act(ws_.h));
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
  // Convolution with kernel == stride == P is a matmul over patches.
  Patchify(images, batch_, c_.image_size, c_.patch_size, Act(ws_.patches));
  ctx_.kernels->Linear(exec_, ctx_.weights->patch_embed,
                       static_cast<int64_t>(batch_) * c_.num_patches(),
                       Act(ws_.patches), F32(ws_.rows_f32), Epilogue::kStore);
  EmbedTokens(ws_.rows_f32.as<float>(), ctx_.weights->cls_token.data(),
              ctx_.weights->pos_embed.data(), batch_, tokens_, first_patch_,
              c_.dim, ws_.x.as<float>());
}

void ForwardPass::Attention(const BlockWeights& w) {
  Kernels& k = *ctx_.kernels;
  LayerNormRows(ws_.x.as<float>(), rows(), c_.dim, w.norm1.scale.data(),
                w.norm1.shift.data(), c_.norm_eps, Act(ws_.h));
  k.Linear(exec_, w.qkv, rows(), Act(ws_.h), Act(ws_.qkv), Epilogue::kStore);
  k.Attention(exec_, {batch_, tokens_, c_.heads, c_.head_dim()}, Act(ws_.qkv),
              Act(ws_.context));
  k.Linear(exec_, w.proj, rows(), Act(ws_.context), F32(ws_.x),
           Epilogue::kAccumulate);
}

void ForwardPass::Mlp(const BlockWeights& w) {
  ctx_.kernels->Linear(exec_, w.fc1, rows(), Act(ws_.h), Act(ws_.hidden),
                       Epilogue::kGelu);
  ctx_.kernels->Linear(exec_, w.fc2, rows(), Act(ws_.hidden), F32(ws_.x),
                       Epilogue::kAccumulate);
}

void ForwardPass::Moe(const BlockWeights& w, int block, int moe_index) {
  const std::vector<std::vector<RowWeight>>& per_expert = Route(w, moe_index);
  std::vector<int> used;
  std::vector<ExpertKey> keys;
  for (int e = 0; e < c_.moe.num_experts; ++e) {
    if (per_expert[e].empty()) continue;
    used.push_back(e);
    keys.push_back({block, e});
  }
  // The router has decided: the cache protects these experts and starts
  // loading the missing ones while the resident ones compute.
  const int64_t pass = ctx_.cache->BeginPass(block, keys);
  PredictNextLayer(moe_index, used);
  // Resident experts first: their compute overlaps the loads of the others
  // that BeginPass started. The order of the scatter-adds changes the sum
  // only by float rounding.
  std::stable_partition(used.begin(), used.end(), [&](int e) {
    return ctx_.cache->IsResident({block, e});
  });
  std::map<int, absl::Status> failed;
  for (int e : used) {
    absl::Status status = AcquireAndRun(block, e, per_expert[e], pass);
    if (!status.ok()) failed.emplace(e, std::move(status));
  }
  if (failed.empty()) return;
  if (ctx_.failure_policy == ExpertFailurePolicy::kReroute) {
    Reroute(block, moe_index, pass, per_expert, std::move(failed));
    return;
  }
  // Only the images routed to a failed expert fail; the others go on.
  for (const auto& [e, status] : failed) FailRows(per_expert[e], status);
}

absl::Status ForwardPass::AcquireAndRun(int block, int expert,
                                        const std::vector<RowWeight>& rows,
                                        int64_t pass) {
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ExpertHandle> handle =
      ctx_.cache->Acquire({block, expert}, pass);
  fetch_us_ += MicrosSince(start);
  if (!handle.ok()) return handle.status();
  RunExpert(handle->value(), rows);
  return absl::OkStatus();
}

void ForwardPass::FailRows(const std::vector<RowWeight>& rows,
                           const absl::Status& status) {
  for (const RowWeight& a : rows) {
    absl::Status& image_status = results_[a.row / tokens_].status;
    if (image_status.ok()) image_status = status;
  }
}

// The experts routing unit `row` chose in this layer (it must not be
// given one of them again as a substitute).
std::vector<int> ForwardPass::ChosenExperts(int moe_index, int row) const {
  const LayerRouting& r = results_[row / tokens_].routing[moe_index];
  std::vector<int> chosen;
  if (c_.moe.routing == Routing::kImage) {
    for (const ExpertChoice& c : r.image_choices) chosen.push_back(c.expert);
    return chosen;
  }
  const int k = c_.moe.top_k, t = row % tokens_;
  for (int i = t * k; i < (t + 1) * k; ++i) {
    chosen.push_back(r.token_choices[i].expert);
  }
  return chosen;
}

// ExpertFailurePolicy::kReroute: each row of a failed expert goes, with
// that expert's weight, to its routing unit's best-gated expert that it
// did not choose and that has not failed. Substitutes that fail too are
// rerouted again, so this ends after at most E rounds. With token routing
// the substitutes ignore expert capacity.
void ForwardPass::Reroute(int block, int moe_index, int64_t pass,
                          const std::vector<std::vector<RowWeight>>& per_expert,
                          std::map<int, absl::Status> failed) {
  const int e_count = c_.moe.num_experts;
  std::vector<bool> bad(e_count, false);
  std::vector<std::pair<std::vector<RowWeight>, absl::Status>> pending;
  for (auto& [e, status] : failed) {
    bad[e] = true;
    pending.emplace_back(per_expert[e], std::move(status));
  }
  while (!pending.empty()) {
    std::map<int, std::vector<RowWeight>> by_substitute;
    std::map<int, absl::Status> cause;  // why the substitute is needed
    for (const auto& [rows, status] : pending) {
      for (const RowWeight& a : rows) {
        const int unit_row =
            c_.moe.routing == Routing::kImage ? a.row / tokens_ : a.row;
        const float* gates =
            ws_.gates.as<float>() + static_cast<size_t>(unit_row) * e_count;
        const std::vector<int> chosen = ChosenExperts(moe_index, a.row);
        int best = -1;
        for (int e = 0; e < e_count; ++e) {
          if (bad[e] ||
              std::find(chosen.begin(), chosen.end(), e) != chosen.end()) {
            continue;
          }
          if (best < 0 || gates[e] > gates[best]) best = e;
        }
        if (best < 0) {
          FailRows({a}, status);
          continue;
        }
        by_substitute[best].push_back(a);
        cause.emplace(best, status);
      }
    }
    pending.clear();
    for (auto& [substitute, rows] : by_substitute) {
      absl::Status status = AcquireAndRun(block, substitute, rows, pass);
      if (!status.ok()) {
        bad[substitute] = true;
        pending.emplace_back(std::move(rows), std::move(status));
        continue;
      }
      MarkDegraded(rows, cause.at(substitute), block, substitute);
    }
  }
}

void ForwardPass::MarkDegraded(const std::vector<RowWeight>& rows,
                               const absl::Status& cause, int block,
                               int substitute) {
  int last_image = -1;
  for (const RowWeight& a : rows) {
    const int image = a.row / tokens_;
    if (image == last_image) continue;
    last_image = image;
    ImageResult& result = results_[image];
    const std::string note =
        absl::StrCat("block ", block, ": ", cause.message(),
                     "; rerouted to expert ", substitute);
    if (result.degraded_reason.find(note) != std::string::npos) continue;
    result.degraded = true;
    if (!result.degraded_reason.empty()) result.degraded_reason += "; ";
    result.degraded_reason += note;
  }
}

// Learns how this layer's choices follow the previous layer's, scores the
// guesses made for this layer, and prefetches guesses for the next one.
void ForwardPass::PredictNextLayer(int moe_index,
                                   const std::vector<int>& used) {
  NextLayerPredictor* predictor = ctx_.predictor;
  if (predictor == nullptr) return;
  UnitExperts units = UnitsAt(moe_index);
  if (moe_index > 0) {
    predictor->Learn(moe_index - 1, previous_units_, units);
    predictor->Score(guesses_, used);
  }
  guesses_.clear();
  if (moe_index + 1 < static_cast<int>(c_.moe.layers.size())) {
    guesses_ = predictor->Predict(moe_index, units, kMinPrefetchProbability);
    std::vector<ExpertKey> keys;
    for (int e : guesses_) keys.push_back({c_.moe.layers[moe_index + 1], e});
    ctx_.cache->Prefetch(keys);
  }
  previous_units_ = std::move(units);
}

// Per routing unit (image, or token with token routing), the experts it
// used in MoE layer `moe_index`.
UnitExperts ForwardPass::UnitsAt(int moe_index) const {
  UnitExperts units;
  for (int b = 0; b < batch_; ++b) {
    const LayerRouting& r = results_[b].routing[moe_index];
    if (c_.moe.routing == Routing::kImage) {
      std::vector<int>& unit = units.emplace_back();
      for (const ExpertChoice& c : r.image_choices) unit.push_back(c.expert);
      continue;
    }
    const int k = c_.moe.top_k;
    for (int t = 0; t < tokens_; ++t) {
      std::vector<int>& unit = units.emplace_back();
      for (int i = t * k; i < (t + 1) * k; ++i) {
        if (r.token_kept[i]) unit.push_back(r.token_choices[i].expert);
      }
    }
  }
  return units;
}

const std::vector<std::vector<RowWeight>>& ForwardPass::Route(
    const BlockWeights& w, int moe_index) {
  const MoeSpec& moe = c_.moe;
  if (moe.routing == Routing::kToken) return RouteTokens(w, moe_index);
  const int e = moe.num_experts;
  std::vector<std::vector<RowWeight>>& per_expert = ClearedRouting();
  Kernels& k = *ctx_.kernels;
  MeanOfRows(Act(ws_.h), batch_, tokens_, first_patch_, c_.num_patches(),
             c_.dim, ws_.pooled.as<float>());
  k.Linear(exec_, w.router, batch_, F32(ws_.pooled), F32(ws_.gates),
           Epilogue::kStore);
  k.Softmax(exec_, batch_, e, ws_.gates.as<float>());
  for (int b = 0; b < batch_; ++b) {
    LayerRouting& r = results_[b].routing[moe_index];
    r.image_choices =
        RouteImage(ws_.gates.as<float>() + static_cast<size_t>(b) * e, e,
                   moe.top_k, moe.renormalize);
    for (const ExpertChoice& choice : r.image_choices) {
      for (int t = 0; t < tokens_; ++t) {
        per_expert[choice.expert].push_back({b * tokens_ + t, choice.weight});
      }
    }
  }
  return per_expert;
}

const std::vector<std::vector<RowWeight>>& ForwardPass::RouteTokens(
    const BlockWeights& w, int moe_index) {
  const MoeSpec& moe = c_.moe;
  const int e = moe.num_experts;
  std::vector<std::vector<RowWeight>>& per_expert = ClearedRouting();
  Kernels& k = *ctx_.kernels;
  // The router reads every row of h, so it has h's type (model_weights.h).
  k.Linear(exec_, w.router, rows(), Act(ws_.h), F32(ws_.gates),
           Epilogue::kStore);
  k.Softmax(exec_, rows(), e, ws_.gates.as<float>());
  const int capacity = c_.expert_capacity();
  for (int b = 0; b < batch_; ++b) {
    TokenRouting routing = edge::RouteTokens(
        ws_.gates.as<float>() + static_cast<size_t>(b) * tokens_ * e, tokens_,
        e, moe.top_k, capacity, moe.batch_priority);
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

std::vector<std::vector<RowWeight>>& ForwardPass::ClearedRouting() {
  // Cleared, not freed: the lists keep their capacity across layers and
  // calls, so routing allocates only while batches grow.
  ws_.routed.resize(c_.moe.num_experts);
  for (std::vector<RowWeight>& rows : ws_.routed) rows.clear();
  return ws_.routed;
}

void ForwardPass::RunExpert(const CachedExpert& cached,
                            const std::vector<RowWeight>& rows) {
  const auto& expert = static_cast<const PreparedExpert&>(cached);
  Kernels& k = *ctx_.kernels;
  const int d = c_.dim;
  const int64_t m = static_cast<int64_t>(rows.size());
  const DataType type = expert.fc1().type();
  if (type == DataType::s8) {
    // u8 activations, s8 weights: oneDNN's int8 matmul (gemm:jit, VNNI).
    const Quantization in = GatherRowsQuantized(Act(ws_.h), d, rows.data(), m,
                                                ws_.gathered.as<uint8_t>());
    k.Linear(exec_, expert.fc1(), m,
             {ws_.gathered.data(), DataType::u8, in.scale, in.zero_point},
             F32(ws_.hidden), Epilogue::kGelu);
    const Quantization hidden = QuantizeU8(
        ws_.hidden.as<float>(), m * c_.mlp_dim, ws_.hidden_q.as<uint8_t>());
    k.Linear(
        exec_, expert.fc2(), m,
        {ws_.hidden_q.data(), DataType::u8, hidden.scale, hidden.zero_point},
        F32(ws_.rows_f32), Epilogue::kStore);
  } else {
    const MatrixRef gathered{ws_.gathered.data(), type};
    GatherRows(Act(ws_.h), d, rows.data(), m, gathered);
    k.Linear(exec_, expert.fc1(), m, gathered, {ws_.hidden.data(), type},
             Epilogue::kGelu);
    k.Linear(exec_, expert.fc2(), m, {ws_.hidden.data(), type},
             F32(ws_.rows_f32), Epilogue::kStore);
  }
  ScatterAddRows(ws_.rows_f32.as<float>(), d, rows.data(), m,
                 ws_.x.as<float>());
}

void ForwardPass::Head() {
  const int d = c_.dim, classes = c_.num_classes;
  LayerNormRows(ws_.x.as<float>(), rows(), d, ctx_.weights->norm.scale.data(),
                ctx_.weights->norm.shift.data(), c_.norm_eps,
                F32(ws_.rows_f32));
  // "avg": the mean of the patch tokens; "token": token 0 alone.
  const bool avg = c_.global_pool == Pooling::kAvg;
  MeanOfRows(F32(ws_.rows_f32), batch_, tokens_, avg ? first_patch_ : 0,
             avg ? c_.num_patches() : 1, d, ws_.pooled.as<float>());
  ctx_.kernels->Linear(exec_, ctx_.weights->head, batch_, F32(ws_.pooled),
                       F32(ws_.logits), Epilogue::kStore);
  for (int b = 0; b < batch_; ++b) {
    ImageResult& result = results_[b];
    if (!result.status.ok()) continue;  // its output is not trustworthy.
    const float* l = ws_.logits.as<float>() + static_cast<size_t>(b) * classes;
    if (!AllFinite(l, classes)) {
      result.status = NonFiniteLogits(result);
      ++non_finite_results_;
      continue;
    }
    result.logits.assign(l, l + classes);
  }
}

}  // namespace edge::internal
