#include "loadtest/request_log.h"

#include <utility>

namespace edge::loadtest {

uint64_t RouteHash(const gateway::v1::ClassifyResponse& response) {
  // FNV-1a over (layer, experts...): stable across runs and builds, unlike
  // std::hash, so routes can be compared between JSON reports.
  uint64_t hash = 0xcbf29ce484222325ull;
  auto mix = [&hash](int64_t value) {
    hash ^= static_cast<uint64_t>(value);
    hash *= 0x100000001b3ull;
  };
  for (const gateway::v1::LayerExperts& layer : response.experts()) {
    mix(layer.layer() + 1000000);  // Separates layers from expert ids.
    for (int32_t expert : layer.experts()) mix(expert);
  }
  return response.experts().empty() ? 0 : hash;
}

int64_t ClientLog::Add(const RequestRecord& record) {
  absl::MutexLock lock(&mu_);
  records_.push_back(record);
  withdrawn_.push_back(false);
  return static_cast<int64_t>(records_.size()) - 1;
}

void ClientLog::Withdraw(int64_t index) {
  absl::MutexLock lock(&mu_);
  if (index < 0 || index >= static_cast<int64_t>(records_.size()) ||
      withdrawn_[index] || records_[index].answered()) {
    return;
  }
  withdrawn_[index] = true;
}

std::vector<int64_t> ClientLog::InFlight() {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> out;
  for (size_t i = 0; i < records_.size(); ++i) {
    if (!withdrawn_[i] && !records_[i].answered()) {
      out.push_back(static_cast<int64_t>(i));
    }
  }
  return out;
}

int32_t ClientLog::Scene(int64_t index) {
  absl::MutexLock lock(&mu_);
  return records_.at(static_cast<size_t>(index)).scene;
}

bool ClientLog::Answer(int64_t index, int64_t answered_ns, int code,
                       const gateway::v1::ClassifyResponse* response) {
  absl::MutexLock lock(&mu_);
  if (index < 0 || index >= static_cast<int64_t>(records_.size()) ||
      withdrawn_[index] || records_[index].answered()) {
    return false;
  }
  RequestRecord& record = records_[index];
  record.answered_ns = answered_ns;
  record.code = code;
  if (code == 0 && response != nullptr) {
    record.batch_size = response->timing().batch_size();
    record.server_total_us = response->timing().total_us();
    record.route = RouteHash(*response);
  }
  return true;
}

std::vector<RequestRecord> ClientLog::TakeRecords() {
  absl::MutexLock lock(&mu_);
  std::vector<RequestRecord> sent;
  sent.reserve(records_.size());
  for (size_t i = 0; i < records_.size(); ++i) {
    if (!withdrawn_[i]) sent.push_back(std::move(records_[i]));
  }
  records_.clear();
  withdrawn_.clear();
  return sent;
}

}  // namespace edge::loadtest
