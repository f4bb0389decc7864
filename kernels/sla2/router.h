// SLA2 router (docs/conventions.md steps 2-3): mean-pool Q and smoothed K
// per block, project, score, keep the top k key blocks per query block.
#pragma once

#include <cstdint>
#include <vector>

namespace sparsevid::kernels::sla2 {

// ceil(n / block).
inline int64_t NumBlocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// The double a float config value was written as: the shortest decimal
// that reads back as f ("0.03" for 0.03f), parsed as a double.
double DecimalValue(float f);

// k = max(1, min(T_n, floor(keep_ratio * T_n))), the product in float64 of
// DecimalValue(keep_ratio), so the count equals training/'s Python
// keep_count for the same config text (0.03f * 100 floors to 2 in float
// arithmetic; 0.03 * 100 = 3.0000000000000004 in Python).
int64_t KeptBlocksPerRow(float keep_ratio, int64_t T_n);

// pooled[b, :] = mean of rows [b*block, min(L, (b+1)*block)) of x [L, d].
void MeanPoolBlocks(const float* x, int64_t L, int64_t d, int64_t block, float* pooled);

// y[n, :] = x[n, :] W^T for W [d, d]; W null = identity (copy).
void ProjectRows(const float* x, int64_t n, int64_t d, const float* w, float* y);

// For each of the T_m rows of scores [T_m, T_n], the indices of the k
// highest entries (ties: lower index first; NaN ranks lowest), returned in
// ascending index order: kept[i * k .. i * k + k).
void TopKPerRow(const float* scores, int64_t T_m, int64_t T_n, int64_t k,
                std::vector<int32_t>* kept);

}  // namespace sparsevid::kernels::sla2
