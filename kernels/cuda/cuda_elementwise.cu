// Elementwise ops of CudaBackend: grid-stride loops, f32, same formulas as
// kernels/cpu/elementwise.cc (y may alias x).
#include <cmath>

#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

__global__ void UnaryKernel(UnaryOp op, const float* x, float* y, int64_t n, float a, float b) {
  const float k = sqrtf(2.f / 3.14159265358979323846f);
  SV_GRID_LOOP(i, n) {
    const float v = x[i];
    float r;
    switch (op) {
      case UnaryOp::kGeluTanh: r = 0.5f * v * (1.f + tanhf(k * (v + 0.044715f * v * v * v))); break;
      case UnaryOp::kSilu: r = v / (1.f + expf(-v)); break;
      case UnaryOp::kScale: r = v * a; break;
      default: r = fminf(fmaxf(v, a), b); break;
    }
    y[i] = r;
  }
}

__global__ void BinaryKernel(BinaryOp op, const float* a, const float* b, float* y, int64_t n) {
  SV_GRID_LOOP(i, n) y[i] = op == BinaryOp::kAdd ? a[i] + b[i] : a[i] * b[i];
}

__global__ void ModulateKernel(const float* x, const float* shift, const float* scale, float* y,
                               int64_t n, int64_t d) {
  SV_GRID_LOOP(i, n) {
    const int64_t c = i % d;
    y[i] = x[i] * (1.f + scale[c]) + shift[c];
  }
}

__global__ void AddGatedKernel(float* x, const float* y, const float* gate, int64_t n, int64_t d) {
  SV_GRID_LOOP(i, n) x[i] += gate ? y[i] * gate[i % d] : y[i];
}

__global__ void BroadcastKernel(const float* v, float* y, int64_t n, int64_t period,
                                int64_t inner) {
  SV_GRID_LOOP(i, n) y[i] = v[(i / inner) % period];
}

}  // namespace

cudaError_t ProbeKernelImage() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, UnaryKernel);
}

void LaunchUnary(UnaryOp op, const float* x, float* y, int64_t n, float a, float b,
                 cudaStream_t s) {
  if (n > 0) UnaryKernel<<<GridFor(n), 256, 0, s>>>(op, x, y, n, a, b);
}

void LaunchBinary(BinaryOp op, const float* a, const float* b, float* y, int64_t n,
                  cudaStream_t s) {
  if (n > 0) BinaryKernel<<<GridFor(n), 256, 0, s>>>(op, a, b, y, n);
}

void LaunchModulate(const float* x, const float* shift, const float* scale, float* y,
                    int64_t rows, int64_t d, cudaStream_t s) {
  const int64_t n = rows * d;
  if (n > 0) ModulateKernel<<<GridFor(n), 256, 0, s>>>(x, shift, scale, y, n, d);
}

void LaunchAddGated(float* x, const float* y, const float* gate, int64_t rows, int64_t d,
                    cudaStream_t s) {
  const int64_t n = rows * d;
  if (n > 0) AddGatedKernel<<<GridFor(n), 256, 0, s>>>(x, y, gate, n, d);
}

void LaunchBroadcastRows(const float* v, float* y, int64_t rows, int64_t d, cudaStream_t s) {
  const int64_t n = rows * d;
  if (n > 0) BroadcastKernel<<<GridFor(n), 256, 0, s>>>(v, y, n, d, 1);
}

void LaunchBroadcastChannels(const float* v, float* y, int64_t channels, int64_t inner,
                             cudaStream_t s) {
  const int64_t n = channels * inner;
  if (n > 0) BroadcastKernel<<<GridFor(n), 256, 0, s>>>(v, y, n, channels, inner);
}

}  // namespace sparsevid::kernels::cuda
