// stream: one ClassifyStream, held the way a camera holds it.
//
// Timing model: open loop. Frame i is due at start + i / fps on a steady
// clock and is written then, whether or not earlier frames were answered,
// so a slow gateway shows up as latency and errors, not as a lower send rate.
// A reader thread takes the answers as they come (in any order) and matches
// them to their frames by request_id. After the last frame the client
// half-closes and waits for the remaining answers. The call has one
// deadline, the sending schedule plus --timeout_ms, so a silent server
// cannot hang the client.
//
// A stream the gateway ends UNAVAILABLE while frames are due or unanswered
// (older than its max_stream_age_ms, or its connection broke) is reopened,
// as a camera would, by client/stream_reopen.h's rule: the unanswered
// frames are sent again on the new stream, their latency still running from
// their due time, and the schedule goes on. The summary counts the reopened
// streams and the statuses that ended them; other ends of a stream end the
// session.
//
// Latency runs from a frame's due time to its answer. The two differ only
// when gRPC flow control holds the writer back, and that wait is the
// server's doing, so it belongs in the latency (measuring from the late
// send instead would hide it: "coordinated omission"). The summary's
// max_send_lag_ms shows how far the writer fell behind its schedule.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/commands.h"
#include "client/image_files.h"
#include "client/output.h"
#include "client/stream_reopen.h"
#include "common/status_macros.h"
#include "proto/gateway.grpc.pb.h"

