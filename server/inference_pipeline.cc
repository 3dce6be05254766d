#include "server/inference_pipeline.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "engine/top_k.h"

namespace edge {

using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;

struct InferencePipeline::Task {
  ClassifyCall call;
  // Bytes reserved in the memory budget from admission to the answer
  // (payload + decoded tensor), and during the decode only (its peak).
  uint64_t held_bytes = 0;
  uint64_t decode_peak_bytes = 0;
  bool costly = false;  // more than kCheapWorkPixels of decode work
  int64_t admitted_us = 0;
  int64_t decode_us = 0;
  std::vector<float> image;  // 3*S*S normalised floats once decoded.
  bool waiting = true;       // counted in waiting_ (not yet computing).
  // DynamicBatcher's fields.
  int64_t enqueue_us = 0;
  int64_t deadline_us = 0;
};

namespace {

double Seconds(int64_t us) { return static_cast<double>(us) * 1e-6; }

// Decode work (ImageDecoder's work pixels: one is a pixel of a full-size
// baseline 4:2:0 JPEG, 2.3-2.7 ns here) up to a full-HD JPEG's is cheap:
// that frame decodes in ~5 ms (~3 ms at the DCT scale a 224 model needs),
// and it is the common camera frame. A 6000 x 6000 PNG is ~100x that.
// Anything above takes its turn on the costly lane (see the header).
constexpr uint64_t kCheapWorkPixels = 1920 * 1080;

std::string Mib(uint64_t bytes) {
  return absl::StrCat(absl::SixDigits(static_cast<double>(bytes) / (1 << 20)),
                      " MiB");
}

// Softmax probabilities of the `k` largest logits, highest first (equal
// logits: lower class index first).
void FillTop(const std::vector<float>& logits,
             const std::vector<std::string>& labels, uint32_t k,
             ClassifyResponse* out) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l - max));
  k = std::min<uint32_t>(k, logits.size());
  std::vector<int> order;
  TopK(logits.data(), static_cast<int>(logits.size()), static_cast<int>(k),
       &order);
  for (uint32_t i = 0; i < k; ++i) {
    auto* top = out->add_top();
    top->set_index(order[i]);
    top->set_label(labels[order[i]]);
    top->set_score(static_cast<float>(std::exp(logits[order[i]] - max) / sum));
  }
}

// Token routing summarised per expert: tokens kept, most used first.
void FillTokenExperts(const LayerRouting& r, int k,
                      gateway::v1::LayerExperts* out) {
  std::vector<std::pair<int, int>> counts;  // (expert, tokens)
  int dropped = 0;
  for (size_t t = 0; t * k < r.token_choices.size(); ++t) {
    bool any = false;
    for (int j = 0; j < k; ++j) {
      if (!r.token_kept[t * k + j]) continue;
      any = true;
      const int e = r.token_choices[t * k + j].expert;
      auto it = std::find_if(counts.begin(), counts.end(),
                             [e](const auto& c) { return c.first == e; });
      if (it == counts.end()) {
        counts.push_back({e, 1});
      } else {
        ++it->second;
      }
    }
    if (!any) ++dropped;
  }
  std::stable_sort(counts.begin(), counts.end(),
                   [](const auto& a, const auto& b) {
                     return a.second > b.second ||
                            (a.second == b.second && a.first < b.first);
                   });
  for (const auto& [expert, tokens] : counts) {
    out->add_experts(expert);
    out->add_token_counts(tokens);
  }
  out->set_dropped_tokens(dropped);
}

}  // namespace

absl::StatusOr<std::unique_ptr<InferencePipeline>> InferencePipeline::Create(
    VmoeEngine* engine, const ImageDecoder* decoder, GatewayMetrics* metrics,
    InferencePipelineOptions options, MemoryBudget* memory) {
  if (engine == nullptr || decoder == nullptr) {
    return absl::InvalidArgumentError("engine and decoder are required");
  }
  if (options.max_queue_size < 1 || options.decode_threads < 1) {
    return absl::InvalidArgumentError(
        "max_queue_size and decode_threads must be >= 1");
  }
  if (decoder->image_size() != engine->config().image_size) {
    return absl::InvalidArgumentError("decoder and model image sizes differ");
  }
  auto pipeline = std::unique_ptr<InferencePipeline>(
      new InferencePipeline(engine, decoder, metrics, options, memory));
  InferencePipeline* p = pipeline.get();
  auto batcher = DynamicBatcher<Task>::Create(
      options.batcher,
      [p](std::vector<std::unique_ptr<Task>> batch) {
        p->RunBatch(std::move(batch));
      },
      [p](std::unique_ptr<Task> task) {
        p->Answer(*task,
                  absl::DeadlineExceededError(
                      "deadline passed while waiting for a batch"),
                  {});
      });
  if (!batcher.ok()) return batcher.status();
  p->batcher_ = *std::move(batcher);
  for (int i = 0; i < options.decode_threads; ++i) {
    p->decoders_.emplace_back([p] { p->DecodeLoop(); });
  }
  return pipeline;
}

