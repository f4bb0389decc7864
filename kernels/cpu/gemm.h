// Linear layers on OpenBLAS sgemm (the throughput path of the CPU backend).
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

// y[M,N] = x[M,K] w[N,K]^T (+ bias[N]); x may have any leading dims (M = their
// product). Weights in bf16/f16 are converted to an f32 scratch copy per call;
// the model converts its weights at load time (Backend::ToF32) to avoid that.
void Linear(const CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias,
            Tensor& y);

}  // namespace sparsevid::kernels::cpu
