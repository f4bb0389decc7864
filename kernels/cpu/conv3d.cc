#include "kernels/cpu/conv3d.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/gemm.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {
namespace {

// Upper bound on the im2col buffer (floats): 16 Mi floats = 64 MiB.
constexpr int64_t kMaxColumnFloats = int64_t{1} << 24;

}  // namespace

void Conv3d(const CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, int pad_h,
            int pad_w, Tensor& y) {
  const op_shapes::Conv3dGeometry g = op_shapes::CheckConv3d("", x, w, bias, pad_h, pad_w, y);
  const int64_t C = g.C, T = g.T, H = g.H, W = g.W;
  const int64_t O = g.O, kt = g.kt, kh = g.kh, kw = g.kw;
  const int64_t To = g.To, Ho = g.Ho, Wo = g.Wo;
  const int64_t K = C * kt * kh * kw;
  std::unique_ptr<Scratch> w_f32;
  const float* wf = w.f32();
  if (w.dtype() != DType::kF32) {
    w_f32 = std::make_unique<Scratch>(ctx, w.numel());
    ConvertToF32(ctx, w, w_f32->data());
    wf = w_f32->data();
  }
  std::vector<float> b(O, 0.f);
  if (bias) ConvertToF32(ctx, *bias, b.data());

  const float* in = x.f32();
  float* out = y.f32();
  const int64_t plane_out = Ho * Wo;
  const bool pointwise = kt == 1 && kh == 1 && kw == 1 && pad_h == 0 && pad_w == 0;
  const int64_t rows_per_chunk =
      pointwise ? Ho : std::max<int64_t>(1, std::min(Ho, kMaxColumnFloats / std::max<int64_t>(1, K * Wo)));
  std::unique_ptr<Scratch> col;
  if (!pointwise) col = std::make_unique<Scratch>(ctx, K * rows_per_chunk * Wo);

  for (int64_t t = 0; t < To; ++t) {
    for (int64_t r0 = 0; r0 < Ho; r0 += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, Ho - r0);
      const int64_t n = rows * Wo;
      const float* B;
      int64_t ldb;
      if (pointwise) {
        B = in + t * H * W;  // [C, H*W] rows, channel stride T*H*W
        ldb = T * H * W;
      } else {
        float* cp = col->data();
        const int threads = ThreadsFor(ctx, K * n);
        // Row kk of the column matrix is (c, dt, dy, dx); entries are output pixels.
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t kk = 0; kk < K; ++kk) {
          const int64_t dx = kk % kw, dy = (kk / kw) % kh, dt = (kk / (kw * kh)) % kt,
                        c = kk / (kw * kh * kt);
          const float* frame = in + (c * T + t + dt) * H * W;
          float* dst = cp + kk * n;
          for (int64_t r = 0; r < rows; ++r) {
            const int64_t iy = r0 + r + dy - pad_h;
            float* drow = dst + r * Wo;
            if (iy < 0 || iy >= H) {
              std::memset(drow, 0, Wo * sizeof(float));
              continue;
            }
            const float* srow = frame + iy * W;
            for (int64_t ox = 0; ox < Wo; ++ox) {
              const int64_t ix = ox + dx - pad_w;
              drow[ox] = (ix >= 0 && ix < W) ? srow[ix] : 0.f;
            }
          }
        }
        B = cp;
        ldb = n;
      }
      // y[o, t, r0:r0+rows, :] = W[o, :] . col; rows of y are strided by To*Ho*Wo.
      float* C_out = out + t * plane_out + r0 * Wo;
      Sgemm(ctx, /*trans_b=*/false, O, n, K, 1.f, wf, K, B, ldb, 0.f, C_out, To * plane_out);
    }
  }
  if (bias) {
    const int threads = ThreadsFor(ctx, y.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t o = 0; o < O; ++o) {
      float* p = out + o * To * plane_out;
      for (int64_t i = 0; i < To * plane_out; ++i) p[i] += b[o];
    }
  }
}

}  // namespace sparsevid::kernels::cpu