InferencePipeline::InferencePipeline(VmoeEngine* engine,
                                     const ImageDecoder* decoder,
                                     GatewayMetrics* metrics,
                                     InferencePipelineOptions options,
                                     MemoryBudget* memory)
    : engine_(engine),
      decoder_(decoder),
      metrics_(metrics),
      options_(std::move(options)),
      image_floats_(3ull * engine->config().image_size *
                    engine->config().image_size),
      memory_(memory),
      max_costly_decodes_(std::max(1, options_.decode_threads - 1)) {}

InferencePipeline::~InferencePipeline() { Drain(absl::InfiniteDuration()); }

absl::Status InferencePipeline::Submit(ClassifyCall call) {
  const ClassifyRequest& r = *call.request;
  if (r.top_k() > options_.max_top_k) {
    return absl::InvalidArgumentError(absl::StrCat(
        "top_k ", r.top_k(), " exceeds max_top_k ", options_.max_top_k));
  }
  if (r.image_case() == ClassifyRequest::IMAGE_NOT_SET) {
    return absl::InvalidArgumentError(
        "the request has no image (set encoded, rgb or tensor)");
  }
  auto task = std::make_unique<Task>();
  task->call = std::move(call);
  task->admitted_us = now_us();
  task->deadline_us = task->call.deadline_us;
  absl::MutexLock lock(&mu_);
  if (draining_) return absl::UnavailableError("the server is shutting down");
  if (waiting_ >= options_.max_queue_size) {
    return absl::UnavailableError(absl::StrCat(
        "queue full: ", waiting_, " requests waiting (max_queue_size ",
        options_.max_queue_size, "); retry later"));
  }
  if (absl::Status admitted = Admit(*task); !admitted.ok()) return admitted;
  ++waiting_;
  ++inflight_;
  if (metrics_ != nullptr) {
    metrics_->SetQueued(waiting_);
    metrics_->AddInflight(1);
  }
  (task->costly ? costly_queue_ : cheap_queue_).push_back(std::move(task));
  return absl::OkStatus();
}

absl::Status InferencePipeline::Admit(Task& task) {
  const ClassifyRequest& r = *task.call.request;
  uint64_t work_pixels = 0;
  if (r.image_case() == ClassifyRequest::kEncoded) {
    // Reads the header only; a header that does not parse is refused here.
    auto cost = decoder_->ProbeEncoded(r.encoded());
    if (!cost.ok()) return cost.status();
    task.decode_peak_bytes = cost->peak_bytes;
    work_pixels = cost->work_pixels;
  }
  // Raw pixels are resized in place from the message and tensors copied:
  // both cheap (the bilinear resize reads 4 source pixels per output one).
  task.costly = work_pixels > kCheapWorkPixels;
  task.held_bytes = r.ByteSizeLong() + image_floats_ * sizeof(float);
  if (memory_ == nullptr) return absl::OkStatus();
  const uint64_t needed = task.held_bytes + task.decode_peak_bytes;
  if (!memory_->Fits(needed)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this request needs ", Mib(needed), " (", Mib(task.held_bytes),
        " to hold, ", Mib(task.decode_peak_bytes),
        " to decode) but requests in flight may use at most ",
        Mib(memory_->capacity_bytes()),
        " in all (memory_limit_bytes); send a smaller image"));
  }
  if (!memory_->TryReserve(task.held_bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "memory for requests in flight is full (", Mib(memory_->held_bytes()),
        " of ", Mib(memory_->capacity_bytes()), " held, this request needs ",
        Mib(task.held_bytes), "); retry later"));
  }
  return absl::OkStatus();
}

