// Elementwise and row-wise ops on f32 tensors (y may alias x).
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

void GeluTanh(const CpuContext& ctx, const Tensor& x, Tensor& y);
void Silu(const CpuContext& ctx, const Tensor& x, Tensor& y);
void Add(const CpuContext& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void Mul(const CpuContext& ctx, const Tensor& a, const Tensor& b, Tensor& y);
void Scale(const CpuContext& ctx, const Tensor& x, float s, Tensor& y);
void Clamp(const CpuContext& ctx, const Tensor& x, float lo, float hi, Tensor& y);
void Modulate(const CpuContext& ctx, const Tensor& x, const Tensor& shift, const Tensor& scale,
              Tensor& y);
void AddGated(const CpuContext& ctx, Tensor& x, const Tensor& y, const Tensor* gate);
// Softmax over the last dimension.
void Softmax(const CpuContext& ctx, const Tensor& x, Tensor& y);
// In-place, numerically stable softmax of one row (shared with attention).
void SoftmaxRow(float* row, int64_t n);

}  // namespace sparsevid::kernels::cpu
