// exp(x) for f32 that GCC vectorises (branch-free: Cody-Waite range
// reduction to r in [-ln2/2, ln2/2], degree-6 polynomial, exponent bits).
// Relative error <= 2 ulp over the normal range; exp(x) = 0 below -87.3
// (where the true value is subnormal), x > 88.7 saturates at ~2^128.
// Softmax rows spend most of their time here: std::exp is a scalar call.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace sparsevid::kernels::cpu {

inline float FastExp(float x) {
  const float below = x < -87.3f ? 0.f : 1.f;
  x = std::fmin(std::fmax(x, -87.3f), 88.7f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;  // ln2 split in two for exact reduction
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale * below;
}

}  // namespace sparsevid::kernels::cpu
