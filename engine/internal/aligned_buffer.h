// AlignedBuffer: a growable, 64-byte aligned byte buffer for activations and
// scratch memory that is reused across Run() calls, so the hot path
// allocates only when a larger batch than ever before arrives.
//
// Not thread-safe: each buffer belongs to one Workspace or thread slot.
#ifndef EDGE_ENGINE_INTERNAL_ALIGNED_BUFFER_H_
#define EDGE_ENGINE_INTERNAL_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace edge::internal {

class AlignedBuffer {
 public:
  // 64 bytes: one cache line and one AVX-512 vector, what oneDNN's own
  // allocator uses.
  static constexpr size_t kAlignment = 64;

  // Makes the buffer at least `bytes` long. Contents are not kept.
  void Reserve(size_t bytes) {
    if (bytes <= size_) return;
    const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    data_.reset(std::aligned_alloc(kAlignment, rounded));
    if (!data_) throw std::bad_alloc();
    size_ = rounded;
  }
  void* data() const { return data_.get(); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_.get());
  }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> data_;
  size_t size_ = 0;
};

}  // namespace edge::internal

#endif  // EDGE_ENGINE_INTERNAL_ALIGNED_BUFFER_H_
