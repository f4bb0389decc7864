#include "kernels/sla2/sparse_branch.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/elementwise.h"

namespace sparsevid::kernels::sla2 {

int64_t SparseScratchFloats(int64_t rows, int64_t max_kept_rows, int64_t d) {
  return 2 * max_kept_rows * d + rows * max_kept_rows;
}

void SparseBlockF32(const float* q_i, int64_t rows, const float* k, const float* v, int64_t L,
                    int64_t d, int64_t block_k, const int32_t* kept, int64_t n_kept, float scale,
                    float* out, float* scratch) {
  // Gather the kept blocks; a partial last block contributes its valid rows only.
  float* kg = scratch;
  int64_t n = 0;
  for (int64_t b = 0; b < n_kept; ++b) {
    const int64_t r0 = kept[b] * block_k, r1 = std::min(L, r0 + block_k);
    n += r1 - r0;
  }
  float* vg = kg + n * d;
  float* s = vg + n * d;
  int64_t at = 0;
  for (int64_t b = 0; b < n_kept; ++b) {
    const int64_t r0 = kept[b] * block_k, r1 = std::min(L, r0 + block_k);
    std::memcpy(kg + at * d, k + r0 * d, (r1 - r0) * d * sizeof(float));
    std::memcpy(vg + at * d, v + r0 * d, (r1 - r0) * d * sizeof(float));
    at += r1 - r0;
  }
  if (n == 0) {
    std::fill(out, out + rows * d, 0.f);
    return;
  }
  const int ni = static_cast<int>(n), di = static_cast<int>(d), ri = static_cast<int>(rows);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ri, ni, di, scale, q_i, di, kg, di, 0.f, s,
              ni);
  for (int64_t r = 0; r < rows; ++r) cpu::SoftmaxRow(s + r * n, n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ri, di, ni, 1.f, s, ni, vg, di, 0.f, out,
              di);
}

}  // namespace sparsevid::kernels::sla2
