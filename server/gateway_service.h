// GatewayService: the gRPC face of the gateway (proto/gateway.proto).
//
// Thin by design (gRPC's callback examples): each handler turns the call into
// an InferencePipeline submission and finishes it from the pipeline's
// callback; no handler blocks a gRPC thread. Only this layer speaks
// grpc::Status; absl codes map onto gRPC's one to one.
//
// Streams: one ClassifyStream per camera. Every frame read is submitted at
// once (frames of one stream batch together); answers are written as they
// come, one write in flight at a time, each carrying its request_id and, for
// a failed frame, its own status; the stream stays open. The stream finishes
// (OK) once the client has half-closed and every frame has been answered;
// a cancelled stream finishes once no frame of it is still in the pipeline.
//
// A stream open for max_stream_age_ms stops reading, answers every frame it
// admitted, and finishes UNAVAILABLE with kStreamMaxAgeMessage: the client
// reopens it and sends again the frames that got no answer (those written
// after the last read). That is how a camera's stream moves to a new
// connection after a GOAWAY (max_connection_age_ms, server/main.cc), and it
// ends the stream with a reason and every answer it owes, where gRPC's own
// end of an old connection would cancel it mid-frame with UNAVAILABLE
// "enter idle". A stream whose client half-closed first finishes OK.
//
// Thread-safe.
#ifndef EDGE_SERVER_GATEWAY_SERVICE_H_
#define EDGE_SERVER_GATEWAY_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>

#include "engine/vmoe_engine.h"
#include "proto/gateway.grpc.pb.h"
#include "server/inference_pipeline.h"
#include "server/metrics.h"

namespace edge {

// absl and gRPC share their code numbering (absl/status/status.h).
grpc::Status ToGrpcStatus(const absl::Status& status);

// The start of the UNAVAILABLE message of a stream ended at its age.
inline constexpr char kStreamMaxAgeMessage[] =
    "the stream reached its maximum age";

struct GatewayServiceOptions {
  // GetModelInfo's figures: ServerConfig's fields of the same names.
  int max_batch_size = 16;
  uint64_t cache_budget_bytes = 0;
  // A ClassifyStream open this long ends itself (see above); 0 = never.
  // ServerConfig's default.
  int64_t max_stream_age_ms = 0;
};

class GatewayService final
    : public gateway::v1::InferenceGateway::CallbackService {
 public:
  // REQUIRES: all three outlive the service; metrics may be null.
  GatewayService(InferencePipeline* pipeline, const VmoeEngine* engine,
                 GatewayMetrics* metrics, const GatewayServiceOptions& options);

  grpc::ServerUnaryReactor* Classify(
      grpc::CallbackServerContext* context,
      const gateway::v1::ClassifyRequest* request,
      gateway::v1::ClassifyResponse* response) override;

  grpc::ServerBidiReactor<gateway::v1::ClassifyRequest,
                          gateway::v1::ClassifyResponse>*
  ClassifyStream(grpc::CallbackServerContext* context) override;

  grpc::ServerUnaryReactor* GetModelInfo(
      grpc::CallbackServerContext* context,
      const gateway::v1::GetModelInfoRequest* request,
      gateway::v1::ModelInfo* response) override;

  InferencePipeline* pipeline() const { return pipeline_; }
  // Blocks until no call or stream frame has arrived for `quiet`, or until
  // `limit` has passed. Used at shutdown: gRPC cancels (CANCELLED) calls
  // that reach it after Shutdown(), while until then the service refuses
  // them with a retryable UNAVAILABLE.
  void WaitForQuiet(absl::Duration quiet, absl::Duration limit) const;
  // Records that a call or frame arrived (any thread).
  void NoteArrival() { last_arrival_us_ = pipeline_->now_us(); }
  GatewayMetrics* metrics() const { return metrics_; }
  // A deadline on the pipeline's clock: the earlier of the call's gRPC
  // deadline (if `context`) and `timeout_us` from now (if non-zero); 0 for
  // neither. A sum beyond int64 saturates to INT64_MAX, which never passes.
  int64_t DeadlineUs(const grpc::CallbackServerContext* context,
                     uint64_t timeout_us) const;

 private:
  InferencePipeline* const pipeline_;
  GatewayMetrics* const metrics_;
  const int64_t max_stream_age_ms_;
  const gateway::v1::ModelInfo info_;
  std::atomic<int64_t> last_arrival_us_{0};
};

}  // namespace edge

#endif  // EDGE_SERVER_GATEWAY_SERVICE_H_
