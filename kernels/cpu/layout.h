// Data movement: permute, concat, embedding lookup, nearest 2x upsampling.
// Permute and Concat work for every dtype (they move bytes).
#pragma once

#include <vector>

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

// y = x.permute(perm) materialised; y's shape must be x's shape permuted.
void Permute(const CpuContext& ctx, const Tensor& x, const std::vector<int>& perm, Tensor& y);
void Concat(const CpuContext& ctx, const std::vector<Tensor>& xs, int dim, Tensor& y);
void Embedding(const CpuContext& ctx, const Tensor& table, const std::vector<int32_t>& ids,
               Tensor& y);
void UpsampleNearest2x(const CpuContext& ctx, const Tensor& x, Tensor& y);

}  // namespace sparsevid::kernels::cpu
