// Seeded Gaussian noise for the initial latent, reproducible bit-for-bit in
// Python (training/ has a numpy port used for the golden files).
//
// Exact algorithm (do not change without changing the Python port):
//   gen = std::mt19937_64(seed)                (the standard 64-bit Mersenne
//                                               Twister, default seeding by a
//                                               single uint64)
//   for pair p = 0, 1, 2, ...:
//     a = gen(); b = gen()                     (two consecutive uint64 draws)
//     u1 = ((a >> 11) + 1) * 2^-53             (uniform in (0, 1], never 0)
//     u2 = ((b >> 11) + 1) * 2^-53
//     r  = sqrt(-2 * ln(u1))                   (all in IEEE double)
//     z0 = r * cos(2*pi*u2);  z1 = r * sin(2*pi*u2)
//     out[2p] = float(z0);  out[2p+1] = float(z1)   (round to nearest)
//   With an odd count the last z1 is dropped. Values fill the tensor in
//   row-major order; the latent is [z_dim, T', H', W'].
// pi is the double closest to π (M_PI). cos/sin/log/sqrt are the C library's
// double functions; numpy uses the same libm on Linux x86-64, and any
// difference would be in the last ulp of the double, far below float rounding.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/tensor.h"

namespace sparsevid::engine {

std::vector<float> GaussianNoise(uint64_t seed, int64_t count);

// Host f32 tensor of the given shape filled with GaussianNoise(seed, numel).
kernels::Tensor GaussianNoiseTensor(uint64_t seed, const kernels::Shape& shape);

}  // namespace sparsevid::engine
