#include "engine/internal/compute_thread.h"

#include <omp.h>

#include <utility>

namespace edge::internal {

ComputeThread::ComputeThread() : thread_([this] { Loop(); }) {}

ComputeThread::~ComputeThread() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void ComputeThread::Run(absl::FunctionRef<void()> task) {
  if (std::this_thread::get_id() == thread_.get_id()) {
    task();
    return;
  }
  absl::MutexLock call(&call_mu_);
  std::exception_ptr error;
  {
    absl::MutexLock lock(&mu_);
    task_ = &task;
    done_ = false;
    mu_.Await(absl::Condition(&done_));
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

void ComputeThread::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](ComputeThread* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
          return t->task_ != nullptr || t->stop_;
        },
        this));
    if (task_ == nullptr) return;  // stopping, nothing queued
    absl::FunctionRef<void()>* task = task_;
    mu_.Unlock();
    std::exception_ptr error;
    try {
      (*task)();
    } catch (...) {
      error = std::current_exception();
    }
    mu_.Lock();
    error_ = error;
    task_ = nullptr;
    done_ = true;
  }
}

OmpSingleThread::OmpSingleThread()
    : previous_max_threads_(omp_get_max_threads()) {
  omp_set_num_threads(1);
}

OmpSingleThread::~OmpSingleThread() {
  omp_set_num_threads(previous_max_threads_);
}

}  // namespace edge::internal
