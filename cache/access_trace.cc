#include "cache/access_trace.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edge {
namespace {

constexpr char kHeaderComment[] = "# edge expert access trace v1";
constexpr char kColumns[] = "time_us,pass,layer,expert,bytes";

std::string FormatAccess(const ExpertAccess& a) {
  return absl::StrCat(a.time_us, ",", a.pass, ",", a.key.layer, ",",
                      a.key.expert, ",", a.bytes, "\n");
}

absl::StatusOr<ExpertAccess> ParseAccess(absl::string_view line) {
  const std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
  ExpertAccess a;
  if (fields.size() != 5 || !absl::SimpleAtoi(fields[0], &a.time_us) ||
      !absl::SimpleAtoi(fields[1], &a.pass) ||
      !absl::SimpleAtoi(fields[2], &a.key.layer) ||
      !absl::SimpleAtoi(fields[3], &a.key.expert) ||
      !absl::SimpleAtoi(fields[4], &a.bytes) || a.key.layer < 0 ||
      a.key.expert < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", kColumns, " (non-negative integers)"));
  }
  return a;
}

}  // namespace

absl::StatusOr<std::vector<ExpertAccess>> ReadAccessTrace(
    const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open expert trace ", path,
                                            ": ", std::strerror(errno)));
  }
  std::vector<ExpertAccess> accesses;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || absl::StartsWith(text, "#") || text == kColumns) {
      continue;
    }
    absl::StatusOr<ExpertAccess> access = ParseAccess(text);
    if (!access.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " line ", number, ": ", access.status().message()));
    }
    accesses.push_back(*access);
  }
  return accesses;
}

absl::Status WriteAccessTrace(const std::string& path,
                              const std::vector<ExpertAccess>& accesses) {
  absl::StatusOr<std::unique_ptr<AccessTraceWriter>> writer =
      AccessTraceWriter::Create(path);
  if (!writer.ok()) return writer.status();
  for (const ExpertAccess& a : accesses) (*writer)->Append(a);
  return (*writer)->Flush();
}

absl::StatusOr<std::unique_ptr<AccessTraceWriter>> AccessTraceWriter::Create(
    const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create expert trace ", path, ": ", std::strerror(errno)));
  }
  std::fprintf(file, "%s\n%s\n", kHeaderComment, kColumns);
  return std::unique_ptr<AccessTraceWriter>(new AccessTraceWriter(path, file));
}

AccessTraceWriter::AccessTraceWriter(std::string path, std::FILE* file)
    : path_(std::move(path)), file_(file) {}

AccessTraceWriter::~AccessTraceWriter() {
  (void)Flush();
  MutexLock lock(&mu_);
  std::fclose(file_);
}

void AccessTraceWriter::Append(const ExpertAccess& access) {
  const std::string line = FormatAccess(access);
  MutexLock lock(&mu_);
  if (!status_.ok()) return;
  if (std::fputs(line.c_str(), file_) < 0) {
    status_ = absl::DataLossError(absl::StrCat("writing expert trace ", path_,
                                               ": ", std::strerror(errno)));
    return;
  }
  ++appended_;
}

absl::Status AccessTraceWriter::Flush() {
  MutexLock lock(&mu_);
  if (status_.ok() && std::fflush(file_) != 0) {
    status_ = absl::DataLossError(absl::StrCat("flushing expert trace ", path_,
                                               ": ", std::strerror(errno)));
  }
  return status_;
}

int64_t AccessTraceWriter::appended() const {
  MutexLock lock(&mu_);
  return appended_;
}

}  // namespace edge
