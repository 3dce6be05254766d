// HeapPeak: how far the heap grows during a stretch of code, counting every
// allocation in the process (the test's own, the standard library's, and
// C libraries' such as libjpeg-turbo's and libspng's). heap_peak.cc
// interposes malloc, calloc, realloc, free and the aligned variants on
// glibc; linking it into a test binary is what enables the measurement.
//
// Not available under AddressSanitizer or ThreadSanitizer, which interpose
// the allocator themselves: available() is false and peaks read 0.
//
// Thread-safety: counts all threads, so measure while no other thread
// allocates. One HeapPeak at a time.
//
// Example:
//   HeapPeak peak;
//   Decode(bytes);
//   EXPECT_LT(peak.bytes(), 1 << 20);
#ifndef EDGE_TESTS_TESTING_HEAP_PEAK_H_
#define EDGE_TESTS_TESTING_HEAP_PEAK_H_

#include <cstdint>

namespace edge {
namespace test_support {

class HeapPeak {
 public:
  // Starts counting from the current heap size.
  HeapPeak();
  ~HeapPeak();  // Stops counting.

  HeapPeak(const HeapPeak&) = delete;
  HeapPeak& operator=(const HeapPeak&) = delete;

  // The largest growth over the starting size so far, in usable bytes
  // (malloc_usable_size: requests rounded up to the allocator's chunks).
  int64_t bytes() const;

  static bool available();
};

}  // namespace test_support
}  // namespace edge

#endif  // EDGE_TESTS_TESTING_HEAP_PEAK_H_
