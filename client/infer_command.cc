// infer: sends already-normalised images from a .npy (engine_run's input
// format) as Tensors, one unary call per image, and prints the logits in
// the layout engine_run writes them ([B, C]), so the gateway's answers can be
// diffed against the engine's offline output.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "client/commands.h"
#include "client/output.h"
#include "common/npy.h"
#include "common/status_macros.h"
#include "proto/gateway.grpc.pb.h"

namespace edge::client {
namespace {

using ::edge::gateway::v1::ClassifyRequest;
using ::edge::gateway::v1::ClassifyResponse;
using ::edge::gateway::v1::ClassScore;
using ::edge::gateway::v1::InferenceGateway;

// A .npy of images: `count` images of [3, size, size] floats, back to back.
struct ImageBatch {
  NpyArray array;
  int64_t count = 0;
  int64_t size = 0;
};

absl::StatusOr<ImageBatch> ReadImageBatch(const std::string& path) {
  ImageBatch batch;
  ASSIGN_OR_RETURN(batch.array, ReadNpyFloat32(path));
  std::vector<int64_t> shape = batch.array.shape;
  if (shape.size() == 3) shape.insert(shape.begin(), 1);
  if (shape.size() != 4 || shape[0] < 1 || shape[1] != 3 || shape[2] < 1 ||
      shape[2] != shape[3]) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " has shape [", absl::StrJoin(batch.array.shape, ","),
        "]; infer needs float32 [3,S,S] or [B,3,S,S]"));
  }
  batch.count = shape[0];
  batch.size = shape[2];
  return batch;
}

// The wire format of Tensor.data: float32, little-endian whatever the host.
std::string LittleEndianBytes(absl::Span<const float> values) {
  std::string bytes(values.size() * sizeof(float), '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &values[i], sizeof(bits));
    for (int b = 0; b < 4; ++b) {
      bytes[i * 4 + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
    }
  }
  return bytes;
}

absl::StatusOr<ClassifyResponse> InferImage(InferenceGateway::Stub& stub,
                                            const InferOptions& options,
                                            const ImageBatch& batch,
                                            int64_t index) {
  const int64_t floats = 3 * batch.size * batch.size;
  ClassifyRequest request;
  request.set_request_id(absl::StrCat(options.tensor_path, "[", index, "]"));
  request.set_top_k(options.top_k);
  request.set_return_logits(true);
  auto* tensor = request.mutable_tensor();
  for (int64_t dim : {int64_t{3}, batch.size, batch.size}) {
    tensor->add_shape(dim);
  }
  tensor->set_data(LittleEndianBytes(
      absl::MakeConstSpan(batch.array.data.data() + index * floats, floats)));

  grpc::ClientContext context;
  SetDeadlineAfter(&context, options.connection.timeout_ms);
  ClassifyResponse response;
  RETURN_IF_ERROR(ToAbslStatus(stub.Classify(&context, request, &response)));
  return response;
}

std::string TopJson(const ClassifyResponse& response) {
  std::vector<std::string> scores;
  for (const ClassScore& score : response.top()) {
    scores.push_back(MessageJson(score));
  }
  return absl::StrCat("[", absl::StrJoin(scores, ","), "]");
}

}  // namespace

int RunInfer(const InferOptions& options) {
  if (options.tensor_path.empty()) {
    PrintDiagnostic("infer needs --tensor FILE.npy (see --help)");
    return kExitUsage;
  }
  absl::StatusOr<ImageBatch> batch = ReadImageBatch(options.tensor_path);
  auto channel = CreateGatewayChannel(options.connection);
  for (const absl::Status& status : {batch.status(), channel.status()}) {
    if (!status.ok()) {
      PrintDiagnostic(status.message());
      return kExitUsage;
    }
  }
  std::unique_ptr<InferenceGateway::Stub> stub =
      InferenceGateway::NewStub(*channel);

  std::vector<std::string> logits, tops;
  for (int64_t i = 0; i < batch->count; ++i) {
    absl::StatusOr<ClassifyResponse> response =
        InferImage(*stub, options, *batch, i);
    if (!response.ok()) {
      // Later rows would not line up with engine_run's, so stop here.
      PrintLine(absl::StrCat(
          "{\"image\":", i, ",\"error\":", StatusJson(response.status()), "}"));
      return kExitFailed;
    }
    logits.push_back(FloatArrayJson(response->logits()));
    tops.push_back(TopJson(*response));
  }
  PrintLine(absl::StrCat("{\"logits\":[", absl::StrJoin(logits, ","),
                         "],\"top\":[", absl::StrJoin(tops, ","), "]}"));
  return kExitOk;
}

}  // namespace edge::client
