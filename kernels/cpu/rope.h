// Wan 3-D rotary position embedding (docs: wan2.1.md §1.5).
#pragma once

#include "kernels/backend.h"
#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

// Angle of pair j (0 <= j < d/2) for token position (f, h, w); float64 as the
// official code. Exposed for tests.
double Rope3dAngle(int64_t head_dim, int64_t pair, int64_t f, int64_t h, int64_t w);

// x [L, H, d] in place, L = grid.tokens().
void Rope3d(const CpuContext& ctx, Tensor& x, const TokenGrid& grid);

}  // namespace sparsevid::kernels::cpu
