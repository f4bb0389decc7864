// Wan 3-D RoPE of CudaBackend: the angle and the rotation in f64 exactly as
// kernels/cpu/rope.cc (pairs split t: d/2 - 2*(d/6), h: d/6, w: d/6).
#include <cmath>

#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

__device__ double AxisFrequency(int64_t k, int64_t axis_pairs) {
  return pow(10000.0, -2.0 * static_cast<double>(k) / static_cast<double>(2 * axis_pairs));
}

// One thread per (token, pair); the angle is shared by all heads.
__global__ void Rope3dKernel(float* x, int64_t L, int64_t heads, int64_t d, int64_t height,
                             int64_t width) {
  const int64_t pairs = d / 2;
  const int64_t ph = d / 6, pw = d / 6, pt = pairs - ph - pw;
  SV_GRID_LOOP(i, L * pairs) {
    const int64_t n = i / pairs, j = i % pairs;
    const int64_t w = n % width, h = (n / width) % height, f = n / (width * height);
    double theta;
    if (j < pt) {
      theta = f * AxisFrequency(j, pt);
    } else if (j < pt + ph) {
      theta = h * AxisFrequency(j - pt, ph);
    } else {
      theta = w * AxisFrequency(j - pt - ph, pw);
    }
    double sn, cs;
    sincos(theta, &sn, &cs);
    for (int64_t hd = 0; hd < heads; ++hd) {
      float* v = x + (n * heads + hd) * d + 2 * j;
      const double a = v[0], b = v[1];
      v[0] = static_cast<float>(a * cs - b * sn);
      v[1] = static_cast<float>(a * sn + b * cs);
    }
  }
}

}  // namespace

void LaunchRope3d(float* x, int64_t L, int64_t heads, int64_t d, int64_t height, int64_t width,
                  cudaStream_t s) {
  const int64_t n = L * (d / 2);
  if (n > 0 && heads > 0) Rope3dKernel<<<GridFor(n), 256, 0, s>>>(x, L, heads, d, height, width);
}

}  // namespace sparsevid::kernels::cuda
