#include "worker/engine/noise.h"

#include <cmath>
#include <random>

namespace sparsevid::engine {

std::vector<float> GaussianNoise(uint64_t seed, int64_t count) {
  std::mt19937_64 gen(seed);
  constexpr double kTwoPi = 2.0 * M_PI;
  constexpr double kInv53 = 1.0 / 9007199254740992.0;  // 2^-53
  std::vector<float> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; i += 2) {
    const uint64_t a = gen();
    const uint64_t b = gen();
    const double u1 = static_cast<double>((a >> 11) + 1) * kInv53;
    const double u2 = static_cast<double>((b >> 11) + 1) * kInv53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[i] = static_cast<float>(r * std::cos(kTwoPi * u2));
    if (i + 1 < count) out[i + 1] = static_cast<float>(r * std::sin(kTwoPi * u2));
  }
  return out;
}

kernels::Tensor GaussianNoiseTensor(uint64_t seed, const kernels::Shape& shape) {
  return kernels::Tensor::FromVector(GaussianNoise(seed, kernels::NumElements(shape)), shape);
}

}  // namespace sparsevid::engine
