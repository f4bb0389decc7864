// Plain CPU reference of the SLA2 operator (docs/conventions.md), written
// for clarity, double accumulation. Tensors are float [B, L, H, D] holding
// bf16-representable values (the GPU inputs), so both sides see the same data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sparsevid::kernels::cuda::testing {

struct RefProblem {
  int batch = 1, heads = 1, head_dim = 64;
  int64_t seq_len = 0;
  int block_q = 128, block_k = 64;
  float keep_ratio = 0.03f;
  const std::vector<float>* proj_q = nullptr;  // [D, D] or null (identity)
  const std::vector<float>* proj_k = nullptr;
  const std::vector<float>* alpha = nullptr;   // [H, T_m] or null (= 1)
  bool low_bit = false;
  int q_blocks() const { return static_cast<int>((seq_len + block_q - 1) / block_q); }
  int k_blocks() const { return static_cast<int>((seq_len + block_k - 1) / block_k); }
  int keep_count() const;
  size_t index(int b, int64_t l, int h, int c) const {
    return ((static_cast<size_t>(b) * seq_len + l) * heads + h) * head_dim + c;
  }
};

// Block mask [B, H, T_m, T_n] (1 = kept).
using BlockMask = std::vector<uint8_t>;

// Router: top-k of proj_q(pool Q) . proj_k(pool K~)^T per row, ties to the
// lower index. scores (optional) receives [B, H, T_m, T_n].
BlockMask RouteReference(const RefProblem& p, const std::vector<float>& q,
                         const std::vector<float>& k, std::vector<double>* scores);

// The operator for a given block mask: sparse branch (bf16 or the low-bit
// emulation), complement linear branch, alpha blend. Returns [B, L, H, D].
std::vector<float> Sla2Reference(const RefProblem& p, const std::vector<float>& q,
                                 const std::vector<float>& k, const std::vector<float>& v,
                                 const BlockMask& mask);

// FP8 E4M3 rounding (nearest even, saturating at +-448), as a float.
float RoundToE4m3(float x);

// The low-bit quantisation rules (docs/conventions.md "Low-bit"): the INT8
// block scale amax / 127 (1 if amax = 0), an INT8 value round-half-away(y)
// clamped to +-127, and the FP8 V channel scale amax / 448 (1 if amax = 0).
float Int8Scale(float amax);
float RoundToInt8(float y);
float Fp8Scale(float amax);

}  // namespace sparsevid::kernels::cuda::testing
