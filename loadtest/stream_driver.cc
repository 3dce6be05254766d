// Stream mode: one CameraSession per camera; see load_drivers.h for the
// timing model.
#include <algorithm>
#include <thread>

#include "absl/strings/numbers.h"
#include "client/gateway_channel.h"
#include "client/stream_reopen.h"
#include "loadtest/load_drivers.h"
#include "proto/gateway.grpc.pb.h"
#include "tools/cpp/random.h"

namespace edge::loadtest {
namespace {

using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;
using Stream = grpc::ClientReaderWriter<ClassifyRequest, ClassifyResponse>;

// One camera's stream. Run() is called once, on the camera's thread; the
// reader thread of each stream it opens shares only log_ (thread-safe) and
// the counter it alone writes until it is joined.
//
// A stream the server ends UNAVAILABLE while frames are due or unanswered
// (the gateway's max_stream_age_ms, or a broken connection) is reopened, as
// a camera would, by client/stream_reopen.h's rule: the unanswered frames
// are sent again on the new stream (their latency still runs from their due
// time) and the schedule continues. Other ends are reported as stream
// failures, except an UNAVAILABLE one that lost nothing.
class CameraSession {
 public:
  CameraSession(const LoadContext& context, int camera)
      : context_(context), camera_(camera) {}

  void Run();

  // After Run().
  ClientLog& log() { return log_; }
  const std::string& failure() const { return failure_; }
  int64_t unexpected_answers() const { return unexpected_; }
  int64_t reopened() const { return reopened_; }
  int64_t send_end_ns() const { return send_end_ns_; }
  int64_t max_send_lag_ns() const { return max_send_lag_ns_; }

 private:
  // Sends the schedule's frames from *next on; false if the stream broke
  // (*next is then the frame that could not be sent).
  bool SendFrames(Stream& stream, int64_t* next, std::mt19937_64& rng);
  // Sends the frame due at `due` (sleeping until then); false if the
  // stream is broken (the frame is then withdrawn from the log).
  bool SendFrame(Stream& stream, Clock::time_point due, std::mt19937_64& rng);
  // Sends again the frames logged but unanswered; false if the stream broke.
  bool Resend(Stream& stream);
  void ReadAnswers(Stream& stream);
  Clock::time_point ScheduleEnd() const;

