#include "kernels/cpu/norm.h"

#include <cmath>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/convert.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {
namespace {

// Optional per-channel parameter as f32 (nullptr when absent).
struct ParamF32 {
  ParamF32(const CpuContext& ctx, const Tensor* t, int64_t n, const char* what) {
    op_shapes::CheckNormParam("", t, n, what);
    if (!t) return;
    values.resize(n);
    ConvertToF32(ctx, *t, values.data());
    ptr = values.data();
  }
  std::vector<float> values;
  const float* ptr = nullptr;
};

void CheckSameF32(const Tensor& x, const Tensor& y, const char* op) {
  SV_CHECK(x.dtype() == DType::kF32 && y.dtype() == DType::kF32, "%s: f32 only", op);
  SV_CHECK(x.shape() == y.shape(), "%s: x %s vs y %s", op, ShapeString(x.shape()).c_str(),
           ShapeString(y.shape()).c_str());
}

// Calls f(x_row, y_row) for every row of the last dim d, rows in parallel.
template <typename F>
void ForEachRow(const CpuContext& ctx, const Tensor& x, Tensor& y, int64_t d, F f) {
  const int64_t rows = d ? x.numel() / d : 0;
  const float* in = x.f32();
  float* out = y.f32();
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) f(in + r * d, out + r * d);
}

}  // namespace

void LayerNorm(const CpuContext& ctx, const Tensor& x, const Tensor* gamma, const Tensor* beta,
               float eps, Tensor& y) {
  CheckSameF32(x, y, "LayerNorm");
  const int64_t d = x.dim(-1);
  ParamF32 g(ctx, gamma, d, "LayerNorm gamma"), b(ctx, beta, d, "LayerNorm beta");
  ForEachRow(ctx, x, y, d, [&](const float* xr, float* yr) {
    // Two passes (mean, then centred variance) avoid E[x^2]-E[x]^2 cancellation.
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) sum += xr[i];
    const float mean = static_cast<float>(sum / d);
    double sq = 0;
    for (int64_t i = 0; i < d; ++i) {
      const float c = xr[i] - mean;
      sq += c * c;
    }
    const float inv = 1.f / std::sqrt(static_cast<float>(sq / d) + eps);
    for (int64_t i = 0; i < d; ++i) {
      float v = (xr[i] - mean) * inv;
      if (g.ptr) v *= g.ptr[i];
      if (b.ptr) v += b.ptr[i];
      yr[i] = v;
    }
  });
}

void RmsNorm(const CpuContext& ctx, const Tensor& x, const Tensor* gamma, float eps, Tensor& y) {
  CheckSameF32(x, y, "RmsNorm");
  const int64_t d = x.dim(-1);
  ParamF32 g(ctx, gamma, d, "RmsNorm gamma");
  ForEachRow(ctx, x, y, d, [&](const float* xr, float* yr) {
    double sq = 0;
    for (int64_t i = 0; i < d; ++i) sq += static_cast<double>(xr[i]) * xr[i];
    const float inv = 1.f / std::sqrt(static_cast<float>(sq / d) + eps);
    for (int64_t i = 0; i < d; ++i) yr[i] = g.ptr ? xr[i] * inv * g.ptr[i] : xr[i] * inv;
  });
}

void ChannelRmsNorm(const CpuContext& ctx, const Tensor& x, const Tensor& gamma, Tensor& y) {
  CheckSameF32(x, y, "ChannelRmsNorm");
  const int64_t c = op_shapes::CheckChannelRmsNorm("", x, gamma);
  const int64_t n = c ? x.numel() / c : 0;
  ParamF32 g(ctx, &gamma, c, "ChannelRmsNorm gamma");
  const float* in = x.f32();
  float* out = y.f32();
  const float sqrt_c = std::sqrt(static_cast<float>(c));
  constexpr int64_t kChunk = 256;  // columns per task; channels are strided by n
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> sq(kChunk);
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t p0 = ch * kChunk, p1 = std::min(n, p0 + kChunk);
      std::fill(sq.begin(), sq.end(), 0.0);
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* xr = in + ci * n;
        for (int64_t p = p0; p < p1; ++p) sq[p - p0] += static_cast<double>(xr[p]) * xr[p];
      }
      for (int64_t p = p0; p < p1; ++p) {
        sq[p - p0] = sqrt_c / std::max(std::sqrt(sq[p - p0]), 1e-12);
      }
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* xr = in + ci * n;
        float* yr = out + ci * n;
        const float gc = g.ptr[ci];
        for (int64_t p = p0; p < p1; ++p) yr[p] = xr[p] * static_cast<float>(sq[p - p0]) * gc;
      }
    }
  }
}

}  // namespace sparsevid::kernels::cpu
