// 3-D convolution (stride 1, no temporal padding, symmetric spatial zero
// padding) as im2col + sgemm per output frame, in row chunks that bound the
// column buffer.
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

void Conv3d(const CpuContext& ctx, const Tensor& x, const Tensor& w, const Tensor* bias, int pad_h,
            int pad_w, Tensor& y);

}  // namespace sparsevid::kernels::cpu
