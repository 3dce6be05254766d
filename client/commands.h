// The edge-client subcommands, one function each. main() parses the flags
// into these Options; each Run* function validates them, talks to the
// gateway, prints JSON Lines on stdout (json_output.h) and diagnostics on
// stderr, and returns the process exit code:
//
//   kExitOk      everything asked for succeeded;
//   kExitFailed  a call or a frame failed, or the server is not SERVING;
//   kExitUsage   the command line or an input file is unusable (nothing was
//                sent, or for classify: see RunClassify).
//
// Every call carries a deadline, so no command waits on a silent server for
// longer than its timeouts. Not thread-safe: one command per process.
#ifndef EDGE_CLIENT_COMMANDS_H_
#define EDGE_CLIENT_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/gateway_channel.h"

namespace edge::client {

enum ExitCode : int { kExitOk = 0, kExitFailed = 1, kExitUsage = 2 };

// What each request asks of the model; shared by classify, stream, infer.
struct RequestOptions {
  uint32_t top_k = 5;          // Classes per answer (the server's default).
  bool return_logits = false;  // Also return the full logits row.
};

struct ClassifyOptions {
  ConnectionOptions connection;
  RequestOptions request;
  std::vector<std::string> files;  // JPEG/PNG files, sent in this order.
};

// One unary Classify per file (request_id = the file name as given). Prints
// the response with a "file" member, or {"file", "error"}, and goes on with
// the next file; a missing or unreadable file is such an error line.
// kExitFailed if any file failed.
int RunClassify(const ClassifyOptions& options);

struct StreamOptions {
  ConnectionOptions connection;
  RequestOptions request;
  std::string dir;                  // Its *.jpg/*.jpeg/*.png, sorted by name.
  double fps = 10;                  // Send rate; frames are paced, not acked.
  std::string camera_id = "cam-1";  // Sent with every frame.
  int64_t frames = 0;               // Frames to send; 0 = each file once.
  bool loop = false;  // Cycle through the files until `frames` are sent.
};

// One ClassifyStream; see stream_command.cc for the timing model.
// kExitFailed if any frame went unanswered or the stream itself failed.
int RunStream(const StreamOptions& options);

struct InferOptions {
  ConnectionOptions connection;
  uint32_t top_k = 5;
  std::string tensor_path;  // float32 .npy, [3,S,S] or [B,3,S,S].
};

// One unary Classify per image of the .npy, sent as a Tensor with
// return_logits, so the answer can be compared with engine_run's output.
int RunInfer(const InferOptions& options);

// GetModelInfo, printed as one JSON line.
int RunInfo(const ConnectionOptions& options);

struct HealthOptions {
  ConnectionOptions connection;
  std::string service;  // "" = the server as a whole.
  int64_t wait_ms = 0;  // Keep asking until SERVING or this much time passed.
};

// grpc.health.v1.Health/Check; prints the serving status name.
// kExitOk iff SERVING.
int RunHealth(const HealthOptions& options);

}  // namespace edge::client

#endif  // EDGE_CLIENT_COMMANDS_H_
