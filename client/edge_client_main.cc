// edge-client: the command-line client of the edge inference gateway. This
// file owns the command line only: it parses the flags, picks the command
// and hands it an Options struct (client/commands.h); the commands do the
// talking. kUsage below is the user's reference (`edge-client --help`).
#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/commands.h"
#include "client/output.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "all commands: the gateway's HOST:PORT");
ABSL_FLAG(std::string, tls_ca, "",
          "all commands: PEM CA certificates that signed the gateway's "
          "certificate (\"\": the system's roots). Any --tls_* flag "
          "means TLS");
ABSL_FLAG(std::string, tls_cert, "",
          "all commands: PEM client certificate, for a gateway that "
          "requires mutual TLS (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "",
          "all commands: PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "all commands: name the gateway's certificate must carry, if not "
          "--target's host (e.g. through a port-forward)");
ABSL_FLAG(int64_t, timeout_ms, 10000,
          "all commands: deadline of each unary call in ms; stream: time "
          "allowed for the last answers after the final frame");
ABSL_FLAG(uint32_t, top_k, 5,
          "classify, stream, infer: classes per answer (0 = server default)");
ABSL_FLAG(bool, logits, false,
          "classify, stream: also return each image's logits");
ABSL_FLAG(std::string, dir, "",
          "stream: directory of .jpg/.jpeg/.png frames, sent sorted by name");
ABSL_FLAG(double, fps, 10, "stream: frames per second to send");
ABSL_FLAG(std::string, camera_id, "cam-1", "stream: camera_id of every frame");
ABSL_FLAG(int64_t, frames, 0,
          "stream: frames to send (0 = every file once); without --loop at "
          "most one per file");
ABSL_FLAG(bool, loop, false,
          "stream: cycle through the files until --frames are sent");
ABSL_FLAG(std::string, tensor, "",
          "infer: float32 .npy of shape [3,S,S] or [B,3,S,S]");
ABSL_FLAG(std::string, service, "",
          "health: service name to check (\"\" = the whole server)");
ABSL_FLAG(int64_t, wait_ms, 0,
          "health: retry until SERVING or this many ms have passed");

namespace edge::client {
namespace {

constexpr char kUsage[] = R"(command-line client of the edge inference gateway
(edge.gateway.v1.InferenceGateway, plus grpc.health.v1).

Usage: edge-client COMMAND [flags] [FILE...]

Commands:
  classify FILE...  One unary Classify per JPEG/PNG file (its bytes as
                    `encoded`, request_id = the file name as given). Prints a
                    JSON line per file: the response plus "file", or
                    {"file": ..., "error": {"code": "NOT_FOUND", "message": ...}}
                    and goes on with the next file.
                    Flags: --top_k --logits --timeout_ms
  stream            One ClassifyStream of --dir's .jpg/.jpeg/.png files (sorted
                    by name) sent at --fps, open loop: frames are never held
                    back waiting for answers. Prints each answer as a JSON line
                    (plus "latency_ms"), then half-closes, waits for the last
                    answers and prints {"summary": {...}}: frames, sent,
                    answered, unanswered, streams_reopened and the statuses
                    that ended them (reopened_by), errors by code, latency
                    p50/p99/max in ms (client-side, from a frame's due time
                    to its answer). A stream the gateway ends UNAVAILABLE
                    (e.g. at its max_stream_age_ms) is reopened and the
                    unanswered frames sent again.
                    Flags: --dir --fps --frames --loop --camera_id --top_k
                    --logits --timeout_ms
  infer             Sends each image of --tensor (float32 .npy, [3,S,S] or
                    [B,3,S,S], normalised as for engine_run) as a Tensor with
                    return_logits. Prints {"logits": [[...] per image],
                    "top": [[...] per image]}, to compare with engine_run.
                    Flags: --tensor --top_k --timeout_ms
  info              GetModelInfo as a JSON line.
  health            grpc.health.v1 Check: prints SERVING, NOT_SERVING,
                    SERVICE_UNKNOWN or UNKNOWN. Flags: --service --wait_ms

Every command takes --target HOST:PORT and --timeout_ms. Errors name the gRPC
status code (UNAVAILABLE, DEADLINE_EXCEEDED, ...).

TLS: plaintext unless a --tls_* flag is given. --tls_ca CA.pem connects over
TLS and accepts a gateway certificate signed by that CA (for a host name or
IP address of --target); add --tls_cert and --tls_key when the gateway
requires mutual TLS (its tls_client_ca_file is set); --tls_server_name NAME
when the certificate names the gateway differently from --target (e.g.
through a port-forward to 127.0.0.1). A failed handshake (a plaintext
client, a wrong CA, no client certificate) is UNAVAILABLE.

Exit codes:
  0  success (health: SERVING)
  1  a call failed (classify: any file; stream: a frame went unanswered or
     the stream failed, while frames answered with an error status only
     count in the summary; health: not SERVING or no answer). Malformed or
     unknown flags are also reported with 1 (by the flags library).
  2  unusable command or input (unknown command, missing --dir/--tensor,
     bad .npy, empty directory): nothing was sent.

Examples:
  edge-client health --wait_ms 30000
  edge-client health --tls_ca ca.crt --tls_cert client.crt --tls_key client.key
  edge-client classify --top_k 3 cat.jpg dog.png
  edge-client stream --dir frames/ --fps 15 --frames 600 --loop
  edge-client infer --tensor x.npy)";

