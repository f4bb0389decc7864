#include "kernels/cpu/attention_dense.h"

#include <algorithm>
#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"

namespace sparsevid::kernels::cpu {
namespace {

// Scores scratch per tile: at most 4 Mi floats (16 MiB).
constexpr int64_t kMaxTileScores = int64_t{1} << 22;

}  // namespace

void Attention(const CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
               float scale, const Tensor* bias, int64_t key_valid, Tensor& out) {
  SV_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 && out.ndim() == 3,
           "Attention: q %s k %s v %s out %s must be [L, H, d]", ShapeString(q.shape()).c_str(),
           ShapeString(k.shape()).c_str(), ShapeString(v.shape()).c_str(),
           ShapeString(out.shape()).c_str());
  SV_CHECK(q.dtype() == DType::kF32 && k.dtype() == DType::kF32 && v.dtype() == DType::kF32 &&
               out.dtype() == DType::kF32,
           "Attention: f32 only");
  const int64_t Lq = q.dim(0), H = q.dim(1), d = q.dim(2), Lk = k.dim(0);
  SV_CHECK(k.shape() == v.shape() && k.dim(1) == H && k.dim(2) == d && out.shape() == q.shape(),
           "Attention: q %s k %s v %s out %s", ShapeString(q.shape()).c_str(),
           ShapeString(k.shape()).c_str(), ShapeString(v.shape()).c_str(),
           ShapeString(out.shape()).c_str());
  SV_CHECK(key_valid >= -1 && key_valid <= Lk, "Attention: key_valid %lld for %lld keys",
           static_cast<long long>(key_valid), static_cast<long long>(Lk));
  if (bias) {
    SV_CHECK(bias->dtype() == DType::kF32 && (bias->shape() == Shape{H, Lq, Lk}),
             "Attention: bias %s, expected f32 [%lld, %lld, %lld]",
             ShapeString(bias->shape()).c_str(), static_cast<long long>(H),
             static_cast<long long>(Lq), static_cast<long long>(Lk));
  }
  SV_CHECK(out.raw() != q.raw() && out.raw() != k.raw() && out.raw() != v.raw(),
           "Attention: out must not alias q, k or v");
  const int64_t nk = key_valid < 0 ? Lk : key_valid;
  float* o = out.f32();
  if (nk == 0) {  // every key masked: no distribution, define the output as 0
    std::memset(o, 0, out.nbytes());
    return;
  }
  if (Lq == 0 || d == 0) {
    if (out.nbytes()) std::memset(o, 0, out.nbytes());
    return;
  }
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>({Lq, 1024, kMaxTileScores / nk}));
  Scratch scores(ctx, tile * nk);
  float* s = scores.data();
  const int64_t ld = H * d;
  for (int64_t h = 0; h < H; ++h) {
    const float* qh = q.f32() + h * d;
    const float* kh = k.f32() + h * d;
    const float* vh = v.f32() + h * d;
    for (int64_t r0 = 0; r0 < Lq; r0 += tile) {
      const int64_t rows = std::min(tile, Lq - r0);
      Sgemm(ctx, /*trans_b=*/true, rows, nk, d, scale, qh + r0 * ld, ld, kh, ld, 0.f, s, nk);
      const float* bh = bias ? bias->f32() + (h * Lq + r0) * Lk : nullptr;
      const int threads = ThreadsFor(ctx, rows * nk);
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        float* row = s + r * nk;
        if (bh) {
          const float* br = bh + r * Lk;
          for (int64_t j = 0; j < nk; ++j) row[j] += br[j];
        }
        SoftmaxRow(row, nk);
      }
      Sgemm(ctx, /*trans_b=*/false, rows, d, nk, 1.f, s, nk, vh, ld, 0.f, o + r0 * ld + h * d, ld);
    }
  }
}

}  // namespace sparsevid::kernels::cpu
