// Server configuration: proto/server_config.proto's ServerConfig, filled from
// (lowest to highest precedence) the schema's defaults, a JSON config file,
// environment variables EDGE_GATEWAY_<FIELD> and command-line flags. Every
// source uses the same field names; a name no source knows is an error that
// names it, as is a value that does not parse or is out of range. The
// components' options are made from it in server/config_options.h.
//
// Thread-safe: pure functions.
#ifndef EDGE_SERVER_CONFIG_H_
#define EDGE_SERVER_CONFIG_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/server_config.pb.h"

namespace edge {

using gateway::v1::ServerConfig;

// A config with every field at its schema default.
ServerConfig DefaultServerConfig();

// Overlays the JSON file at `path` (protobuf JSON mapping, snake_case or
// lowerCamelCase names). Fields the file does not mention keep their value.
absl::Status ApplyConfigFile(const std::string& path, ServerConfig* config);

// Overlays EDGE_GATEWAY_<FIELD> variables; `getenv` is injectable for tests.
absl::Status ApplyEnvironment(
    const std::function<const char*(const char*)>& getenv,
    ServerConfig* config);

// Sets one field from text, as a flag or variable would. `source` names
// where the value came from, for the error message.
absl::Status SetConfigField(absl::string_view name, absl::string_view value,
                            absl::string_view source, ServerConfig* config);

// Checks cross-field and range rules; messages name the field.
absl::Status ValidateServerConfig(const ServerConfig& config);

// Help text: one line per field with its default and meaning.
std::string ServerConfigHelp();

}  // namespace edge

#endif  // EDGE_SERVER_CONFIG_H_
