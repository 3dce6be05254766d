#include "client/output.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/gateway_channel.h"
#include "google/protobuf/util/json_util.h"

namespace edge::client {

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        // Other control characters are legal only as \u escapes; bytes
        // >= 0x80 pass through (UTF-8 file names and messages stay readable).
        if (static_cast<unsigned char>(c) < 0x20) {
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string MessageJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  const auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::StrCat("{\"error\":",
                        StatusJson(absl::InternalError(
                            absl::StrCat("cannot print ", message.GetTypeName(),
                                         " as JSON: ", status.ToString()))),
                        "}");
  }
  return json;
}

std::string StatusJson(const absl::Status& status) {
  return absl::StrCat(
      "{\"code\":", JsonQuote(StatusCodeName(status.raw_code())),
      ",\"message\":", JsonQuote(status.message()), "}");
}

std::string PrependMember(absl::string_view key, absl::string_view value_json,
                          absl::string_view object_json) {
  absl::string_view rest = object_json;
  rest.remove_prefix(1);  // The opening brace.
  const bool empty_object = absl::StripLeadingAsciiWhitespace(rest) == "}";
  return absl::StrCat("{", JsonQuote(key), ":", value_json,
                      empty_object ? "" : ",", rest);
}

std::string FloatArrayJson(absl::Span<const float> values) {
  std::vector<std::string> items;
  items.reserve(values.size());
  for (float v : values) {
    if (std::isnan(v)) {
      items.push_back("\"NaN\"");
    } else if (std::isinf(v)) {
      items.push_back(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
      items.push_back(absl::StrFormat("%.9g", v));
    }
  }
  return absl::StrCat("[", absl::StrJoin(items, ","), "]");
}

void PrintLine(absl::string_view line) {
  // One fwrite per line: stdio locks the stream per call, so lines printed
  // by the stream's reader thread never interleave with others.
  const std::string text = absl::StrCat(line, "\n");
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void PrintDiagnostic(absl::string_view message) {
  const std::string text = absl::StrCat("edge-client: ", message, "\n");
  std::fwrite(text.data(), 1, text.size(), stderr);
}

}  // namespace edge::client
