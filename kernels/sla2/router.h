// SLA2 router (docs/conventions.md steps 2-3): mean-pool Q and smoothed K
// per block, project, score, keep the top k key blocks per query block.
#pragma once

#include <cstdint>
#include <vector>

namespace sparsevid::kernels::sla2 {

// ceil(n / block).
inline int64_t NumBlocks(int64_t n, int64_t block) { return (n + block - 1) / block; }

// k = max(1, min(T_n, floor(keep_ratio * T_n))). keep_ratio arrives as a
// float (0.03f = 0.0299999993), so the product is nudged by 1e-6 relative
// before flooring: the decimal ratio the user meant decides, as in Python.
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
