#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/check.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {
namespace {

template <typename F>
void Map(const CpuContext& ctx, const Tensor& x, Tensor& y, const char* op, F f) {
  op_shapes::CheckSameSize("", x, y, op);
  const int64_t n = x.numel();
  const float* in = x.f32();
  float* out = y.f32();
  const int threads = ThreadsFor(ctx, n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = f(in[i]);
}

// y = f(a, b) elementwise over same-sized tensors.
template <typename F>
void Zip(const CpuContext& ctx, const Tensor& a, const Tensor& b, Tensor& y, const char* op, F f) {
  op_shapes::CheckSameSize("", a, b, op);
  op_shapes::CheckSameSize("", a, y, op);
  const int64_t n = a.numel();
  const float *pa = a.f32(), *pb = b.f32();
  float* out = y.f32();
  const int threads = ThreadsFor(ctx, n);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) out[i] = f(pa[i], pb[i]);
}

// Checks a per-channel vector against the last dim of x.
const float* RowParam(const Tensor& p, int64_t d, const char* what) {
  op_shapes::CheckRowParam("", p, d, what);
  return p.f32();
}

}  // namespace

void GeluTanh(const CpuContext& ctx, const Tensor& x, Tensor& y) {
  const float k = std::sqrt(2.f / static_cast<float>(M_PI));
  Map(ctx, x, y, "GeluTanh", [k](float v) {
    return 0.5f * v * (1.f + std::tanh(k * (v + 0.044715f * v * v * v)));
  });
}

void Silu(const CpuContext& ctx, const Tensor& x, Tensor& y) {
  Map(ctx, x, y, "Silu", [](float v) { return v / (1.f + std::exp(-v)); });
}

void Scale(const CpuContext& ctx, const Tensor& x, float s, Tensor& y) {
  Map(ctx, x, y, "Scale", [s](float v) { return v * s; });
}

void Clamp(const CpuContext& ctx, const Tensor& x, float lo, float hi, Tensor& y) {
  SV_CHECK(lo <= hi, "Clamp: lo %g > hi %g", lo, hi);
  Map(ctx, x, y, "Clamp", [lo, hi](float v) { return std::min(std::max(v, lo), hi); });
}

void Add(const CpuContext& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  Zip(ctx, a, b, y, "Add", [](float u, float v) { return u + v; });
}

void Mul(const CpuContext& ctx, const Tensor& a, const Tensor& b, Tensor& y) {
  Zip(ctx, a, b, y, "Mul", [](float u, float v) { return u * v; });
}

void Modulate(const CpuContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale,
              Tensor& y) {
  op_shapes::CheckSameSize("", x, y, "Modulate");
  const int64_t d = x.dim(-1);
  const float* sh = RowParam(shift, d, "Modulate shift");
  const float* sc = RowParam(scale, d, "Modulate scale");
  const int64_t rows = d ? x.numel() / d : 0;
  const float* in = x.f32();
  float* out = y.f32();
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) out[r * d + i] = in[r * d + i] * (1.f + sc[i]) + sh[i];
  }
}

void AddGated(const CpuContext& ctx, Tensor& x, const Tensor& y, const Tensor* gate) {
  op_shapes::CheckSameSize("", x, y, "AddGated");
  const int64_t d = x.dim(-1);
  const float* g = gate ? RowParam(*gate, d, "AddGated gate") : nullptr;
  const int64_t rows = d ? x.numel() / d : 0;
  float* px = x.f32();
  const float* py = y.f32();
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < d; ++i) px[r * d + i] += g ? py[r * d + i] * g[i] : py[r * d + i];
  }
}

void SoftmaxRow(float* row, int64_t n) {
  if (n == 0) return;
  // Eight independent lanes so the max and sum reductions vectorise
  // without -ffast-math.
  constexpr int kLanes = 8;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] = std::max(lane[j], row[i + j]);
  }
  float m = *std::max_element(lane, lane + kLanes);
  for (; i < n; ++i) m = std::max(m, row[i]);
  if (m == -std::numeric_limits<float>::infinity()) {
    // Every entry masked: no distribution exists; output zeros, not NaN.
    for (int64_t k = 0; k < n; ++k) row[k] = 0.f;
    return;
  }
  for (int64_t k = 0; k < n; ++k) row[k] = FastExp(row[k] - m);
  std::fill(lane, lane + kLanes, 0.f);
  i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += row[i + j];
  }
  float sum = 0.f;
  for (int j = 0; j < kLanes; ++j) sum += lane[j];
  for (; i < n; ++i) sum += row[i];
  const float inv = 1.f / sum;
  for (int64_t k = 0; k < n; ++k) row[k] *= inv;
}

void Softmax(const CpuContext& ctx, const Tensor& x, Tensor& y) {
  op_shapes::CheckSameSize("", x, y, "Softmax");
  const int64_t d = x.dim(-1);
  const int64_t rows = d ? x.numel() / d : 0;
  const float* in = x.f32();
  float* out = y.f32();
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    if (out != in) std::copy(in + r * d, in + (r + 1) * d, out + r * d);
    SoftmaxRow(out + r * d, d);
  }
}

}  // namespace sparsevid::kernels::cpu
