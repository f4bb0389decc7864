// SLA2 self-attention on the CPU (docs/conventions.md "SLA2 forward"):
// router -> sparse branch over kept key blocks (fp32 or low-bit) and
// linear branch over the rest -> per-(head, query block) alpha blend.
// Heads run one after another; (query block) work items run in parallel.
#pragma once

#include "kernels/backend.h"
#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::sla2 {

void Sla2AttentionCpu(const cpu::CpuContext& ctx, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Sla2Params& params, Tensor& out, Sla2Stats* stats);

// alpha [H, T_a] resampled to T_m query blocks by nearest neighbour over the
// normalised block position (i + 0.5) / T_m (identity when T_a == T_m).
int64_t AlphaSourceIndex(int64_t i, int64_t T_m, int64_t T_a);

}  // namespace sparsevid::kernels::sla2
