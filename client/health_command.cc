// health: grpc.health.v1.Health/Check, the standard probe the gateway serves
// next to InferenceGateway.
//
// Debian's gRPC packages ship no client stubs for the health service, and
// the two messages have one field each (HealthCheckRequest.service = 1,
// string; HealthCheckResponse.status = 1, enum), so rather than generating
// code from a copied health.proto this file encodes them with protobuf's
// wire-format primitives and calls the method through grpc::GenericStub.
#include <algorithm>
#include <chrono>
#include <future>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "client/output.h"
#include "common/status_macros.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"
#include "grpcpp/generic/generic_stub.h"

namespace edge::client {
namespace {

using ::google::protobuf::internal::WireFormatLite;
using Clock = std::chrono::steady_clock;

constexpr char kCheckMethod[] = "/grpc.health.v1.Health/Check";
// HealthCheckResponse.ServingStatus; an absent field means UNKNOWN (0).
constexpr int kServing = 1;
constexpr const char* kServingStatusNames[] = {
    "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
// Between attempts while waiting: well under the channel's 1 s reconnect
// backoff cap, so a server that comes up is seen within about a second.
constexpr auto kRetryInterval = std::chrono::milliseconds(200);

std::string ServingStatusName(int status) {
  if (status >= 0 &&
      status < static_cast<int>(std::size(kServingStatusNames))) {
    return kServingStatusNames[status];
  }
  return absl::StrCat("SERVING_STATUS_", status);
}

grpc::ByteBuffer EncodeCheckRequest(const std::string& service) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream raw(&bytes);
    google::protobuf::io::CodedOutputStream out(&raw);
    if (!service.empty()) {  // proto3 leaves default values off the wire.
      out.WriteTag(WireFormatLite::MakeTag(
          1, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
      out.WriteVarint32(static_cast<uint32_t>(service.size()));
      out.WriteString(service);
    }
  }  // `out` flushes into `bytes` when destroyed.
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

absl::StatusOr<int> DecodeCheckResponse(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) {
    return absl::DataLossError("unreadable health check response");
  }
  std::string bytes;
  for (const grpc::Slice& s : slices) bytes.append(s.begin(), s.end());

  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(bytes.data()),
      static_cast<int>(bytes.size()));
  int status = 0;
  while (const uint32_t tag = in.ReadTag()) {
    uint32_t value = 0;
    if (tag == WireFormatLite::MakeTag(1, WireFormatLite::WIRETYPE_VARINT)) {
      if (!in.ReadVarint32(&value)) break;
      status = static_cast<int>(value);
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      break;  // Unknown fields are skipped; broken ones end the loop.
    }
  }
  if (in.CurrentPosition() != static_cast<int>(bytes.size())) {
    return absl::DataLossError("malformed health check response");
  }
  return status;
}

// One Check with the given deadline; the serving status on success.
absl::StatusOr<int> CheckOnce(grpc::GenericStub& stub,
                              const std::string& service,
                              std::chrono::milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  const grpc::ByteBuffer request = EncodeCheckRequest(service);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, kCheckMethod, grpc::StubOptions(), &request,
                 &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  // Completes by the deadline at the latest.
  RETURN_IF_ERROR(ToAbslStatus(done.get_future().get()));
  return DecodeCheckResponse(response);
}

// Checks until SERVING or `wait_ms` has passed (one check if it is 0). Any
// failure may be the server still starting, so every outcome but SERVING is
// retried; the last one is returned.
absl::StatusOr<int> CheckUntilServing(grpc::GenericStub& stub,
                                      const HealthOptions& options) {
  using std::chrono::milliseconds;
  const milliseconds timeout(options.connection.timeout_ms);
  const Clock::time_point give_up =
      Clock::now() + milliseconds(options.wait_ms);
  absl::StatusOr<int> result;
  do {
    const auto left =
        std::chrono::duration_cast<milliseconds>(give_up - Clock::now());
    result = CheckOnce(stub, options.service,
                       options.wait_ms == 0
                           ? timeout
                           : std::clamp(left, milliseconds(1), timeout));
    if (result.ok() && *result == kServing) break;
    std::this_thread::sleep_for(
        std::min<Clock::duration>(kRetryInterval, give_up - Clock::now()));
  } while (Clock::now() < give_up);
  return result;
}

}  // namespace

int RunHealth(const HealthOptions& options) {
  if (options.wait_ms < 0) {
    PrintDiagnostic("--wait_ms must not be negative");
    return kExitUsage;
  }
  auto channel = CreateGatewayChannel(options.connection);
  if (!channel.ok()) {
    PrintDiagnostic(channel.status().message());
    return kExitUsage;
  }
  grpc::GenericStub stub(*channel);
  const absl::StatusOr<int> result = CheckUntilServing(stub, options);
  if (!result.ok()) {
    PrintDiagnostic(absl::StrCat(
        "health check failed: ", StatusCodeName(result.status().raw_code()),
        ": ", result.status().message()));
    return kExitFailed;
  }
  PrintLine(ServingStatusName(*result));
  return *result == kServing ? kExitOk : kExitFailed;
}

}  // namespace edge::client
