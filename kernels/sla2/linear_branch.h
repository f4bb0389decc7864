// SLA2 linear branch (docs/conventions.md step 5): phi = softmax over the d
// channels; per key block j the state h_j = phi(K_j)^T V_j [d, d] and
// z_j = colsum phi(K_j) [d]; a query block uses the sum over the blocks it
// did not keep, formed by pre-aggregation (total minus kept) when few are
// kept, by direct summation otherwise.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::sla2 {

// Row-wise softmax over the d channels: out[r, :] = softmax(x[r, :]).
void FeatureMap(const float* x, int64_t rows, int64_t d, float* out);

// Views into caller-owned memory.
struct KeyBlockStates {
  int64_t blocks = 0, d = 0;
  float* h = nullptr;        // [blocks, d, d]
  float* z = nullptr;        // [blocks, d]
  float* h_total = nullptr;  // [d, d]
  float* z_total = nullptr;  // [d]
  static int64_t Floats(int64_t blocks, int64_t d) { return (blocks + 1) * (d * d + d); }
  void Bind(float* memory, int64_t blocks_, int64_t d_);
};

// Fills states from k_phi, v [L, d]. Parallel over key blocks (OpenBLAS is
// single-threaded, so each thread's sgemm stays on that thread).
void BuildKeyBlockStates(const cpu::CpuContext& ctx, const float* k_phi, const float* v, int64_t L,
                         int64_t block_k, KeyBlockStates& states);

// O_l [rows, d] of one query block from q_phi [rows, d]; 0 when every key
// block is kept or the denominator is 0. scratch: d*d + d floats.
void LinearBlock(const float* q_phi, int64_t rows, const KeyBlockStates& states,
                 const int32_t* kept, int64_t n_kept, float* out, float* scratch);

}  // namespace sparsevid::kernels::sla2
