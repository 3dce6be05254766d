// edge-loadtest's command line: flags -> LoadTestOptions, and the --help
// text. A small parser of our own rather than absl::flags, because absl
// exits with status 1 on a malformed flag and edge-loadtest promises 2 for
// every unusable command line (1 means "the run lost requests").
//
// Accepted forms: --name=value, --name value, and for the one boolean flag
// --tensor (or --tensor=true|false). Positional arguments are refused.
// Stateless and thread-safe.
#ifndef EDGE_LOADTEST_COMMAND_LINE_H_
#define EDGE_LOADTEST_COMMAND_LINE_H_

#include <string>

#include "absl/status/statusor.h"
#include "loadtest/load_options.h"

namespace edge::loadtest {

struct CommandLine {
  LoadTestOptions options;
  bool help = false;  // --help / -h was given; nothing else was checked.
};

// INVALID_ARGUMENT naming the flag for an unknown flag, a missing or
// malformed value, or a positional argument. Does not range-check values:
// that is ValidateLoadTestOptions()'s job.
absl::StatusOr<CommandLine> ParseCommandLine(int argc, char** argv);

// The --help text: what the tool does, every flag with its default, and
// the exit codes.
std::string UsageText();

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_COMMAND_LINE_H_
