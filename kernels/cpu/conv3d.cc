#include "kernels/cpu/conv3d.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/convert.h"
#include "kernels/cpu/gemm.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {
namespace {

// Output pixels per task, as a budget for the task's im2col block (K rows x
// n pixels): 256 Ki floats = 1 MiB, so the block a thread writes is still in
// its core's L2 when its GEMM reads it. One 64 MiB im2col buffer shared by
// all threads (the previous scheme) went through DRAM twice and left the
// VAE's convolutions memory-bound.
constexpr int64_t kTileFloats = int64_t{1} << 18;

// Rows kk = (c, dt, dy, dx) of the im2col block for output pixels
// [p0, p0 + n) of output frame t: col[kk * n + j] = x[c, t + dt, iy, ix]
// of pixel p0 + j, 0 where (iy, ix) falls in the padding.
void Im2colTile(const float* in, int64_t T, int64_t H, int64_t W, int64_t K, int64_t kt,
                int64_t kh, int64_t kw, int pad_h, int pad_w, int64_t Wo, int64_t t, int64_t p0,
                int64_t n, float* col) {
  for (int64_t kk = 0; kk < K; ++kk) {
    const int64_t dx = kk % kw, dy = (kk / kw) % kh, dt = (kk / (kw * kh)) % kt,
                  c = kk / (kw * kh * kt);
    const float* frame = in + (c * T + t + dt) * H * W;
    float* dst = col + kk * n;
    // Output columns ox whose input column ox + dx - pad_w lies in [0, W).
    const int64_t lo = std::max<int64_t>(0, pad_w - dx), hi = std::min<int64_t>(Wo, W + pad_w - dx);
    for (int64_t p = p0; p < p0 + n;) {
      const int64_t r = p / Wo, ox0 = p % Wo;
      const int64_t ox1 = std::min(Wo, ox0 + (p0 + n - p));  // this output row's part of the tile
      float* seg = dst + (p - p0);  // seg[i] is pixel (r, ox0 + i)
      const int64_t iy = r + dy - pad_h;
      if (iy < 0 || iy >= H) {
        std::fill(seg, seg + (ox1 - ox0), 0.f);
      } else {
        // Zeros, input columns a + dx - pad_w .. b - 1 + dx - pad_w, zeros.
        const int64_t a = std::clamp(lo, ox0, ox1), b = std::max(a, std::clamp(hi, ox0, ox1));
        std::fill(seg, seg + (a - ox0), 0.f);
        if (b > a)
          std::memcpy(seg + (a - ox0), frame + iy * W + (a + dx - pad_w), (b - a) * sizeof(float));
        std::fill(seg + (b - ox0), seg + (ox1 - ox0), 0.f);
      }
      p += ox1 - ox0;
    }
  }
}

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
  // A 1x1x1 kernel without padding reads x as it is: [C, H*W] per frame.
  const bool pointwise = kt == 1 && kh == 1 && kw == 1 && pad_h == 0 && pad_w == 0;
  // Tasks = (output frame, run of n_tile output pixels), each one im2col
  // block and one single-threaded GEMM y[:, t, pixels] = W . col, handed out
  // dynamically over the OpenMP threads.
  const int64_t n_tile =
      std::min(plane_out, std::max<int64_t>(64, kTileFloats / std::max<int64_t>(1, K) / 16 * 16));
  const int64_t tiles_per_frame = (plane_out + n_tile - 1) / n_tile;
  const int64_t tasks = To * tiles_per_frame;
  const int threads = static_cast<int>(
      std::min<int64_t>(ThreadsFor(ctx, O * K * To * plane_out), tasks));
  std::unique_ptr<Scratch> col;
  if (!pointwise) col = std::make_unique<Scratch>(ctx, threads * K * n_tile);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t t = task / tiles_per_frame, p0 = (task % tiles_per_frame) * n_tile;
    const int64_t n = std::min(n_tile, plane_out - p0);
    const float* B;
    int64_t ldb;
    if (pointwise) {
      B = in + t * H * W + p0;  // rows are channels, T*H*W apart
      ldb = T * H * W;
    } else {
      float* cp = col->data() + (threads > 1 ? omp_get_thread_num() : 0) * K * n_tile;
      Im2colTile(in, T, H, W, K, kt, kh, kw, pad_h, pad_w, Wo, t, p0, n, cp);
      B = cp;
      ldb = n;
    }
    // Rows of y are output channels, To*Ho*Wo apart.
    const CpuContext serial{1, nullptr};
    Sgemm(serial, /*trans_b=*/false, O, n, K, 1.f, wf, K, B, ldb, 0.f, out + t * plane_out + p0,
          To * plane_out);
  }
  if (bias) {
    const int bias_threads = ThreadsFor(ctx, y.numel());
#pragma omp parallel for num_threads(bias_threads) schedule(static)
    for (int64_t o = 0; o < O; ++o) {
      float* p = out + o * To * plane_out;
      for (int64_t i = 0; i < To * plane_out; ++i) p[i] += b[o];
    }
  }
}

}  // namespace sparsevid::kernels::cpu
