// Linear layers on OpenBLAS sgemm (the throughput path of the CPU backend).
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

// C[M,N] = alpha * A[M,K] op(B) + beta * C, row-major, op(B) = B[K,N] or
// B[N,K]^T. OpenBLAS runs single-threaded (set by the backend); this splits
// the rows (or, for short M, the columns) of C over the OpenMP threads, so
// OpenMP is the only thread pool and no two pools spin against each other
// on the cores.
void Sgemm(const CpuContext& ctx, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc);

// y[M,N] = x[M,K] w[N,K]^T (+ bias[N]); x may have any leading dims (M = their
// product). Weights in bf16/f16 are converted to an f32 scratch copy per call;
// the model converts its weights at load time (Backend::ToF32) to avoid that.
void Linear(const CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            Tensor& y);

}  // namespace sparsevid::kernels::cpu
