#include "server/gateway_service.h"

#include <grpc/support/time.h>
#include <grpcpp/alarm.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/saturating_time.h"
#include "google/protobuf/util/json_util.h"

namespace edge {

using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

namespace {

gateway::v1::ModelInfo MakeModelInfo(const VmoeEngine& engine,
                                     int max_batch_size, uint64_t budget) {
  const ModelManifest& m = engine.manifest();
  const ModelConfig& c = m.config();
  gateway::v1::ModelInfo info;
  info.set_name(m.name());
  info.set_description(m.proto().description());
  info.set_precision(engine.precision());
  std::string arch;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  // Serialising a valid message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(m.proto().architecture(),
                                                    &arch, options);
  info.set_architecture_json(arch);
  *info.mutable_labels() = {m.labels().begin(), m.labels().end()};
  info.set_image_size(c.image_size);
  info.set_num_classes(c.num_classes);
  info.set_num_experts_total(static_cast<int>(c.moe.layers.size()) *
                             c.moe.num_experts);
  info.set_routing(c.routing_name());
  info.set_expert_cache_budget_bytes(budget);
  info.set_max_batch_size(max_batch_size);
  return info;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

// One ClassifyStream; see the header for what a stream does.
//
// States (under mu_): reading -> (client half-closed, broken or cancelled:
// reads_done_) or (max age reached: age_reached_, no read is started after
// the one in flight) -> finished once no admitted frame is unanswered and
// no write is in flight: OK after a half-close, UNAVAILABLE at the age.
// After Finish() nothing is admitted: a frame the read in flight still
// brings is dropped unanswered, so the client sends it again.
//
// Owns itself. Two references: gRPC's, dropped in OnDone() (which follows
// Finish()), and the age alarm's, dropped when its callback has run (fired,
// or cancelled in OnDone()); the last one deletes the reactor.
class StreamReactor final
    : public grpc::ServerBidiReactor<ClassifyRequest, ClassifyResponse> {
 public:
  StreamReactor(GatewayService* service, int64_t max_age_ms)
      : service_(service) {
    // Held until the first read has started, so that an alarm firing at
    // once cannot finish the stream before it.
    absl::MutexLock lock(&mu_);
    if (max_age_ms > 0) {
      refs_.fetch_add(1, std::memory_order_relaxed);
      alarm_set_ = true;
      // The monotonic clock: a wall-clock step must not end streams early.
      age_alarm_.Set(
          gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                       gpr_time_from_millis(max_age_ms, GPR_TIMESPAN)),
          [this, max_age_ms](bool fired) {
            if (fired) OnMaxAge(max_age_ms);
            Unref();
          });
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    service_->NoteArrival();
    if (!ok) {  // half-close, cancellation or a broken connection.
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;  // ended at its age meanwhile: not admitted.
      ++pending_;
    }
    Submit(std::move(request_));
    request_.Clear();
    absl::MutexLock lock(&mu_);
    if (!age_reached_) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writes_.pop_front();
    if (!ok) writes_.clear();  // the client is gone; nobody to tell.
    writing_ = !writes_.empty();
    if (writing_) StartWrite(&writes_.front());
    MaybeFinishLocked();
  }

  void OnDone() override {
    if (alarm_set_) age_alarm_.Cancel();  // its callback runs, not fired.
    Unref();
  }

 private:
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // On a gRPC executor thread. Stops reading: no read is started after the
  // one in flight, and the stream finishes once its frames are answered.
  void OnMaxAge(int64_t max_age_ms) {
    absl::MutexLock lock(&mu_);
    age_reached_ = true;
    age_message_ = absl::StrCat(
        kStreamMaxAgeMessage, " (max_stream_age_ms ", max_age_ms,
        "); every frame it received was answered: reopen the stream and "
        "send again the frames without an answer");
    MaybeFinishLocked();
  }

  // REQUIRES: the frame is counted in pending_.
  void Submit(ClassifyRequest request) {
    const auto start = std::chrono::steady_clock::now();
    const std::string id = request.request_id();
    ClassifyCall call;
    call.deadline_us = service_->DeadlineUs(nullptr, request.timeout_us());
    auto owned = std::make_shared<ClassifyRequest>(std::move(request));
    call.request = owned.get();
    call.owner = std::move(owned);
    call.done = [this, start](absl::Status status, ClassifyResponse response) {
      Answer(status, std::move(response), start);
    };
    absl::Status admitted = service_->pipeline()->Submit(std::move(call));
    if (!admitted.ok()) {
      ClassifyResponse response;
      response.set_request_id(id);
      Answer(admitted, std::move(response), start);
    }
  }

  // Queues one frame's answer; called from pipeline or gRPC threads.
  void Answer(const absl::Status& status, ClassifyResponse response,
              std::chrono::steady_clock::time_point start) {
    if (GatewayMetrics* m = service_->metrics()) {
      m->RecordRequest(GatewayMetrics::Method::kClassifyStream,
                       static_cast<int>(status.code()), SecondsSince(start));
    }
    if (!status.ok()) {
      response.mutable_status()->set_code(static_cast<int>(status.code()));
      response.mutable_status()->set_message(std::string(status.message()));
    }
    absl::MutexLock lock(&mu_);
    --pending_;
    writes_.push_back(std::move(response));
    if (!writing_) {
      writing_ = true;
      StartWrite(&writes_.front());
    }
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || pending_ > 0 || writing_) return;
    if (reads_done_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    } else if (age_reached_) {
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, age_message_));
    }
  }

  GatewayService* const service_;
  ClassifyRequest request_;  // the read buffer; only the gRPC read path.
  grpc::Alarm age_alarm_;
  bool alarm_set_ = false;  // constant after construction.
  std::atomic<int> refs_{1};
  absl::Mutex mu_;
  std::deque<ClassifyResponse> writes_
      ABSL_GUARDED_BY(mu_);  // front: in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool age_reached_ ABSL_GUARDED_BY(mu_) = false;
  std::string age_message_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;  // frames admitted, not answered.
};

}  // namespace

