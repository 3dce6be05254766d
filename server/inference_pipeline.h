// InferencePipeline: everything between a gRPC handler and the engine.
//
//   Submit() (gRPC thread: admission only, never blocks)
//     -> decode workers (decode, resize, normalise; off the gRPC threads)
//     -> DynamicBatcher (max_batch_size / max_queue_delay_us)
//     -> VmoeEngine::Run on the batcher thread
//     -> the request's callback with its ClassifyResponse.
//
// Contract: Submit() either refuses at once (UNAVAILABLE: queue full or
// draining; INVALID_ARGUMENT: a request that can never succeed) and never
// calls `done`, or admits the request and calls `done` exactly once, from
// a pipeline thread, with OK and a response or with the request's error:
// INVALID_ARGUMENT (bad image), DEADLINE_EXCEEDED (deadline passed before
// compute; the request is not computed), NOT_FOUND / DATA_LOSS (an expert it
// needs could not be loaded and the engine's policy is kFail; with kReroute
// the answer is OK, marked degraded and counted), UNAVAILABLE (drain
// timeout ran out). Nothing admitted is dropped.
//
// max_queue_size bounds the requests admitted and not yet computing
// (decoding + waiting for a batch): memory stays bounded under any flood,
// and a full queue answers at once instead of making callers wait.
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
#include "server/metrics.h"

namespace edge {

struct InferencePipelineOptions {
  DynamicBatcherOptions batcher;
  int max_queue_size = 256;    // ServerConfig's default.
  int decode_threads = 1;      // ServerConfig's default.
  uint32_t max_top_k = 100;    // ServerConfig's default.
  uint32_t default_top_k = 5;  // what top_k = 0 means (gateway.proto).
};

// Called exactly once per admitted request.
using ClassifyDone =
    std::function<void(absl::Status, gateway::v1::ClassifyResponse)>;

struct ClassifyCall {
  gateway::v1::ClassifyRequest request;
  // Absolute on now_us(); 0 = none (and INT64_MAX, a saturated sum, never
  // passes either).
  int64_t deadline_us = 0;
  ClassifyDone done;
};

class InferencePipeline {
 public:
  // REQUIRES: engine, decoder outlive the pipeline; metrics may be null.
  static absl::StatusOr<std::unique_ptr<InferencePipeline>> Create(
      VmoeEngine* engine, const ImageDecoder* decoder, GatewayMetrics* metrics,
      InferencePipelineOptions options);
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
                    GatewayMetrics* metrics, InferencePipelineOptions options);
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

  absl::Mutex mu_;
  std::deque<std::unique_ptr<Task>> decode_queue_ ABSL_GUARDED_BY(mu_);
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
