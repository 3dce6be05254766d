// The few random-number helpers edge-loadtest and the expert trace
// generator need, written out so that a run is reproducible across standard
// libraries: std::mt19937_64's output is fixed by the standard, but
// std::uniform_*_distribution and std::shuffle are not. Stateless and
// thread-safe (each caller owns its engine).
#ifndef EDGE_TOOLS_CPP_RANDOM_H_
#define EDGE_TOOLS_CPP_RANDOM_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

namespace edge {

// Scrambles a seed so that neighbouring seeds (seed + camera id) start
// unrelated streams. Steele, Lea and Flood's SplitMix64 finaliser.
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1), from the top 53 bits (a double's mantissa).
inline double UnitInterval(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

// Uniform in [low, high).
inline double Uniform(std::mt19937_64& rng, double low, double high) {
  return low + (high - low) * UnitInterval(rng);
}

// Uniform integer in [0, n), n > 0. The modulo bias is below n / 2^64.
inline uint64_t Below(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

// Fisher-Yates with our own index draw (std::shuffle's is unspecified).
template <typename T>
void Shuffle(std::vector<T>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) {
    std::swap(items[i - 1], items[Below(rng, i)]);
  }
}

}  // namespace edge

#endif  // EDGE_TOOLS_CPP_RANDOM_H_