std::deque<std::unique_ptr<InferencePipeline::Task>>*
InferencePipeline::DecodableQueueLocked() {
  // Draining decodes what is queued (each task is answered) before the
  // workers stop: neither the costly lane's limit nor memory holds it then.
  const bool stopping = stop_decoders_;
  auto fits = [this](const Task& t) {
    return memory_ == nullptr ||
           memory_->Fits(memory_->held_bytes() + t.decode_peak_bytes);
  };
  if (!cheap_queue_.empty() && (stopping || fits(*cheap_queue_.front()))) {
    return &cheap_queue_;
  }
  if (!costly_queue_.empty() &&
      (stopping || (costly_decoding_ < max_costly_decodes_ &&
                    fits(*costly_queue_.front())))) {
    return &costly_queue_;
  }
  return nullptr;
}

std::unique_ptr<InferencePipeline::Task> InferencePipeline::NextDecodeLocked() {
  while (true) {
    mu_.Await(absl::Condition(
        +[](InferencePipeline* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return p->stop_decoders_ || p->DecodableQueueLocked() != nullptr;
        },
        this));
    auto* queue = DecodableQueueLocked();
    if (queue == nullptr) return nullptr;  // stopped, nothing left
    Task& front = *queue->front();
    // Every change to the budget's bytes happens under mu_, so what fitted
    // above is reserved here; only SetCapacity() may have shrunk it since.
    if (memory_ != nullptr && !memory_->TryReserve(front.decode_peak_bytes)) {
      if (!stop_decoders_) continue;
      front.decode_peak_bytes = 0;  // decoded anyway, nothing reserved
    }
    std::unique_ptr<Task> task = std::move(queue->front());
    queue->pop_front();
    if (task->costly) ++costly_decoding_;
    return task;
  }
}

void InferencePipeline::DecodeLoop() {
  while (true) {
    std::unique_ptr<Task> task;
    {
      absl::MutexLock lock(&mu_);
      task = NextDecodeLocked();
    }
    if (task == nullptr) return;
    absl::Status status = Decode(*task);
    {
      absl::MutexLock lock(&mu_);
      if (memory_ != nullptr) memory_->Release(task->decode_peak_bytes);
      task->decode_peak_bytes = 0;
      if (task->costly) --costly_decoding_;
    }
    if (status.ok()) status = batcher_->Submit(&task);
    if (!status.ok()) Answer(*task, status, {});
  }
}

absl::Status InferencePipeline::Decode(Task& task) {
  if (abandon_) return absl::UnavailableError("the server is shutting down");
  const int64_t start = now_us();
  if (task.deadline_us != 0 && task.deadline_us <= start) {
    return absl::DeadlineExceededError("deadline passed before decoding");
  }
  task.image.resize(image_floats_);
  const ClassifyRequest& r = *task.call.request;
  absl::Status status;
  switch (r.image_case()) {
    case ClassifyRequest::kEncoded:
      status = decoder_->DecodeEncoded(r.encoded(), task.image.data()).status();
      break;
    case ClassifyRequest::kRgb:
      status = decoder_->FromRgb(r.rgb().pixels(), r.rgb().width(),
                                 r.rgb().height(), task.image.data());
      break;
    case ClassifyRequest::kTensor:
      status = decoder_->FromTensor(
          {r.tensor().shape().begin(), r.tensor().shape().end()},
          r.tensor().data(), task.image.data());
      break;
    default:
      status = absl::InvalidArgumentError("the request has no image");
  }
  task.decode_us = now_us() - start;
  if (metrics_ != nullptr)
    metrics_->RecordStage(GatewayMetrics::Stage::kDecode,
                          Seconds(task.decode_us));
  return status;
}

