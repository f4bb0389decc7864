// Helpers shared by the kernel tests: seeded random tensors and comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/tensor.h"

namespace sparsevid::kernels::testing {

inline std::vector<float> RandomVector(int64_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

inline Tensor RandomTensor(const Shape& shape, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  return Tensor::FromVector(RandomVector(NumElements(shape), seed, lo, hi), shape);
}

// |a - b| <= atol + rtol * |b| elementwise, reporting the first failures.
inline void ExpectClose(const std::vector<float>& actual, const std::vector<double>& expected,
                        double atol, double rtol, const char* what = "") {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int reported = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double err = std::fabs(actual[i] - expected[i]);
    if (!(err <= atol + rtol * std::fabs(expected[i]))) {
      ADD_FAILURE() << what << " element " << i << ": got " << actual[i] << ", expected "
                    << expected[i];
      if (++reported >= 5) return;
    }
  }
}

inline void ExpectClose(const std::vector<float>& actual, const std::vector<float>& expected,
                        double atol, double rtol, const char* what = "") {
  ExpectClose(actual, std::vector<double>(expected.begin(), expected.end()), atol, rtol, what);
}

// ||a - b|| / ||b|| over the whole vectors.
inline double RelativeL2(const std::vector<float>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace sparsevid::kernels::testing
