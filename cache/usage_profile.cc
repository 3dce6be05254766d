#include "cache/usage_profile.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace edge {
namespace {

constexpr char kHeaderComment[] = "# edge expert usage profile v1";
constexpr char kModelPrefix[] = "model,";
constexpr char kColumns[] = "layer,expert,count";

absl::Status ParseRow(absl::string_view line, UsageProfile* profile) {
  const std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
  ExpertKey key;
  double count = 0;
  if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &key.layer) ||
      !absl::SimpleAtoi(fields[1], &key.expert) ||
      !absl::SimpleAtod(fields[2], &count) || key.layer < 0 || key.expert < 0 ||
      !std::isfinite(count) || count < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", kColumns, " (non-negative numbers), got '", line, "'"));
  }
  if (!profile->counts.emplace(key, count).second) {
    return absl::InvalidArgumentError(
        absl::StrCat(key.ToString(), " is listed twice"));
  }
  return absl::OkStatus();
}

// One line of the file (comments and blank lines already skipped). The
// header comment is checked by the caller; then "model,NAME", the column
// names, and rows.
absl::Status ParseLine(absl::string_view text, bool* seen_columns,
                       UsageProfile* profile) {
  if (*seen_columns) return ParseRow(text, profile);
  if (absl::ConsumePrefix(&text, kModelPrefix)) {
    profile->model = std::string(text);
    return absl::OkStatus();
  }
  if (text == kColumns) {
    *seen_columns = true;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected '", kModelPrefix, "NAME' or '", kColumns, "'"));
}

std::string Format(const UsageProfile& profile) {
  std::string out = absl::StrCat(kHeaderComment, "\n", kModelPrefix,
                                 profile.model, "\n", kColumns, "\n");
  for (const auto& [key, count] : profile.counts) {
    // 10 significant digits: exact for any count below 10^10 acquires.
    absl::StrAppendFormat(&out, "%d,%d,%.10g\n", key.layer, key.expert, count);
  }
  return out;
}

// Writes `text` to `path` and makes it durable (fsync) before the caller
// renames it into place.
absl::Status WriteDurably(const std::string& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "w");
  if (file == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create usage profile ", path, ": ", std::strerror(errno)));
  }
  bool ok = std::fwrite(text.data(), 1, text.size(), file) == text.size() &&
            std::fflush(file) == 0 && ::fsync(fileno(file)) == 0;
  const int error = errno;
  ok = std::fclose(file) == 0 && ok;
  if (!ok) {
    std::remove(path.c_str());
    return absl::DataLossError(absl::StrCat("cannot write usage profile ", path,
                                            ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<UsageProfile> ReadUsageProfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open usage profile ", path,
                                            ": ", std::strerror(errno)));
  }
  UsageProfile profile;
  bool seen_header = false, seen_columns = false;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    absl::Status status;
    if (!seen_header) {
      seen_header = text == kHeaderComment;
      if (!seen_header) {
        status = absl::InvalidArgumentError(
            absl::StrCat("not an expert usage profile (the first line must "
                         "be '",
                         kHeaderComment, "')"));
      }
    } else if (!text.empty() && !absl::StartsWith(text, "#")) {
      status = ParseLine(text, &seen_columns, &profile);
    }
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " line ", number, ": ", status.message()));
    }
  }
  if (!seen_columns) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": truncated usage profile (no '", kColumns, "' line)"));
  }
  return profile;
}

absl::Status WriteUsageProfile(const std::string& path,
                               const UsageProfile& profile) {
  const std::string temporary = path + ".tmp";
  if (absl::Status s = WriteDurably(temporary, Format(profile)); !s.ok()) {
    return s;
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    std::remove(temporary.c_str());
    return absl::FailedPreconditionError(
        absl::StrCat("cannot rename ", temporary, " to usage profile ", path,
                     ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

std::vector<ExpertKey> MostUsedFirst(const UsageProfile& profile) {
  std::vector<std::pair<ExpertKey, double>> used;
  for (const auto& [key, count] : profile.counts) {
    if (count > 0) used.emplace_back(key, count);
  }
  // Stable over the map's key order: equal counts keep ascending keys.
  std::stable_sort(used.begin(), used.end(), [](const auto& a, const auto& b) {
    return a.second > b.second;
  });
  std::vector<ExpertKey> keys;
  keys.reserve(used.size());
  for (const auto& [key, count] : used) keys.push_back(key);
  return keys;
}

UsageProfile MergeUsage(
    const UsageProfile& previous, double decay,
    const std::vector<std::pair<ExpertKey, uint64_t>>& current) {
  UsageProfile merged;
  merged.model = previous.model;
  for (const auto& [key, count] : previous.counts) {
    merged.counts[key] = decay * count;
  }
  for (const auto& [key, count] : current) {
    merged.counts[key] += static_cast<double>(count);
  }
  return merged;
}

absl::StatusOr<std::unique_ptr<UsageProfileRecorder>>
UsageProfileRecorder::Create(UsageProfileRecorderOptions options,
                             UsageSource usage) {
  if (options.path.empty() || !usage) {
    return absl::InvalidArgumentError(
        "usage profile recorder: needs a path and a usage source");
  }
  if (options.interval < absl::ZeroDuration() ||
      !(options.decay >= 0 && options.decay <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("usage profile recorder: interval must be >= 0 (got ",
                     absl::FormatDuration(options.interval),
                     ") and decay in [0, 1] (got ", options.decay, ")"));
  }
  std::unique_ptr<UsageProfileRecorder> recorder(
      new UsageProfileRecorder(std::move(options), std::move(usage)));
  if (recorder->options_.interval > absl::ZeroDuration()) {
    recorder->thread_ = std::thread([r = recorder.get()] { r->Loop(); });
  }
  return recorder;
}

UsageProfileRecorder::UsageProfileRecorder(UsageProfileRecorderOptions options,
                                           UsageSource usage)
    : options_(std::move(options)), usage_(std::move(usage)) {}

UsageProfileRecorder::~UsageProfileRecorder() { Stop().IgnoreError(); }

absl::Status UsageProfileRecorder::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopped_) return absl::OkStatus();
    stopped_ = true;
    stop_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
  return WriteNow();
}

absl::Status UsageProfileRecorder::WriteNow() {
  MutexLock lock(&mu_);
  return WriteLocked();
}

int64_t UsageProfileRecorder::writes() const {
  MutexLock lock(&mu_);
  return writes_;
}

absl::Status UsageProfileRecorder::WriteLocked() {
  UsageProfile profile =
      MergeUsage(options_.previous, options_.decay, usage_());
  profile.model = options_.model;
  absl::Status status = WriteUsageProfile(options_.path, profile);
  if (status.ok()) ++writes_;
  return status;
}

void UsageProfileRecorder::Loop() {
  MutexLock lock(&mu_);
  for (;;) {
    // Wakes early to stop (or spuriously: then it writes a little early).
    if (!stopped_) stop_.WaitWithTimeout(&mu_, options_.interval);
    if (stopped_) return;
    absl::Status status = WriteLocked();
    if (!status.ok() && options_.on_error) options_.on_error(status);
  }
}

}  // namespace edge
