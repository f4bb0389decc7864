// Memory ops of the CPU backend: copy, fill and dtype conversion.
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

void CopyTensor(const CpuContext& ctx, const Tensor& src, Tensor& dst);
void FillTensor(const CpuContext& ctx, Tensor& dst, float value);
// f32 <- any dtype, element by element (dst must be f32 with src's numel).
void ConvertToF32(const CpuContext& ctx, const Tensor& src, float* dst);

}  // namespace sparsevid::kernels::cpu
