#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {
namespace {

// Pairs per axis: t gets d/2 - 2*(d/6), h and w get d/6 each.
struct RopeSplit {
  explicit RopeSplit(int64_t d) : h(d / 6), w(d / 6), t(d / 2 - 2 * (d / 6)) {}
  int64_t h, w, t;
};

// 10000^(-2k/dim), dim = twice the pairs of the axis.
double AxisFrequency(int64_t k, int64_t axis_pairs) {
  return std::pow(10000.0, -2.0 * static_cast<double>(k) / static_cast<double>(2 * axis_pairs));
}

}  // namespace

double Rope3dAngle(int64_t head_dim, int64_t pair, int64_t f, int64_t h, int64_t w) {
  const RopeSplit s(head_dim);
  if (pair < s.t) return f * AxisFrequency(pair, s.t);
  if (pair < s.t + s.h) return h * AxisFrequency(pair - s.t, s.h);
  return w * AxisFrequency(pair - s.t - s.h, s.w);
}

void Rope3d(const CpuContext& ctx, Tensor& x, const TokenGrid& grid) {
  const op_shapes::RopeDims dims = op_shapes::CheckRope3d("", x, grid);
  const int64_t L = dims.tokens, heads = dims.heads, d = dims.head_dim;
  const int64_t pairs = d / 2;
  float* data = x.f32();
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel num_threads(threads)
  {
    std::vector<double> cs(pairs), sn(pairs);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < L; ++n) {
      const int64_t w = n % grid.width;
      const int64_t h = (n / grid.width) % grid.height;
      const int64_t f = n / (grid.width * grid.height);
      for (int64_t j = 0; j < pairs; ++j) {
        const double theta = Rope3dAngle(d, j, f, h, w);
        cs[j] = std::cos(theta);
        sn[j] = std::sin(theta);
      }
      for (int64_t hd = 0; hd < heads; ++hd) {
        float* v = data + (n * heads + hd) * d;
        for (int64_t j = 0; j < pairs; ++j) {
          // Rotation in float64, rounded once, as the official code.
          const double a = v[2 * j], b = v[2 * j + 1];
          v[2 * j] = static_cast<float>(a * cs[j] - b * sn[j]);
          v[2 * j + 1] = static_cast<float>(a * sn[j] + b * cs[j]);
        }
      }
    }
  }
}

}  // namespace sparsevid::kernels::cpu
