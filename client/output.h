// What edge-client prints. Results go to stdout as JSON objects, one per line
// (JSON Lines), so scripts can read them with `jq` or a line splitter;
// diagnostics for people go to stderr. Protobuf messages use protobuf's JSON
// mapping with the .proto field names (`request_id`, not `requestId`): the
// same names as the API reference. Thread-safe: each Print* call writes
// whole lines.
#ifndef EDGE_CLIENT_OUTPUT_H_
#define EDGE_CLIENT_OUTPUT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/message.h"

namespace edge::client {

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);

// `message` as a one-line JSON object. If protobuf cannot print it, an
// object with an "error" member saying why, so a line is never lost.
std::string MessageJson(const google::protobuf::Message& message);

// `{"code":"UNAVAILABLE","message":"..."}` (code "OK" for an OK status).
std::string StatusJson(const absl::Status& status);

// `object_json` (a JSON object) with `"key":value_json` as its first member.
std::string PrependMember(absl::string_view key, absl::string_view value_json,
                          absl::string_view object_json);

// `[1.5,-0.25,...]` with enough digits (9 significant) to read back the
// exact float; NaN and infinities as protobuf writes them ("NaN", ...).
std::string FloatArrayJson(absl::Span<const float> values);

// Writes `line` and a newline to stdout and flushes, so a reader on a pipe
// sees each result as soon as it exists (streams run for minutes).
void PrintLine(absl::string_view line);

// "edge-client: <message>" on stderr.
void PrintDiagnostic(absl::string_view message);

}  // namespace edge::client

#endif  // EDGE_CLIENT_OUTPUT_H_