void InferencePipeline::RunBatch(std::vector<std::unique_ptr<Task>> batch) {
  const int n = static_cast<int>(batch.size());
  const int64_t start = now_us();
  {
    absl::MutexLock lock(&mu_);
    for (auto& task : batch) task->waiting = false;
    waiting_ -= n;
    if (metrics_ != nullptr) metrics_->SetQueued(waiting_);
  }
  if (abandon_) {
    for (auto& task : batch) {
      Answer(*task, absl::UnavailableError("the server is shutting down"), {});
    }
    return;
  }
  batch_input_.resize(image_floats_ * n);
  for (int i = 0; i < n; ++i) {
    std::copy(batch[i]->image.begin(), batch[i]->image.end(),
              batch_input_.begin() + image_floats_ * i);
    if (metrics_ != nullptr) {
      metrics_->RecordStage(GatewayMetrics::Stage::kQueue,
                            Seconds(start - batch[i]->admitted_us));
    }
  }
  RunTiming timing;
  auto results = engine_->Run(batch_input_.data(), n, &timing);
  if (metrics_ != nullptr) {
    metrics_->RecordBatch(n);
    metrics_->RecordStage(GatewayMetrics::Stage::kCompute,
                          Seconds(timing.total_us));
    metrics_->RecordStage(GatewayMetrics::Stage::kExpertFetch,
                          Seconds(timing.expert_fetch_us));
  }
  for (int i = 0; i < n; ++i) {
    if (!results.ok()) {
      Answer(*batch[i], results.status(), {});
    } else if (!(*results)[i].status.ok()) {
      Answer(*batch[i], (*results)[i].status, {});
    } else {
      ClassifyResponse response =
          BuildResponse(*batch[i], (*results)[i], timing, n, start);
      RecordAnswerMetrics(response);
      Answer(*batch[i], absl::OkStatus(), std::move(response));
    }
  }
}

void InferencePipeline::RecordAnswerMetrics(
    const ClassifyResponse& response) const {
  if (metrics_ == nullptr) return;
  for (const auto& layer : response.experts()) {
    for (int i = 0; i < layer.experts_size(); ++i) {
      // Token routing counts an expert's tokens; image routing the image.
      const uint64_t count =
          i < layer.token_counts_size() ? layer.token_counts(i) : 1;
      metrics_->AddExpertActivations(layer.layer(), layer.experts(i), count);
    }
  }
  if (response.degraded()) metrics_->RecordDegraded();
}

ClassifyResponse InferencePipeline::BuildResponse(
    const Task& task, const ImageResult& result, const RunTiming& timing,
    int batch_size, int64_t batch_start_us) const {
  const ClassifyRequest& r = *task.call.request;
  const ModelConfig& c = engine_->config();
  ClassifyResponse out;
  const uint32_t k = r.top_k() == 0 ? options_.default_top_k : r.top_k();
  FillTop(result.logits, engine_->manifest().labels(), k, &out);
  for (const LayerRouting& layer : result.routing) {
    auto* experts = out.add_experts();
    experts->set_layer(layer.layer);
    if (c.moe.routing == Routing::kImage) {
      for (const ExpertChoice& choice : layer.image_choices) {
        experts->add_experts(choice.expert);
        experts->add_weights(choice.weight);
      }
    } else {
      FillTokenExperts(layer, c.moe.top_k, experts);
    }
  }
  if (r.return_logits()) {
    *out.mutable_logits() = {result.logits.begin(), result.logits.end()};
  }
  if (result.degraded) {
    out.set_degraded(true);
    out.set_degraded_reason(result.degraded_reason);
  }
  auto* t = out.mutable_timing();
  t->set_queue_us(batch_start_us - task.admitted_us);
  t->set_decode_us(task.decode_us);
  t->set_compute_us(timing.total_us);
  t->set_expert_fetch_us(timing.expert_fetch_us);
  t->set_batch_size(batch_size);
  return out;
}

void InferencePipeline::Answer(Task& task, absl::Status status,
                               ClassifyResponse response) {
  response.set_request_id(task.call.request->request_id());
  response.mutable_timing()->set_total_us(now_us() - task.admitted_us);
  // The decoded tensor is no longer needed; the payload goes with the call.
  task.image = {};
  task.call.done(std::move(status), std::move(response));
  absl::MutexLock lock(&mu_);
  if (memory_ != nullptr) memory_->Release(task.held_bytes);
  task.held_bytes = 0;
  if (task.waiting) --waiting_;  // answered before reaching a batch.
  --inflight_;
  if (metrics_ != nullptr) {
    metrics_->SetQueued(waiting_);
    metrics_->AddInflight(-1);
  }
}

void InferencePipeline::Drain(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (stop_decoders_) return;  // already drained.
    draining_ = true;
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return inflight_ == 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      abandon_ = true;  // what is still queued is answered UNAVAILABLE.
    }
    stop_decoders_ = true;
  }
  for (std::thread& t : decoders_) t.join();
  batcher_->Stop();
}

}  // namespace edge
