// Column matrix (im2col) for CudaBackend's Conv3d; the product itself is a
// cuBLAS GEMM (cuda_backend_gemm.cc). Same column order as kernels/cpu/conv3d.cc.
#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

// col[t][kk][r*Wo + ox]; one thread per entry, consecutive threads walk ox
// (coalesced writes, mostly coalesced reads).
__global__ void Im2ColKernel(const float* x, float* col, Im2ColShape sh, int64_t t0, int64_t tb,
                             int64_t r0, int64_t rows) {
  const int64_t K = sh.C * sh.kt * sh.kh * sh.kw;
  const int64_t cols = rows * sh.Wo;
  SV_GRID_LOOP(i, tb * K * cols) {
    const int64_t p = i % cols, kk = (i / cols) % K, t = t0 + i / (cols * K);
    const int64_t ox = p % sh.Wo, r = r0 + p / sh.Wo;
    const int64_t dx = kk % sh.kw, dy = (kk / sh.kw) % sh.kh, dt = (kk / (sh.kw * sh.kh)) % sh.kt,
                  c = kk / (sh.kw * sh.kh * sh.kt);
    const int64_t iy = r + dy - sh.pad_h, ix = ox + dx - sh.pad_w;
    float v = 0.f;
    if (iy >= 0 && iy < sh.H && ix >= 0 && ix < sh.W) {
      v = x[((c * sh.T + t + dt) * sh.H + iy) * sh.W + ix];
    }
    col[i] = v;
  }
}

}  // namespace

void LaunchIm2Col(const float* x, float* col, const Im2ColShape& sh, int64_t t0, int64_t tb,
                  int64_t r0, int64_t rows, cudaStream_t s) {
  const int64_t n = tb * sh.C * sh.kt * sh.kh * sh.kw * rows * sh.Wo;
  if (n > 0) Im2ColKernel<<<GridFor(n), 256, 0, s>>>(x, col, sh, t0, tb, r0, rows);
}

}  // namespace sparsevid::kernels::cuda
