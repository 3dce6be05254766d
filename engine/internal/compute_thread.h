#ifndef EDGE_ENGINE_INTERNAL_COMPUTE_THREAD_H_
#define EDGE_ENGINE_INTERNAL_COMPUTE_THREAD_H_

#include <exception>
#include <thread>

#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"

namespace edge::internal {

// The one thread on which an engine opens all its OpenMP parallel regions
// (oneDNN primitives, row kernels, attention tiles).
//
// Why: libgomp keeps a thread team for every thread that opens a parallel
// region, and once its teams together hold more threads than there are CPUs
// it cuts every team's spin-wait at barriers from 300,000 iterations to
// 1,000 (gomp_throttled_spin_count_var). The workers then sleep on a futex
// between the engine's hundreds of short parallel regions per batch and must
// be woken each time. A gateway that warms the engine up on its main thread
// and serves from its batching thread, or an expert loader that reorders
// weights on a prefetch thread, is enough: vmoe-tiny-224 at batch 1 took
// 13.7 ms instead of 9.0 ms. Funnelling every region through one thread
// keeps one team. Work done elsewhere (expert loads on prefetch threads)
// runs under OmpSingleThread.
//
// Thread-safe: Run() may be called from any thread; calls are serialized
// (on a 2-core edge box two concurrent batches would only compete for the
// same cores).
class ComputeThread {
 public:
  ComputeThread();
  // Joins the thread. REQUIRES: no Run() in progress.
  ~ComputeThread();
  ComputeThread(const ComputeThread&) = delete;
  ComputeThread& operator=(const ComputeThread&) = delete;

  // Runs `task` on the compute thread and returns when it has finished; an
  // exception it throws is rethrown here. Called on the compute thread
  // itself (from inside a task), runs `task` directly.
  void Run(absl::FunctionRef<void()> task);

  std::thread::id id() const { return thread_.get_id(); }

 private:
  void Loop();

  absl::Mutex call_mu_;  // held for a whole Run(): one task at a time
  absl::Mutex mu_;
  // The task waiting for or being run by the compute thread; null when idle.
  absl::FunctionRef<void()>* task_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::exception_ptr error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: starts after the fields above exist
};

// Limits OpenMP to one thread on the calling thread for its lifetime, so that
// work off the compute thread (loading an expert on a prefetch thread) opens
// no second thread team (see ComputeThread). Restores the previous limit.
class OmpSingleThread {
 public:
  OmpSingleThread();
  ~OmpSingleThread();
  OmpSingleThread(const OmpSingleThread&) = delete;
  OmpSingleThread& operator=(const OmpSingleThread&) = delete;

 private:
  int previous_max_threads_;
};

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_COMPUTE_THREAD_H_