  const LoadContext& context_;
  const int camera_;
  ClientLog log_;
  std::string failure_;     // Code name if the stream ended badly.
  int64_t unexpected_ = 0;  // Written by the reader thread only.
  int64_t answers_ = 0;     // Written by the reader thread only.
  int64_t send_end_ns_ = 0;
  int64_t max_send_lag_ns_ = 0;
  int64_t reopened_ = 0;
  std::chrono::duration<double> phase_{0};  // first frame's offset
};

void CameraSession::Run() {
  const LoadTestOptions& options = *context_.options;
  // The schedule, then one timeout for the last answers, then a second for
  // them to travel: enough for a server that honours timeout_us.
  const auto budget = std::chrono::duration<double>(options.duration_s) +
                      std::chrono::milliseconds(options.timeout_ms) +
                      std::chrono::seconds(1);
  const Clock::time_point deadline =
      context_.start + std::chrono::duration_cast<Clock::duration>(budget);
  auto stub =
      gateway::v1::InferenceGateway::NewStub(context_.channels[camera_]);
  std::mt19937_64 rng = MakeClientRng(options.seed, camera_);
  phase_ = std::chrono::duration<double>(1 / options.fps) * UnitInterval(rng);
  client::StreamReopenRule reopen(deadline);
  client::StreamEnd end;
  int64_t next = 0;
  for (;;) {
    grpc::ClientContext call;
    client::SetDeadline(&call, deadline);
    std::unique_ptr<Stream> stream = stub->ClassifyStream(&call);
    const int64_t next_before = next, answers_before = answers_;
    std::thread reader([this, &stream] { ReadAnswers(*stream); });
    const bool sent_all = Resend(*stream) && SendFrames(*stream, &next, rng);
    stream->WritesDone();
    reader.join();
    end.code = client::ToAbslStatus(stream->Finish()).code();
    end.unfinished = !sent_all || !log_.InFlight().empty();
    end.progressed = next > next_before || answers_ > answers_before;
    if (!reopen.ShouldReopen(end, Clock::now())) break;
    std::this_thread::sleep_for(client::StreamReopenRule::kReopenPause);
  }
  reopened_ = reopen.reopens();
  if (!client::StreamReopenRule::EndedWell(end)) {
    failure_ = client::StatusCodeName(static_cast<int>(end.code));
  }
}

Clock::time_point CameraSession::ScheduleEnd() const {
  return context_.start +
         std::chrono::duration_cast<Clock::duration>(
             std::chrono::duration<double>(context_.options->duration_s));
}

bool CameraSession::Resend(Stream& stream) {
  for (int64_t index :
       client::StreamReopenRule::FramesToResend(log_.InFlight())) {
    if (!stream.Write(
            MakeRequest(context_, camera_, log_.Scene(index), index))) {
      return false;
    }
  }
  return true;
}

bool CameraSession::SendFrames(Stream& stream, int64_t* next,
                               std::mt19937_64& rng) {
  const std::chrono::duration<double> period(1 / context_.options->fps);
  const Clock::time_point end = ScheduleEnd();
  for (;; ++*next) {
    const Clock::time_point due =
        context_.start +
        std::chrono::duration_cast<Clock::duration>(phase_ + period * *next);
    bool ok = true;
    if (due >= end || !context_.budget->TryTake() ||
        !(ok = SendFrame(stream, due, rng))) {
      // A schedule that ran out ends sending at its end (not at the last
      // frame, up to a period earlier), so the measured window is the same
      // for every frame rate; a reopened stream overwrites this.
      const Clock::time_point now = Clock::now();
      send_end_ns_ =
          SinceStartNs(context_, due >= end ? std::max(now, end) : now);
      return ok;
    }
  }
}

bool CameraSession::SendFrame(Stream& stream, Clock::time_point due,
                              std::mt19937_64& rng) {
  std::this_thread::sleep_until(due);
  RequestRecord record;
  record.client = camera_;
  record.start_ns = SinceStartNs(context_, due);
  record.scene = context_.picker->Pick(camera_, record.start_ns * 1e-9, rng);
  record.sent_ns = SinceStartNs(context_, Clock::now());
  max_send_lag_ns_ =
      std::max(max_send_lag_ns_, record.sent_ns - record.start_ns);
  // Logged before the write: the answer may arrive before Write returns.
  const int64_t index = log_.Add(record);
  if (!stream.Write(MakeRequest(context_, camera_, record.scene, index))) {
    log_.Withdraw(index);  // The call is over; Finish() says why.
    return false;
  }
  return true;
}

void CameraSession::ReadAnswers(Stream& stream) {
  ClassifyResponse response;
  while (stream.Read(&response)) {
    ++answers_;
    const int64_t now_ns = SinceStartNs(context_, Clock::now());
    int64_t index = -1;
    if (!absl::SimpleAtoi(response.request_id(), &index) ||
        !log_.Answer(index, now_ns, response.status().code(), &response)) {
      ++unexpected_;
    }
  }
}

}  // namespace

DriverResult RunStreamDriver(const LoadContext& context) {
  const int cameras = context.options->cameras;
  std::vector<std::unique_ptr<CameraSession>> sessions;
  std::vector<std::thread> threads;
  for (int c = 0; c < cameras; ++c) {
    sessions.push_back(std::make_unique<CameraSession>(context, c));
  }
  for (int c = 0; c < cameras; ++c) {
    threads.emplace_back([session = sessions[c].get()] { session->Run(); });
  }
  for (std::thread& thread : threads) thread.join();

  DriverResult result;
  for (const std::unique_ptr<CameraSession>& session : sessions) {
    std::vector<RequestRecord> records = session->log().TakeRecords();
    result.records.insert(result.records.end(), records.begin(), records.end());
    if (!session->failure().empty()) {
      ++result.stream_failures[session->failure()];
    }
    result.unexpected_answers += session->unexpected_answers();
    result.streams_reopened += session->reopened();
    result.send_end_ns = std::max(result.send_end_ns, session->send_end_ns());
    result.max_send_lag_ns =
        std::max(result.max_send_lag_ns, session->max_send_lag_ns());
  }
  return result;
}

}  // namespace edge::loadtest
