// BoundCall: one oneDNN primitive with memory objects for its arguments
// created once; later executions only swap the data pointers and call the
// C API with a fixed argument array.
//
// Why: building dnnl::memory objects and an std::unordered_map of arguments
// for every execute() costs about 1.5 us per call on this project's machine
// (measured: 2.5 vs 0.7 us for a tiny matmul, one thread), and one image
// makes about 300 primitive calls (attention tiles included), so at batch 1
// that was ~5% of the bf16 forward pass. Swapping a pointer is a store:
// memory::set_data_handle() on a CPU engine with a plain layout.
//
// Not thread-safe: each BoundCall belongs to one ExecContext (or one of its
// thread slots).
#ifndef EDGE_ENGINE_INTERNAL_BOUND_CALL_H_
#define EDGE_ENGINE_INTERNAL_BOUND_CALL_H_

#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "oneapi/dnnl/dnnl.hpp"

namespace edge::internal {

class BoundCall {
 public:
  // `args` are (DNNL_ARG_*, memory descriptor) pairs; data pointers are
  // set with Set() before each Execute().
  BoundCall(dnnl::primitive primitive, const dnnl::engine& engine,
            const std::vector<std::pair<int, dnnl::memory::desc>>& args)
      : primitive_(std::move(primitive)) {
    for (const auto& [arg, md] : args) {
      memories_.emplace_back(md, engine, static_cast<void*>(DNNL_MEMORY_NONE));
      exec_args_.push_back({arg, memories_.back().get()});
    }
  }

  // Points argument `arg` (one given at construction) at `data`.
  void Set(int arg, const void* data) {
    for (size_t i = 0; i < exec_args_.size(); ++i) {
      if (exec_args_[i].arg == arg) {
        memories_[i].set_data_handle(const_cast<void*>(data));
        return;
      }
    }
  }

  // Throws dnnl::error on failure.
  void Execute(dnnl::stream& stream) const {
    dnnl::error::wrap_c_api(
        dnnl_primitive_execute(primitive_.get(), stream.get(),
                               static_cast<int>(exec_args_.size()),
                               exec_args_.data()),
        "could not execute a primitive");
  }

 private:
  dnnl::primitive primitive_;
  std::vector<dnnl::memory> memories_;
  std::vector<dnnl_exec_arg_t> exec_args_;
};

// The BoundCalls of one caller, one per primitive (primitives live as long
// as the Kernels that cache them, so their handles are stable keys).
class CallCache {
 public:
  // The BoundCall of `primitive`, made with the arguments `make_args()`
  // returns on first use.
  template <typename MakeArgs>
  BoundCall& Get(const dnnl::primitive& primitive, const dnnl::engine& engine,
                 MakeArgs make_args) {
    std::unique_ptr<BoundCall>& call = calls_[primitive.get()];
    if (call == nullptr) {
      call = std::make_unique<BoundCall>(primitive, engine, make_args());
    }
    return *call;
  }

 private:
  absl::flat_hash_map<dnnl_primitive_t, std::unique_ptr<BoundCall>> calls_;
};

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_BOUND_CALL_H_
