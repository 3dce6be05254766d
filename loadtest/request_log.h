// What happened to every request of a run, kept so that none can go missing
// from the report: each request sent is either answered (OK or with a gRPC
// code) or, at the end, unanswered. The report's numbers are all computed
// from these records afterwards, never counted on the fly.
//
// ClientLog holds the records of one client (camera or unary client); the
// request id a client sends is the record's index in its log, so an answer
// finds its record without a map. RequestBudget enforces --max_requests
// across clients.
//
// Thread-safe: a stream's sender and reader threads share one ClientLog.
#ifndef EDGE_LOADTEST_REQUEST_LOG_H_
#define EDGE_LOADTEST_REQUEST_LOG_H_

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "proto/gateway.pb.h"

namespace edge::loadtest {

// Times are nanoseconds since the run's start, on the steady clock.
struct RequestRecord {
  int32_t client = 0;
  int32_t scene = 0;
  // Latency starts here: the due time (stream) or the send time (unary).
  int64_t start_ns = 0;
  int64_t sent_ns = 0;          // When the write or call actually began.
  int64_t answered_ns = -1;     // -1: no answer (yet).
  int32_t code = -1;            // gRPC code of the answer; -1 unanswered.
  int32_t batch_size = 0;       // Timing.batch_size of an OK answer.
  int64_t server_total_us = 0;  // Timing.total_us of an OK answer.
  uint64_t route = 0;  // Hash of the experts chosen; 0 if none reported.

  bool answered() const { return answered_ns >= 0; }
  bool ok() const { return code == 0; }
};

// A hash of the response's expert choices (layers, experts in order), so
// that answers routed the same way compare equal. 0 without experts.
uint64_t RouteHash(const gateway::v1::ClassifyResponse& response);

class ClientLog {
 public:
  // Adds a request about to be sent; returns its index (its request id).
  int64_t Add(const RequestRecord& record);
  // The request could not be sent after all (its stream was already
  // broken): it is dropped from the log, as it never reached the server.
  void Withdraw(int64_t index);
  // Records the answer of request `index` at `answered_ns`. False if there
  // is no such request in flight (an unknown or repeated request id).
  bool Answer(int64_t index, int64_t answered_ns, int code,
              const gateway::v1::ClassifyResponse* response);
  // Indices of the requests sent and neither answered nor withdrawn, in
  // send order (what a broken stream left without an answer).
  std::vector<int64_t> InFlight();
  // The scene of request `index`. REQUIRES: a valid index.
  int32_t Scene(int64_t index);
  // Every sent request's record, in send order. Call once, at the end.
  std::vector<RequestRecord> TakeRecords();

 private:
  absl::Mutex mu_;
  std::vector<RequestRecord> records_ ABSL_GUARDED_BY(mu_);
  std::vector<bool> withdrawn_ ABSL_GUARDED_BY(mu_);  // Parallel to records_.
};

// At most `cap` successful TryTake() calls in all (cap 0 = unlimited).
class RequestBudget {
 public:
  explicit RequestBudget(int64_t cap) : cap_(cap) {}
  bool TryTake() {
    return cap_ == 0 || taken_.fetch_add(1, std::memory_order_relaxed) < cap_;
  }

 private:
  const int64_t cap_;
  std::atomic<int64_t> taken_{0};
};

}  // namespace edge::loadtest

#endif  // EDGE_LOADTEST_REQUEST_LOG_H_
