// Stream mode: one CameraSession per camera; see load_drivers.h for the
// timing model.
#include <algorithm>
#include <thread>

#include "absl/strings/numbers.h"
#include "loadtest/gateway_connection.h"
#include "loadtest/load_drivers.h"
#include "common/random.h"
#include "proto/gateway.grpc.pb.h"

namespace edge::loadtest {
namespace {

using gateway::v1::ClassifyRequest;
using gateway::v1::ClassifyResponse;
using Stream = grpc::ClientReaderWriter<ClassifyRequest, ClassifyResponse>;

// One camera's stream. Run() is called once, on the camera's thread; the
// reader thread it starts shares only log_ (thread-safe) and the counter
// it alone writes until it is joined.
class CameraSession {
 public:
  CameraSession(const LoadContext& context, int camera)
      : context_(context), camera_(camera) {}

  void Run();

  // After Run().
  ClientLog& log() { return log_; }
  const std::string& failure() const { return failure_; }
  int64_t unexpected_answers() const { return unexpected_; }
  int64_t send_end_ns() const { return send_end_ns_; }
  int64_t max_send_lag_ns() const { return max_send_lag_ns_; }

 private:
  void SendFrames(Stream& stream);
  // Sends the frame due at `due` (sleeping until then); false if the
  // stream is broken.
  bool SendFrame(Stream& stream, Clock::time_point due, std::mt19937_64& rng);
  void ReadAnswers(Stream& stream);

  const LoadContext& context_;
  const int camera_;
  ClientLog log_;
  std::string failure_;     // Code name if the stream ended badly.
  int64_t unexpected_ = 0;  // Written by the reader thread only.
  int64_t send_end_ns_ = 0;
  int64_t max_send_lag_ns_ = 0;
};

void CameraSession::Run() {
  const LoadTestOptions& options = *context_.options;
  // The schedule, then one timeout for the last answers, then a second for
  // them to travel: enough for a server that honours timeout_us.
  const auto budget = std::chrono::duration<double>(options.duration_s) +
                      std::chrono::milliseconds(options.timeout_ms) +
                      std::chrono::seconds(1);
  grpc::ClientContext call;
  call.set_deadline(
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          budget - (Clock::now() - context_.start)));
  auto stub =
      gateway::v1::InferenceGateway::NewStub(context_.channels[camera_]);
  std::unique_ptr<Stream> stream = stub->ClassifyStream(&call);
  std::thread reader([this, &stream] { ReadAnswers(*stream); });
  SendFrames(*stream);
  reader.join();
  const grpc::Status status = stream->Finish();
  if (!status.ok()) failure_ = StatusCodeName(status.error_code());
}

void CameraSession::SendFrames(Stream& stream) {
  const LoadTestOptions& options = *context_.options;
  std::mt19937_64 rng = MakeClientRng(options.seed, camera_);
  const std::chrono::duration<double> period(1 / options.fps);
  const auto phase = period * UnitInterval(rng);
  const Clock::time_point end =
      context_.start + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(options.duration_s));
  bool stopped_early = false;  // By --max_requests or a broken stream.
  for (int64_t i = 0;; ++i) {
    const Clock::time_point due =
        context_.start +
        std::chrono::duration_cast<Clock::duration>(phase + period * i);
    if (due >= end) break;
    if (!context_.budget->TryTake() || !SendFrame(stream, due, rng)) {
      stopped_early = true;
      break;
    }
  }
  // A schedule that ran out ends sending at `end` (not at the last frame,
  // up to a period earlier), so the measured window is the same for every
  // frame rate.
  const Clock::time_point now = Clock::now();
  send_end_ns_ =
      SinceStartNs(context_, stopped_early ? now : std::max(now, end));
  stream.WritesDone();
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
    result.send_end_ns = std::max(result.send_end_ns, session->send_end_ns());
    result.max_send_lag_ns =
        std::max(result.max_send_lag_ns, session->max_send_lag_ns());
  }
  return result;
}

}  // namespace edge::loadtest
