// classify and info: one unary call per input, each with its own deadline.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "client/image_files.h"
#include "client/output.h"
#include "common/status_macros.h"
#include "proto/gateway.grpc.pb.h"

namespace edge::client {
namespace {

using ::edge::gateway::v1::ClassifyRequest;
using ::edge::gateway::v1::ClassifyResponse;
using ::edge::gateway::v1::GetModelInfoRequest;
using ::edge::gateway::v1::InferenceGateway;
using ::edge::gateway::v1::ModelInfo;

absl::StatusOr<ClassifyResponse> ClassifyFile(InferenceGateway::Stub& stub,
                                              const ClassifyOptions& options,
                                              const std::string& file) {
  ClassifyRequest request;
  ASSIGN_OR_RETURN(*request.mutable_encoded(), ReadFileBytes(file));
  request.set_request_id(file);
  request.set_top_k(options.request.top_k);
  request.set_return_logits(options.request.return_logits);

  grpc::ClientContext context;
  SetDeadlineAfter(&context, options.connection.timeout_ms);
  ClassifyResponse response;
  RETURN_IF_ERROR(ToAbslStatus(stub.Classify(&context, request, &response)));
  return response;
}

}  // namespace

int RunClassify(const ClassifyOptions& options) {
  if (options.files.empty()) {
    PrintDiagnostic("classify needs at least one FILE (see --help)");
    return kExitUsage;
  }
  auto channel = CreateGatewayChannel(options.connection);
  if (!channel.ok()) {
    PrintDiagnostic(channel.status().message());
    return kExitUsage;
  }
  std::unique_ptr<InferenceGateway::Stub> stub =
      InferenceGateway::NewStub(*channel);

  int exit_code = kExitOk;
  for (const std::string& file : options.files) {
    absl::StatusOr<ClassifyResponse> response =
        ClassifyFile(*stub, options, file);
    if (response.ok()) {
      PrintLine(PrependMember("file", JsonQuote(file), MessageJson(*response)));
    } else {
      PrintLine(absl::StrCat("{\"file\":", JsonQuote(file), ",\"error\":",
                             StatusJson(response.status()), "}"));
      exit_code = kExitFailed;
    }
  }
  return exit_code;
}

int RunInfo(const ConnectionOptions& options) {
  auto channel = CreateGatewayChannel(options);
  if (!channel.ok()) {
    PrintDiagnostic(channel.status().message());
    return kExitUsage;
  }
  std::unique_ptr<InferenceGateway::Stub> stub =
      InferenceGateway::NewStub(*channel);
  grpc::ClientContext context;
  SetDeadlineAfter(&context, options.timeout_ms);
  ModelInfo info;
  const grpc::Status status =
      stub->GetModelInfo(&context, GetModelInfoRequest(), &info);
  if (!status.ok()) {
    PrintLine(
        absl::StrCat("{\"error\":", StatusJson(ToAbslStatus(status)), "}"));
    return kExitFailed;
  }
  PrintLine(MessageJson(info));
  return kExitOk;
}

}  // namespace edge::client