// absl lists in --help the flags of files named after the binary; ours is
// edge-client, built from edge_client_main.cc.
bool IsMainFile(absl::string_view filename) {
  return absl::EndsWith(filename, "edge_client_main.cc");
}

// --help names the file a flag is defined in; say client/..., not the path
// of the checkout it was built from.
std::string RepoRelative(absl::string_view filename) {
  const size_t client = filename.rfind("client/");
  return std::string(
      client == absl::string_view::npos ? filename : filename.substr(client));
}

ConnectionOptions ConnectionFromFlags() {
  ConnectionOptions options;
  options.target = absl::GetFlag(FLAGS_target);
  options.timeout_ms = absl::GetFlag(FLAGS_timeout_ms);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  options.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  return options;
}

RequestOptions RequestFromFlags() {
  RequestOptions options;
  options.top_k = absl::GetFlag(FLAGS_top_k);
  options.return_logits = absl::GetFlag(FLAGS_logits);
  return options;
}

StreamOptions StreamFromFlags() {
  StreamOptions options;
  options.connection = ConnectionFromFlags();
  options.request = RequestFromFlags();
  options.dir = absl::GetFlag(FLAGS_dir);
  options.fps = absl::GetFlag(FLAGS_fps);
  options.camera_id = absl::GetFlag(FLAGS_camera_id);
  options.frames = absl::GetFlag(FLAGS_frames);
  options.loop = absl::GetFlag(FLAGS_loop);
  return options;
}

// Runs `command`; `operands` are the positional arguments after it.
int RunCommand(const std::string& command,
               const std::vector<std::string>& operands) {
  if (command == "classify") {
    return RunClassify({ConnectionFromFlags(), RequestFromFlags(), operands});
  }
  if (!operands.empty()) {
    PrintDiagnostic(absl::StrCat(command, " takes no FILE arguments, got '",
                                 operands.front(), "' (see --help)"));
    return kExitUsage;
  }
  if (command == "stream") return RunStream(StreamFromFlags());
  if (command == "infer") {
    return RunInfer({ConnectionFromFlags(), absl::GetFlag(FLAGS_top_k),
                     absl::GetFlag(FLAGS_tensor)});
  }
  if (command == "info") return RunInfo(ConnectionFromFlags());
  if (command == "health") {
    return RunHealth({ConnectionFromFlags(), absl::GetFlag(FLAGS_service),
                      absl::GetFlag(FLAGS_wait_ms)});
  }
  PrintDiagnostic(absl::StrCat("unknown command '", command,
                               "': expected classify, stream, infer, info or "
                               "health (see --help)"));
  return kExitUsage;
}

// Everything main() does, inside the namespace.
int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsMainFile;
  config.contains_helpshort_flags = IsMainFile;
  config.normalize_filename = RepoRelative;
  absl::SetFlagsUsageConfig(config);

  const std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    PrintDiagnostic(
        "missing COMMAND: classify, stream, infer, info or health (see "
        "--help)");
    return kExitUsage;
  }
  return RunCommand(args[1],
                    std::vector<std::string>(args.begin() + 2, args.end()));
}

}  // namespace
}  // namespace edge::client

int main(int argc, char** argv) { return edge::client::Main(argc, argv); }
