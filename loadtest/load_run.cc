#include "loadtest/load_run.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "loadtest/gateway_connection.h"
#include "tools/cpp/scene_picker.h"

namespace edge::loadtest {
namespace {

// A scrape reads a few kilobytes from a local process; a second means the
// endpoint is not answering, and the run should not wait on it.
constexpr int64_t kScrapeTimeoutMs = 1000;

int Clients(const LoadTestOptions& options) {
  return options.mode == LoadMode::kStream ? options.cameras
                                           : options.concurrency;
}

// Scrapes into *counters, or notes why not (the first failure only).
void Scrape(const std::string& url, std::optional<ServerCounters>* counters,
            std::string* note) {
  if (url.empty()) return;
  absl::StatusOr<ServerCounters> scraped =
      ScrapeServerCounters(url, kScrapeTimeoutMs);
  if (scraped.ok()) {
    *counters = *scraped;
  } else if (note->empty()) {
    *note = scraped.status().ToString();
  }
}

}  // namespace

absl::StatusOr<GatewayLink> ConnectToGateway(const LoadTestOptions& options) {
  GatewayLink link;
  for (int c = 0; c < Clients(options); ++c) {
    link.channels.push_back(MakeClientChannel(options.target));
  }
  absl::StatusOr<gateway::v1::ModelInfo> model =
      FetchModelInfo(link.channels[0], options.target, options.timeout_ms);
  if (!model.ok()) return model.status();
  link.model = *std::move(model);
  if (absl::Status s =
          WaitForChannels(link.channels, options.target, options.timeout_ms);
      !s.ok()) {
    return s;
  }
  return link;
}

RunOutcome RunLoad(const LoadTestOptions& options, const GatewayLink& link,
                   const std::vector<Frame>& frames) {
  ScenePickerOptions picker_options;
  picker_options.scenes = static_cast<int>(frames.size());
  picker_options.zipf_alpha = options.zipf_alpha;
  picker_options.drift_period_s = options.drift_period_s;
  picker_options.horizon_s = options.duration_s;
  picker_options.clients = Clients(options);
  picker_options.seed = options.seed;
  const ScenePicker picker(picker_options);
  RequestBudget budget(options.max_requests);

  LoadContext context;
  context.options = &options;
  context.frames = &frames;
  context.picker = &picker;
  context.channels = link.channels;
  context.budget = &budget;

  RunOutcome outcome;
  const std::string url = EffectiveMetricsUrl(options);
  if (url.empty()) outcome.metrics_note = "no --metrics_url / --metrics_port";
  if (options.warmup_s <= 0) {
    Scrape(url, &outcome.counters_before, &outcome.metrics_note);
  }
  context.start = Clock::now();
  std::thread driver([&context, &outcome, &options] {
    outcome.driver = options.mode == LoadMode::kStream
                         ? RunStreamDriver(context)
                         : RunUnaryDriver(context);
  });
  if (options.warmup_s > 0) {
    std::this_thread::sleep_until(
        context.start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(options.warmup_s)));
    Scrape(url, &outcome.counters_before, &outcome.metrics_note);
  }
  driver.join();
  outcome.end_ns = SinceStartNs(context, Clock::now());
  Scrape(url, &outcome.counters_after, &outcome.metrics_note);
  if (!outcome.counters_before || !outcome.counters_after) {
    outcome.counters_before.reset();
    outcome.counters_after.reset();
  }
  return outcome;
}

}  // namespace edge::loadtest