namespace edge::client {
namespace {

using ::edge::gateway::v1::ClassifyRequest;
using ::edge::gateway::v1::ClassifyResponse;
using ::edge::gateway::v1::InferenceGateway;
using Clock = std::chrono::steady_clock;
using Stream = grpc::ClientReaderWriter<ClassifyRequest, ClassifyResponse>;

struct ImageFile {
  std::string name;   // File name without the directory, for request ids.
  std::string bytes;  // Read once, up front, so disk never delays a frame.
};

double Milliseconds(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Nearest-rank percentile of `sorted` (ascending, non-empty), p in (0, 100].
double Percentile(const std::vector<double>& sorted, double p) {
  const size_t rank = static_cast<size_t>(std::ceil(p / 100 * sorted.size()));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

// Runs one stream; see the file comment. Used once, from one thread (the
// reader thread is internal).
class StreamSession {
 public:
  StreamSession(InferenceGateway::Stub& stub, const StreamOptions& options,
                std::vector<ImageFile> images, int64_t frames)
      : stub_(stub),
        options_(options),
        images_(std::move(images)),
        frames_(frames) {}

  // Streams every frame, prints each answer and then the summary. Returns
  // the exit code.
  int Run();

 private:
  // Sends frames next_ .. frames_-1 on their schedule; false if the stream
  // broke (next_ is then the frame that could not be sent).
  bool SendFrames(Stream& stream, Clock::time_point start);
  // Sends the frames sent before and not answered again; false if the
  // stream broke.
  bool Resend(Stream& stream);
  ClassifyRequest Request(int64_t frame) const;
  void ReadAnswers(Stream& stream);
  std::string SummaryJson(const absl::Status& status, Clock::duration took);

  // Constant after construction.
  InferenceGateway::Stub& stub_;
  const StreamOptions& options_;
  const std::vector<ImageFile> images_;
  const int64_t frames_;  // To send; cycles through images_.

  struct Pending {
    int64_t frame = 0;
    Clock::time_point due;
  };
  // Every frame sent and not yet answered, by request_id.
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Pending> pending_ ABSL_GUARDED_BY(mu_);

  // Written by the sender only (the calling thread).
  int64_t next_ = 0;      // the next frame of the schedule to send
  int64_t sent_ = 0;      // frames of the schedule sent (resends not counted)
  int64_t reopened_ = 0;  // Set once the last stream has ended.
  // "CODE: message" of each status that ended a reopened stream -> count.
  std::map<std::string, int64_t> reopened_by_;
  Clock::duration max_send_lag_{};

  // Written by the reader thread only; read after it is joined.
  int64_t answered_ = 0;
  int64_t unexpected_ = 0;  // Unknown or repeated request_ids.
  std::map<std::string, int64_t> errors_by_code_;
  std::vector<double> latencies_ms_;
};

int StreamSession::Run() {
  // Enough for the schedule and then one unary timeout for the last answers.
  const auto budget = std::chrono::duration<double>(frames_ / options_.fps) +
                      std::chrono::milliseconds(options_.connection.timeout_ms);
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(budget);
  StreamReopenRule reopen(deadline);
  absl::Status status;
  StreamEnd end;
  for (;;) {
    grpc::ClientContext context;
    SetDeadline(&context, deadline);
    std::unique_ptr<Stream> stream = stub_.ClassifyStream(&context);
    const int64_t sent_before = sent_, answered_before = answered_;
    std::thread reader([this, &stream] { ReadAnswers(*stream); });
    const bool sent_all = Resend(*stream) && SendFrames(*stream, start);
    stream->WritesDone();
    reader.join();
    status = ToAbslStatus(stream->Finish());
    end.code = status.code();
    end.progressed = sent_ > sent_before || answered_ > answered_before;
    {
      absl::MutexLock lock(&mu_);
      end.unfinished = !sent_all || !pending_.empty();
    }
    if (!reopen.ShouldReopen(end, Clock::now())) break;
    ++reopened_by_[absl::StrCat(StatusCodeName(status.raw_code()), ": ",
                                status.message())];
    std::this_thread::sleep_for(StreamReopenRule::kReopenPause);
  }
  reopened_ = reopen.reopens();
  PrintLine(SummaryJson(status, Clock::now() - start));

  absl::MutexLock lock(&mu_);
  const bool complete = sent_ == frames_ && pending_.empty();
  return StreamReopenRule::EndedWell(end) && complete ? kExitOk : kExitFailed;
}

ClassifyRequest StreamSession::Request(int64_t frame) const {
  const ImageFile& image = images_[frame % images_.size()];
  ClassifyRequest request;
  request.set_request_id(absl::StrCat(image.name, "#", frame));
  request.set_camera_id(options_.camera_id);
  request.set_encoded(image.bytes);
  request.set_top_k(options_.request.top_k);
  request.set_return_logits(options_.request.return_logits);
  return request;
}

bool StreamSession::Resend(Stream& stream) {
  std::vector<int64_t> unanswered;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, pending] : pending_) {
      unanswered.push_back(pending.frame);
    }
  }
  for (int64_t frame : StreamReopenRule::FramesToResend(unanswered)) {
    if (!stream.Write(Request(frame))) return false;
  }
  return true;
}

bool StreamSession::SendFrames(Stream& stream, Clock::time_point start) {
  const std::chrono::duration<double> period(1 / options_.fps);
  for (; next_ < frames_; ++next_) {
    const Clock::time_point due =
        start + std::chrono::duration_cast<Clock::duration>(period * next_);
    std::this_thread::sleep_until(due);
    const ClassifyRequest request = Request(next_);
    {
      // Before the write: the answer may arrive before Write() returns.
      absl::MutexLock lock(&mu_);
      pending_[request.request_id()] = Pending{next_, due};
    }
    max_send_lag_ = std::max(max_send_lag_, Clock::now() - due);
    if (!stream.Write(request)) {  // The call is over; Finish() says why.
      absl::MutexLock lock(&mu_);
      pending_.erase(request.request_id());
      return false;
    }
    ++sent_;
  }
  return true;
}

void StreamSession::ReadAnswers(Stream& stream) {
  ClassifyResponse response;
  while (stream.Read(&response)) {
    const Clock::time_point received = Clock::now();
    std::optional<Clock::time_point> due;
    {
      absl::MutexLock lock(&mu_);
      auto it = pending_.find(response.request_id());
      if (it != pending_.end()) {
        due = it->second.due;
        pending_.erase(it);
      }
    }
    if (!due.has_value()) {
      ++unexpected_;
      PrintLine(MessageJson(response));
      continue;
    }
    ++answered_;
    latencies_ms_.push_back(Milliseconds(received - *due));
    if (response.status().code() != 0) {
      ++errors_by_code_[StatusCodeName(response.status().code())];
    }
    PrintLine(PrependMember("latency_ms",
                            absl::StrFormat("%.3f", latencies_ms_.back()),
                            MessageJson(response)));
  }
}

std::string StreamSession::SummaryJson(const absl::Status& status,
                                       Clock::duration took) {
  std::vector<std::string> errors, reopened_by;
  for (const auto& [code, count] : errors_by_code_) {
    errors.push_back(absl::StrCat(JsonQuote(code), ":", count));
  }
  for (const auto& [status, count] : reopened_by_) {
    reopened_by.push_back(absl::StrCat(JsonQuote(status), ":", count));
  }
  std::string latency = "null";
  if (!latencies_ms_.empty()) {
    std::sort(latencies_ms_.begin(), latencies_ms_.end());
    latency = absl::StrFormat(
        R"({"p50":%.3f,"p99":%.3f,"max":%.3f})", Percentile(latencies_ms_, 50),
        Percentile(latencies_ms_, 99), latencies_ms_.back());
  }
  absl::MutexLock lock(&mu_);
  return absl::StrCat(
      "{\"summary\":{\"frames\":", frames_, ",\"sent\":", sent_,
      ",\"answered\":", answered_, ",\"unanswered\":", pending_.size(),
      ",\"unexpected\":", unexpected_, ",\"streams_reopened\":", reopened_,
      ",\"reopened_by\":{", absl::StrJoin(reopened_by, ","), "}",
      ",\"errors\":{", absl::StrJoin(errors, ","), "},\"latency_ms\":", latency,
      ",\"max_send_lag_ms\":",
      absl::StrFormat("%.3f", Milliseconds(max_send_lag_)),
      ",\"seconds\":", absl::StrFormat("%.3f", Milliseconds(took) / 1000),
      ",\"stream_status\":", StatusJson(status), "}}");
}

absl::Status ValidateStreamOptions(const StreamOptions& options) {
  if (options.dir.empty()) {
    return absl::InvalidArgumentError("stream needs --dir DIR (see --help)");
  }
  if (!(options.fps > 0) || !std::isfinite(options.fps)) {
    return absl::InvalidArgumentError("--fps must be a positive number");
  }
  if (options.frames < 0) {
    return absl::InvalidArgumentError("--frames must not be negative");
  }
  if (options.loop && options.frames == 0) {
    return absl::InvalidArgumentError(
        "--loop needs --frames N: streams are bounded");
  }
  return absl::OkStatus();
}

// The images to stream, after checking the options that decide them.
absl::StatusOr<std::vector<ImageFile>> LoadImages(
    const StreamOptions& options) {
  RETURN_IF_ERROR(ValidateStreamOptions(options));
  ASSIGN_OR_RETURN(const std::vector<std::string> paths,
                   ListImageFiles(options.dir));
  std::vector<ImageFile> images;
  for (const std::string& path : paths) {
    ImageFile& image = images.emplace_back();
    image.name = path.substr(path.find_last_of('/') + 1);
    ASSIGN_OR_RETURN(image.bytes, ReadFileBytes(path));
  }
  return images;
}

}  // namespace

int RunStream(const StreamOptions& options) {
  absl::StatusOr<std::vector<ImageFile>> images = LoadImages(options);
  auto channel = CreateGatewayChannel(options.connection);
  for (const absl::Status& status : {images.status(), channel.status()}) {
    if (!status.ok()) {
      PrintDiagnostic(status.message());
      return kExitUsage;
    }
  }
  const int64_t files = static_cast<int64_t>(images->size());
  const int64_t frames = options.frames == 0 ? files
                         : options.loop      ? options.frames
                                             : std::min(options.frames, files);
  std::unique_ptr<InferenceGateway::Stub> stub =
      InferenceGateway::NewStub(*channel);
  StreamSession session(*stub, options, *std::move(images), frames);
  return session.Run();
}

}  // namespace edge::client
