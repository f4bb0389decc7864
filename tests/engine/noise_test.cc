// Seeded noise: deterministic, seed-sensitive, standard normal, and the
// documented algorithm (checked against an independent evaluation here; the
// bit-exact numpy comparison is in tests/parity).
#include "worker/engine/noise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace sparsevid::engine {
namespace {

TEST(Noise, SameSeedSameValues) {
  EXPECT_EQ(GaussianNoise(5, 1001), GaussianNoise(5, 1001));
  EXPECT_NE(GaussianNoise(5, 16), GaussianNoise(6, 16));
}

TEST(Noise, PrefixStable) {
  // Filling is sequential: a longer draw starts with the shorter one.
  const auto a = GaussianNoise(9, 7), b = GaussianNoise(9, 100);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a[i], b[i]);  // odd count drops the last z1
}

TEST(Noise, FirstPairFollowsTheDocumentedAlgorithm) {
  std::mt19937_64 gen(123);
  const uint64_t x1 = gen(), x2 = gen();
  const double u1 = static_cast<double>((x1 >> 11) + 1) / 9007199254740992.0;
  const double u2 = static_cast<double>((x2 >> 11) + 1) / 9007199254740992.0;
  const double r = std::sqrt(-2.0 * std::log(u1));
  const auto v = GaussianNoise(123, 2);
  EXPECT_EQ(v[0], static_cast<float>(r * std::cos(2.0 * M_PI * u2)));
  EXPECT_EQ(v[1], static_cast<float>(r * std::sin(2.0 * M_PI * u2)));
}

TEST(Noise, StandardNormalMoments) {
  const auto v = GaussianNoise(2024, 200000);
  double mean = 0, var = 0;
  for (float x : v) mean += x;
  mean /= v.size();
  for (float x : v) var += (x - mean) * (x - mean);
  var /= v.size();
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(var, 1.0, 0.02);
  for (float x : v) ASSERT_TRUE(std::isfinite(x));
}

TEST(Noise, TensorShape) {
  const auto t = GaussianNoiseTensor(1, {4, 3, 2, 2});
  EXPECT_EQ(t.shape(), (kernels::Shape{4, 3, 2, 2}));
  EXPECT_EQ(t.ToVector(), GaussianNoise(1, 48));
}

}  // namespace
}  // namespace sparsevid::engine
