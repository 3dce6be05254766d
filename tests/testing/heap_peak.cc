// HeapPeak (heap_peak.h): glibc's allocator functions, wrapped. Each
// allocation and free adjusts a live-byte counter by the block's usable
// size while a HeapPeak exists; the peak follows it. glibc exports its
// implementations as __libc_malloc and friends, so the wrappers need no
// dlsym (which itself allocates).
#include "tests/testing/heap_peak.h"

#include <malloc.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EDGE_HEAP_PEAK 0
#else
#define EDGE_HEAP_PEAK 1
#endif

namespace edge {
namespace test_support {
namespace {

std::atomic<bool> counting{false};
std::atomic<int64_t> live_bytes{0};
std::atomic<int64_t> peak_bytes{0};

[[maybe_unused]] void CountBytes(int64_t delta) {
  if (!counting.load(std::memory_order_relaxed)) return;
  const int64_t now = live_bytes.fetch_add(delta) + delta;
  int64_t peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

[[maybe_unused]] int64_t UsableBytes(void* block) {
  return block == nullptr ? 0 : static_cast<int64_t>(malloc_usable_size(block));
}

}  // namespace

HeapPeak::HeapPeak() {
  live_bytes = 0;
  peak_bytes = 0;
  counting = true;
}

HeapPeak::~HeapPeak() { counting = false; }

int64_t HeapPeak::bytes() const { return peak_bytes.load(); }

bool HeapPeak::available() { return EDGE_HEAP_PEAK; }

}  // namespace test_support
}  // namespace edge

#if EDGE_HEAP_PEAK
using edge::test_support::CountBytes;
using edge::test_support::UsableBytes;

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* block, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void __libc_free(void* block);

void* malloc(size_t size) noexcept {
  void* block = __libc_malloc(size);
  CountBytes(UsableBytes(block));
  return block;
}

void* calloc(size_t count, size_t size) noexcept {
  void* block = __libc_calloc(count, size);
  CountBytes(UsableBytes(block));
  return block;
}

// A moved block briefly coexists with its old copy: count the new one
// before dropping the old.
void* realloc(void* block, size_t size) noexcept {
  const int64_t old_bytes = UsableBytes(block);
  void* moved = __libc_realloc(block, size);
  if (moved == block) {
    CountBytes(UsableBytes(moved) - old_bytes);
  } else if (moved != nullptr || size == 0) {  // realloc(p, 0) frees p.
    CountBytes(UsableBytes(moved));
    CountBytes(-old_bytes);
  }
  return moved;
}

void free(void* block) noexcept {
  CountBytes(-UsableBytes(block));
  __libc_free(block);
}

void* memalign(size_t alignment, size_t size) noexcept {
  void* block = __libc_memalign(alignment, size);
  CountBytes(UsableBytes(block));
  return block;
}

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  return memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) {
    return EINVAL;
  }
  void* block = memalign(alignment, size);
  if (block == nullptr) return ENOMEM;
  *out = block;
  return 0;
}
}  // extern "C"
#endif  // EDGE_HEAP_PEAK
