// Full-precision SLA2 sparse branch of one query block: softmax attention
// restricted to the kept key blocks (gathered into a contiguous buffer, then
// two sgemm calls on the calling thread).
#pragma once

#include <cstdint>

namespace sparsevid::kernels::sla2 {

// Floats of scratch SparseBlockF32 needs.
int64_t SparseScratchFloats(int64_t rows, int64_t max_kept_rows, int64_t d);

// q_i [rows, d]; k, v [L, d] (k smoothed or not: same softmax); kept key
// blocks ascending. out [rows, d]; rows with no kept key get 0.
void SparseBlockF32(const float* q_i, int64_t rows, const float* k, const float* v, int64_t L,
                    int64_t d, int64_t block_k, const int32_t* kept, int64_t n_kept, float scale,
                    float* out, float* scratch);

}  // namespace sparsevid::kernels::sla2
