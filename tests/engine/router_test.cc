#include "engine/router.h"

#include <vector>

#include "gtest/gtest.h"

namespace edge {
namespace {

TEST(RouteImageTest, PicksLargestInDescendingOrder) {
  const std::vector<float> p{0.1f, 0.4f, 0.2f, 0.3f};
  auto c = RouteImage(p.data(), 4, 2, /*renormalize=*/false);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].expert, 1);
  EXPECT_FLOAT_EQ(c[0].weight, 0.4f);
  EXPECT_EQ(c[1].expert, 3);
  EXPECT_FLOAT_EQ(c[1].weight, 0.3f);
}

TEST(RouteImageTest, RenormalizeMakesWeightsSumToOne) {
  const std::vector<float> p{0.1f, 0.4f, 0.2f, 0.3f};
  auto c = RouteImage(p.data(), 4, 2, /*renormalize=*/true);
  EXPECT_NEAR(c[0].weight, 0.4f / 0.7f, 1e-6);
  EXPECT_NEAR(c[1].weight, 0.3f / 0.7f, 1e-6);
}

TEST(RouteImageTest, TiesGoToLowerExpertIndex) {
  const std::vector<float> p{0.2f, 0.3f, 0.2f, 0.3f};
  auto c = RouteImage(p.data(), 4, 3, false);
  EXPECT_EQ(c[0].expert, 1);
  EXPECT_EQ(c[1].expert, 3);
  EXPECT_EQ(c[2].expert, 0);
}

// Three tokens, two experts, k = 1, capacity 1: every token wants expert 0.
// With batch priority the most confident token (t=1) keeps the slot; without
// it the first token (t=0) does.
TEST(RouteTokensTest, BatchPriorityKeepsMostConfidentToken) {
  const std::vector<float> p{0.6f, 0.4f,   // t0
                             0.9f, 0.1f,   // t1
                             0.7f, 0.3f};  // t2
  auto bpr = RouteTokens(p.data(), 3, 2, 1, /*capacity=*/1, true);
  EXPECT_EQ(bpr.kept, (std::vector<uint8_t>{0, 1, 0}));
  auto plain = RouteTokens(p.data(), 3, 2, 1, 1, false);
  EXPECT_EQ(plain.kept, (std::vector<uint8_t>{1, 0, 0}));
}

// Choice 0 of every token is served before any choice 1: token 0's second
// choice (expert 1) loses to token 1's first choice (expert 1).
TEST(RouteTokensTest, SlotsHandedOutChoiceByChoice) {
  const std::vector<float> p{0.7f, 0.2f, 0.1f,   // t0: 0, then 1
                             0.1f, 0.8f, 0.1f};  // t1: 1, then 0 or 2
  auto r = RouteTokens(p.data(), 2, 3, 2, /*capacity=*/1, false);
  ASSERT_EQ(r.choices.size(), 4u);
  EXPECT_EQ(r.choices[0].expert, 0);
  EXPECT_EQ(r.choices[1].expert, 1);
  EXPECT_EQ(r.choices[2].expert, 1);
  // t1's second choice: tie between experts 0 and 2 goes to 0.
  EXPECT_EQ(r.choices[3].expert, 0);
  // t0/0 kept, t1/1 kept (first round); t0 -> 1 full, t1 -> 0 full.
  EXPECT_EQ(r.kept, (std::vector<uint8_t>{1, 0, 1, 0}));
}

TEST(RouteTokensTest, PriorityTiesGoToLowerTokenIndex) {
  const std::vector<float> p{0.5f, 0.5f,   // t0: expert 0 (tie -> lower index)
                             0.5f, 0.5f};  // t1: same weight as t0
  auto r = RouteTokens(p.data(), 2, 2, 1, 1, true);
  EXPECT_EQ(r.kept, (std::vector<uint8_t>{1, 0}));
}

TEST(RouteTokensTest, ZeroCapacityDropsEverything) {
  const std::vector<float> p{0.6f, 0.4f, 0.3f, 0.7f};
  auto r = RouteTokens(p.data(), 2, 2, 2, 0, true);
  EXPECT_EQ(r.kept, (std::vector<uint8_t>{0, 0, 0, 0}));
}

TEST(RouteTokensTest, WeightsAreGateProbabilitiesWithoutRenormalisation) {
  const std::vector<float> p{0.5f, 0.3f, 0.2f};
  auto r = RouteTokens(p.data(), 1, 3, 2, 4, true);
  EXPECT_FLOAT_EQ(r.choices[0].weight, 0.5f);
  EXPECT_FLOAT_EQ(r.choices[1].weight, 0.3f);
}

}  // namespace
}  // namespace edge
