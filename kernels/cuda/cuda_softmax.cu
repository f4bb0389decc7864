// Row softmax of CudaBackend (Softmax and the dense attention's scores), with
// an optional additive bias per row. One 256-thread block per row.
#include <cmath>

#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <typename Op>
__device__ float BlockReduce(float v, float* shared, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = shared[0];
  for (int w = 1; w < kThreads / 32; ++w) r = op(r, shared[w]);
  return r;
}

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};

__global__ void SoftmaxKernel(const float* x, float* y, int64_t rows, int64_t n,
                              const float* bias, int64_t bias_h, int64_t bias_r) {
  __shared__ float shared[kThreads / 32];
  const int64_t row = blockIdx.y * rows + blockIdx.x;
  const float* xr = x + row * n;
  float* yr = y + row * n;
  const float* br = bias ? bias + blockIdx.y * bias_h + blockIdx.x * bias_r : nullptr;
  float m = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const float v = br ? xr[i] + br[i] : xr[i];
    yr[i] = v;
    m = fmaxf(m, v);
  }
  m = BlockReduce(m, shared, Max());
  if (m == -INFINITY) {  // every entry masked: no distribution, output zeros
    for (int64_t i = threadIdx.x; i < n; i += kThreads) yr[i] = 0.f;
    return;
  }
  float sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {
    const float e = expf(yr[i] - m);
    yr[i] = e;
    sum += e;
  }
  const float inv = 1.f / BlockReduce(sum, shared, Sum());
  for (int64_t i = threadIdx.x; i < n; i += kThreads) yr[i] *= inv;
}

}  // namespace

void LaunchSoftmax(const float* x, float* y, int64_t heads, int64_t rows, int64_t n,
                   const float* bias, int64_t bias_h, int64_t bias_r, cudaStream_t s) {
  if (heads <= 0 || rows <= 0 || n <= 0) return;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(heads));
  SoftmaxKernel<<<grid, kThreads, 0, s>>>(x, y, rows, n, bias, bias_h, bias_r);
}

}  // namespace sparsevid::kernels::cuda
