// Writing a whole text file (reports, plot data, scripts) in one call.
// Stateless and thread-safe for distinct paths.
#ifndef EDGE_TOOLS_CPP_TEXT_FILE_H_
#define EDGE_TOOLS_CPP_TEXT_FILE_H_

#include <string>

#include "absl/status/status.h"

namespace edge {

// Writes `contents` to `path`, replacing it. INTERNAL naming the path.
absl::Status WriteTextFile(const std::string& path,
                           const std::string& contents);

}  // namespace edge

#endif  // EDGE_TOOLS_CPP_TEXT_FILE_H_
