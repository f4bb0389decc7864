// Normalisations: LayerNorm and RMSNorm over the last dim, and the Wan-VAE
// channel RMS norm over dim 0.
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

void LayerNorm(const CpuContext& ctx, const Tensor& x, const Tensor* gamma, const Tensor* beta,
               float eps, Tensor& y);
void RmsNorm(const CpuContext& ctx, const Tensor& x, const Tensor* gamma, float eps, Tensor& y);
void ChannelRmsNorm(const CpuContext& ctx, const Tensor& x, const Tensor& gamma, Tensor& y);

}  // namespace sparsevid::kernels::cpu
