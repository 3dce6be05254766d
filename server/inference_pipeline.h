// InferencePipeline: everything between a gRPC handler and the engine.
//
//   Submit() (gRPC thread: admission only, never blocks)
//     -> decode workers (decode, resize, normalise; off the gRPC threads)
//     -> DynamicBatcher (max_batch_size / max_queue_delay_us)
//     -> VmoeEngine::Run on the batcher thread
//     -> the request's callback with its ClassifyResponse.
//
// Contract: Submit() either refuses at once (UNAVAILABLE: queue full or
// draining; RESOURCE_EXHAUSTED: the memory budget is full, or the request
// needs more than all of it; INVALID_ARGUMENT: a request that can never
// succeed, such as an image whose header is unreadable) and never
// calls `done`, or admits the request and calls `done` exactly once, from
// a pipeline thread, with OK and a response or with the request's error:
// INVALID_ARGUMENT (bad image), DEADLINE_EXCEEDED (deadline passed before
// compute; the request is not computed), NOT_FOUND / DATA_LOSS (an expert it
// needs could not be loaded and the engine's policy is kFail; with kReroute
// the answer is OK, marked degraded and counted), UNAVAILABLE (drain
// timeout ran out). Nothing admitted is dropped.
//
// max_queue_size bounds the requests admitted and not yet computing
// (decoding + waiting for a batch), and the MemoryBudget (if any) the bytes
// they hold (server/memory_budget.h): a request that does not fit is refused
// at once with RESOURCE_EXHAUSTED; a full queue with UNAVAILABLE. Either way
// callers are answered at once instead of made to wait.
//
// Decoding is scheduled by cost, which Submit() reads from the image's
// header (ImageDecoder::Probe) before anything is decoded:
//   - cheap frames (at most kCheapWorkPixels of decode work, a full-HD
//     frame) are decoded before costly ones, in arrival order;
//   - costly frames are decoded in arrival order on at most
//     decode_threads - 1 threads at once (1 with a single thread), so with
//     two or more threads one is always free for cheap frames: a burst of
//     decompression bombs delays ordinary camera frames by at most one
//     cheap decode, not by the whole burst;
//   - a decode starts only when its peak memory fits the budget; until
//     then it waits, and the other lane's frames that fit go first.
//
// Thread-safe.
#ifndef EDGE_SERVER_INFERENCE_PIPELINE_H_
#define EDGE_SERVER_INFERENCE_PIPELINE_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/vmoe_engine.h"
#include "proto/gateway.pb.h"
#include "server/dynamic_batcher.h"
#include "server/image_decoder.h"
#include "server/memory_budget.h"
#include "server/metrics.h"

namespace edge {

struct InferencePipelineOptions {
  DynamicBatcherOptions batcher;
  int max_queue_size = 64;     // ServerConfig's default.
  int decode_threads = 2;      // ServerConfig's default.
  uint32_t max_top_k = 100;    // ServerConfig's default.
  uint32_t default_top_k = 5;  // what top_k = 0 means (gateway.proto).
};

// Called exactly once per admitted request.
using ClassifyDone =
    std::function<void(absl::Status, gateway::v1::ClassifyResponse)>;

struct ClassifyCall {
  // REQUIRES: valid until `done` has been called. gRPC owns a unary call's
  // request until the call finishes, so it is used in place: a 120 MB raw
  // frame is not copied. A stream's frames are owned by `owner`.
  const gateway::v1::ClassifyRequest* request = nullptr;
  std::shared_ptr<const void> owner;
  // Absolute on now_us(); 0 = none (and INT64_MAX, a saturated sum, never
  // passes either).
  int64_t deadline_us = 0;
  ClassifyDone done;
};

class InferencePipeline {
 public:
  // REQUIRES: engine, decoder outlive the pipeline; metrics may be null.
  // `memory` (may be null: no memory bound) must outlive the pipeline.
  static absl::StatusOr<std::unique_ptr<InferencePipeline>> Create(
      VmoeEngine* engine, const ImageDecoder* decoder, GatewayMetrics* metrics,
      InferencePipelineOptions options, MemoryBudget* memory = nullptr);
  ~InferencePipeline();  // Drains with no timeout if Drain() was not called.

  absl::Status Submit(ClassifyCall call);

  // Refuses new requests and answers every admitted one: computed if it
  // finishes within `timeout`, else UNAVAILABLE. Stops the threads.
  void Drain(absl::Duration timeout);

  // The pipeline's clock (options.batcher.now_us), for deadlines.
  int64_t now_us() const { return options_.batcher.now_us(); }

 private:
  struct Task;
  InferencePipeline(VmoeEngine* engine, const ImageDecoder* decoder,
                    GatewayMetrics* metrics, InferencePipelineOptions options,
                    MemoryBudget* memory);
  // Reads the decode cost from the image's header and reserves the bytes
  // the request holds; the refusal otherwise.
  absl::Status Admit(Task& task);
  // The next task a decode worker may start (its decode peak reserved), or
  // null once stopped. REQUIRES: mu_ held.
  std::unique_ptr<Task> NextDecodeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The queue whose front may be decoded now (see the header's policy), or
  // null.
  std::deque<std::unique_ptr<Task>>* DecodableQueueLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DecodeLoop();
  absl::Status Decode(Task& task);
  void RunBatch(std::vector<std::unique_ptr<Task>> batch);
  void Answer(Task& task, absl::Status status,
              gateway::v1::ClassifyResponse response);
  gateway::v1::ClassifyResponse BuildResponse(const Task& task,
                                              const ImageResult& result,
                                              const RunTiming& timing,
                                              int batch_size,
                                              int64_t batch_start_us) const;
  // Expert activations and degraded answers of an answer about to be sent.
  void RecordAnswerMetrics(const gateway::v1::ClassifyResponse& response) const;

  VmoeEngine* const engine_;
  const ImageDecoder* const decoder_;
  GatewayMetrics* const metrics_;
  const InferencePipelineOptions options_;
  const size_t image_floats_;

  MemoryBudget* const memory_;  // null: no memory bound
  // Costly decodes allowed at once: decode_threads - 1, at least 1.
  const int max_costly_decodes_;

  absl::Mutex mu_;
  // Waiting to decode, by cost class, each in arrival order.
  std::deque<std::unique_ptr<Task>> cheap_queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::unique_ptr<Task>> costly_queue_ ABSL_GUARDED_BY(mu_);
  int costly_decoding_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;   // admitted, not yet computing.
  int inflight_ ABSL_GUARDED_BY(mu_) = 0;  // admitted, not yet answered.
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_decoders_ ABSL_GUARDED_BY(mu_) = false;
  // Set when the drain timeout runs out: answer UNAVAILABLE, don't compute.
  std::atomic<bool> abandon_{false};

  std::unique_ptr<DynamicBatcher<Task>> batcher_;
  std::vector<std::thread> decoders_;
  std::vector<float> batch_input_;  // used by the batcher thread only.
};

}  // namespace edge

#endif  // EDGE_SERVER_INFERENCE_PIPELINE_H_
