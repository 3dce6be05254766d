// TopK's order: largest first, equal scores by ascending index, whatever
// their positions in the input. The router (router_test) and the answer's
// top classes both rely on it.
#include "engine/top_k.h"

#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace edge {
namespace {

std::vector<int> Top(const std::vector<float>& values, int k) {
  std::vector<int> order;
  TopK(values.data(), static_cast<int>(values.size()), k, &order);
  return order;
}

TEST(TopKTest, LargestFirst) {
  EXPECT_EQ(Top({0.1f, 0.7f, 0.2f}, 3), (std::vector<int>{1, 2, 0}));
  EXPECT_EQ(Top({0.1f, 0.7f, 0.2f}, 1), (std::vector<int>{1}));
  EXPECT_EQ(Top({-3.0f, -1.0f, -2.0f}, 2), (std::vector<int>{1, 2}));
}

TEST(TopKTest, EqualScoresGoByAscendingIndex) {
  EXPECT_EQ(Top({0.5f, 0.5f, 0.5f, 0.5f}, 4), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(Top({0.5f, 0.5f, 0.5f, 0.5f}, 2), (std::vector<int>{0, 1}));
  // A tie cut by k keeps the lower index, wherever the larger scores are.
  EXPECT_EQ(Top({0.1f, 0.3f, 0.9f, 0.3f, 0.3f}, 3),
            (std::vector<int>{2, 1, 3}));
  // -0.0 equals 0.0.
  EXPECT_EQ(Top({-0.0f, 0.0f}, 1), (std::vector<int>{0}));
  EXPECT_EQ(Top({0.0f, -0.0f}, 1), (std::vector<int>{0}));
}

TEST(TopKTest, ZeroAndAll) {
  EXPECT_TRUE(Top({0.1f, 0.2f}, 0).empty());
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(Top({-inf, inf, 1.0f}, 3), (std::vector<int>{1, 2, 0}));
}

}  // namespace
}  // namespace edge
