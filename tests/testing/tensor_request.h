// Classify requests carrying a random float32 tensor (the `tensor` image
// form: already normalised, so the decoder adds nothing). Header-only, for
// tests that talk to the gateway.
#ifndef EDGE_TESTS_TESTING_TENSOR_REQUEST_H_
#define EDGE_TESTS_TESTING_TENSOR_REQUEST_H_

#include <random>
#include <vector>

#include "proto/gateway.pb.h"

namespace edge {
namespace test_support {

// [3, s, s] values from N(0, 1), reproducible from `seed`.
inline std::vector<float> RandomTensor(int s, int seed) {
  std::vector<float> v(3ull * s * s);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  for (float& x : v) x = normal(rng);
  return v;
}

// A request for tensor `t` of side `s`, asking for logits.
inline gateway::v1::ClassifyRequest TensorRequest(const std::vector<float>& t,
                                                  int s) {
  gateway::v1::ClassifyRequest r;
  r.mutable_tensor()->add_shape(3);
  r.mutable_tensor()->add_shape(s);
  r.mutable_tensor()->add_shape(s);
  r.mutable_tensor()->set_data(reinterpret_cast<const char*>(t.data()),
                               t.size() * sizeof(float));
  r.set_return_logits(true);
  return r;
}

}  // namespace test_support
}  // namespace edge

#endif  // EDGE_TESTS_TESTING_TENSOR_REQUEST_H_