GatewayService::GatewayService(InferencePipeline* pipeline,
                               const VmoeEngine* engine,
                               GatewayMetrics* metrics,
                               const GatewayServiceOptions& options)
    : pipeline_(pipeline),
      metrics_(metrics),
      max_stream_age_ms_(options.max_stream_age_ms),
      info_(MakeModelInfo(*engine, options.max_batch_size,
                          options.cache_budget_bytes)) {}

int64_t GatewayService::DeadlineUs(const grpc::CallbackServerContext* context,
                                   uint64_t timeout_us) const {
  const int64_t now = pipeline_->now_us();
  // Saturating: a budget too large for int64 (up to 2^64-1 us) is a
  // deadline that never comes, not one that wrapped into the past.
  int64_t deadline =
      timeout_us == 0 ? 0 : SaturatingAddUnsigned(now, timeout_us);
  if (context != nullptr) {
    const auto call_deadline = context->deadline();
    if (call_deadline != std::chrono::system_clock::time_point::max()) {
      const int64_t left =
          std::chrono::duration_cast<std::chrono::microseconds>(
              call_deadline - std::chrono::system_clock::now())
              .count();
      // An already-expired call still gets a deadline in the past, never 0.
      const int64_t call_us = SaturatingAdd(now, std::max<int64_t>(left, -1));
      deadline = deadline == 0 ? call_us : std::min(deadline, call_us);
    }
  }
  return deadline;
}

void GatewayService::WaitForQuiet(absl::Duration quiet,
                                  absl::Duration limit) const {
  const int64_t quiet_us = absl::ToInt64Microseconds(quiet);
  // An infinite limit (drain_timeout_ms too large for absl::Duration) is
  // INT64_MAX us here; the sum must not wrap and end the wait at once.
  const int64_t end_us =
      SaturatingAdd(pipeline_->now_us(), absl::ToInt64Microseconds(limit));
  while (pipeline_->now_us() < end_us &&
         pipeline_->now_us() - last_arrival_us_ < quiet_us) {
    absl::SleepFor(absl::Milliseconds(10));
  }
}

grpc::ServerUnaryReactor* GatewayService::Classify(
    grpc::CallbackServerContext* context, const ClassifyRequest* request,
    ClassifyResponse* response) {
  NoteArrival();
  const auto start = std::chrono::steady_clock::now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto finish = [this, reactor, response, start](absl::Status status,
                                                 ClassifyResponse answer) {
    if (metrics_ != nullptr) {
      metrics_->RecordRequest(GatewayMetrics::Method::kClassify,
                              static_cast<int>(status.code()),
                              SecondsSince(start));
    }
    if (status.ok()) *response = std::move(answer);
    reactor->Finish(ToGrpcStatus(status));
  };
  ClassifyCall call;
  call.request = request;  // gRPC keeps it until Finish(): no copy.
  call.deadline_us = DeadlineUs(context, request->timeout_us());
  call.done = finish;
  absl::Status admitted = pipeline_->Submit(std::move(call));
  if (!admitted.ok()) finish(admitted, {});
  return reactor;
}

grpc::ServerBidiReactor<ClassifyRequest, ClassifyResponse>*
GatewayService::ClassifyStream(grpc::CallbackServerContext* /*context*/) {
  return new StreamReactor(this, max_stream_age_ms_);
}

grpc::ServerUnaryReactor* GatewayService::GetModelInfo(
    grpc::CallbackServerContext* context,
    const gateway::v1::GetModelInfoRequest* /*request*/,
    gateway::v1::ModelInfo* response) {
  const auto start = std::chrono::steady_clock::now();
  *response = info_;
  if (metrics_ != nullptr) {
    metrics_->RecordRequest(GatewayMetrics::Method::kGetModelInfo, 0,
                            SecondsSince(start));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace edge
