// Normalisations of CudaBackend. One 256-thread block per row; sums in f64
// as kernels/cpu/norm.cc does, so GPU and CPU agree to f32 rounding.
#include <cmath>

#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// Sum of v over the block; every thread gets the result.
__device__ double BlockSum(double v, double* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // shared may still be read from the previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < kThreads / 32; ++w) total += shared[w];
  return total;
}

__global__ void LayerNormKernel(const float* x, const float* gamma, const float* beta, float eps,
                                float* y, int64_t d) {
  __shared__ double shared[kThreads / 32];
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  double sum = 0;
  for (int64_t i = threadIdx.x; i < d; i += kThreads) sum += xr[i];
  const float mean = static_cast<float>(BlockSum(sum, shared) / d);
  double sq = 0;
  for (int64_t i = threadIdx.x; i < d; i += kThreads) {
    const float c = xr[i] - mean;
    sq += c * c;
  }
  const float inv = 1.f / sqrtf(static_cast<float>(BlockSum(sq, shared) / d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += kThreads) {
    float v = (xr[i] - mean) * inv;
    if (gamma) v *= gamma[i];
    if (beta) v += beta[i];
    yr[i] = v;
  }
}

__global__ void RmsNormKernel(const float* x, const float* gamma, float eps, float* y, int64_t d) {
  __shared__ double shared[kThreads / 32];
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  double sq = 0;
  for (int64_t i = threadIdx.x; i < d; i += kThreads) sq += static_cast<double>(xr[i]) * xr[i];
  const float inv = 1.f / sqrtf(static_cast<float>(BlockSum(sq, shared) / d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += kThreads) {
    yr[i] = gamma ? xr[i] * inv * gamma[i] : xr[i] * inv;
  }
}

// One thread per position p; channels are strided by n (coalesced over p).
__global__ void ChannelRmsNormKernel(const float* x, const float* gamma, float* y, int64_t c,
                                     int64_t n, float sqrt_c) {
  SV_GRID_LOOP(p, n) {
    double sq = 0;
    for (int64_t ci = 0; ci < c; ++ci) {
      const float v = x[ci * n + p];
      sq += static_cast<double>(v) * v;
    }
    const float scale = static_cast<float>(sqrt_c / fmax(sqrt(sq), 1e-12));
    for (int64_t ci = 0; ci < c; ++ci) y[ci * n + p] = x[ci * n + p] * scale * gamma[ci];
  }
}

// Rows go on grid.x, which holds up to 2^31-1 blocks.
unsigned Rows(int64_t rows) { return static_cast<unsigned>(rows); }

}  // namespace

void LaunchLayerNorm(const float* x, const float* gamma, const float* beta, float eps, float* y,
                     int64_t rows, int64_t d, cudaStream_t s) {
  if (rows > 0 && d > 0) LayerNormKernel<<<Rows(rows), kThreads, 0, s>>>(x, gamma, beta, eps, y, d);
}

void LaunchRmsNorm(const float* x, const float* gamma, float eps, float* y, int64_t rows,
                   int64_t d, cudaStream_t s) {
  if (rows > 0 && d > 0) RmsNormKernel<<<Rows(rows), kThreads, 0, s>>>(x, gamma, eps, y, d);
}

void LaunchChannelRmsNorm(const float* x, const float* gamma, float* y, int64_t c, int64_t n,
                          cudaStream_t s) {
  if (c > 0 && n > 0) {
    ChannelRmsNormKernel<<<GridFor(n), 256, 0, s>>>(x, gamma, y, c, n,
                                                    sqrtf(static_cast<float>(c)));
  }
}

}  // namespace sparsevid::kernels::cuda
