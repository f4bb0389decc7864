#include "kernels/cpu/gemm.h"

#include <algorithm>

#include "kernels/cpu/convert.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {

void Sgemm(const CpuContext& ctx, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  if (M == 0 || N == 0) return;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  const int threads =
      static_cast<int>(std::min<int64_t>(ctx.threads, std::max<int64_t>(1, M * N * K / (1 << 18))));
  if (threads <= 1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split one side of C into slabs (multiples of 16 keep the BLAS
  // micro-kernels on full tiles), a few per thread and handed out
  // dynamically, so a thread that loses its core to another process holds
  // up at most one slab. Every sgemm call packs its share of the split
  // operand and all of the other one, so split the side whose repeats cost
  // less, among the sides with a slab per thread: rows of C repeat B's N x K
  // per slab, columns repeat A's M x K (at 576 x 1536 x 384 splitting rows
  // packed the 1536 x 384 weights eight times: 0.24x one multi-threaded
  // sgemm).
  struct Plan {
    int64_t slab, count, packed;
  };
  auto plan = [&](int64_t extent, int64_t repeated, int64_t once) {
    const int64_t slabs = std::max<int64_t>(threads, std::min<int64_t>(4 * threads, extent / 64));
    const int64_t slab = ((extent + slabs - 1) / slabs + 15) / 16 * 16;
    const int64_t count = (extent + slab - 1) / slab;
    return Plan{slab, count, count * repeated + once};
  };
  const Plan by_rows = plan(M, N * K, M * K), by_cols = plan(N, M * K, N * K);
  const bool rows_parallel = by_rows.count >= threads, cols_parallel = by_cols.count >= threads;
  const bool split_rows = rows_parallel != cols_parallel ? rows_parallel
                                                         : by_rows.packed <= by_cols.packed;
  const int64_t extent = split_rows ? M : N;
  const int64_t slab = split_rows ? by_rows.slab : by_cols.slab;
  const int64_t count = split_rows ? by_rows.count : by_cols.count;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < count; ++i) {
    const int64_t begin = i * slab;
    const int64_t len = std::min<int64_t>(slab, extent - begin);
    if (split_rows) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, len, N, K, alpha, A + begin * lda, lda, B, ldb,
                  beta, C + begin * ldc, ldc);
    } else {
      const float* b = trans_b ? B + begin * ldb : B + begin;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, len, K, alpha, A, lda, b, ldb, beta,
                  C + begin, ldc);
    }
  }
}

void Linear(const CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            Tensor& y) {
  const op_shapes::LinearDims dims = op_shapes::CheckLinear("", x, w, bias, y);
  const int64_t m = dims.m, n = dims.n, k = dims.k;
  if (m == 0 || n == 0) return;

  const float* wf = nullptr;
  std::unique_ptr<Scratch> converted;
  if (w.dtype() == DType::kF32) {
    wf = w.f32();
  } else {
    converted = std::make_unique<Scratch>(ctx, n * k);
    ConvertToF32(ctx, w, converted->data());
    wf = converted->data();
  }
  float* out = y.f32();
  if (k == 0) {
    for (int64_t i = 0; i < m * n; ++i) out[i] = 0.f;
  } else {
    Sgemm(ctx, /*trans_b=*/true, m, n, k, 1.f, x.f32(), k, wf, k, 0.f, out, n);
  }
  if (bias) {
    std::unique_ptr<Scratch> bias_f32;
    const float* b = nullptr;
    if (bias->dtype() == DType::kF32) {
      b = bias->f32();
    } else {
      bias_f32 = std::make_unique<Scratch>(ctx, n);
      ConvertToF32(ctx, *bias, bias_f32->data());
      b = bias_f32->data();
    }
    const int threads = ThreadsFor(ctx, m * n);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < m; ++i) {
      float* row = out + i * n;
      for (int64_t j = 0; j < n; ++j) row[j] += b[j];
    }
  }
}

}  // namespace sparsevid::kernels::cpu
