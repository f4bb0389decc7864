#include "kernels/sla2/linear_branch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/elementwise.h"

namespace sparsevid::kernels::sla2 {

void FeatureMap(const float* x, int64_t rows, int64_t d, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(out + r * d, x + r * d, d * sizeof(float));
    cpu::SoftmaxRow(out + r * d, d);
  }
}

void KeyBlockStates::Bind(float* memory, int64_t blocks_, int64_t d_) {
  blocks = blocks_;
  d = d_;
  h = memory;
  z = h + blocks * d * d;
  h_total = z + blocks * d;
  z_total = h_total + d * d;
}

void BuildKeyBlockStates(const cpu::CpuContext& ctx, const float* k_phi, const float* v, int64_t L,
                         int64_t block_k, KeyBlockStates& states) {
  const int64_t d = states.d, blocks = states.blocks;
  const int di = static_cast<int>(d);
#pragma omp parallel for num_threads(ctx.threads) schedule(static)
  for (int64_t j = 0; j < blocks; ++j) {
    const int64_t r0 = j * block_k, rows = std::min(block_k, L - r0);
    // h_j = phi(K_j)^T V_j; rows past L do not exist, i.e. contribute zero.
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, di, di, static_cast<int>(rows), 1.f,
                k_phi + r0 * d, di, v + r0 * d, di, 0.f, states.h + j * d * d, di);
    float* z = states.z + j * d;
    std::fill(z, z + d, 0.f);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < d; ++c) z[c] += k_phi[(r0 + r) * d + c];
    }
  }
  // Totals in double: they are differenced against a few kept blocks later.
  const int64_t cells = d * d + d;
#pragma omp parallel for num_threads(ctx.threads) schedule(static)
  for (int64_t e = 0; e < cells; ++e) {
    double acc = 0;
    if (e < d * d) {
      for (int64_t j = 0; j < blocks; ++j) acc += states.h[j * d * d + e];
      states.h_total[e] = static_cast<float>(acc);
    } else {
      for (int64_t j = 0; j < blocks; ++j) acc += states.z[j * d + (e - d * d)];
      states.z_total[e - d * d] = static_cast<float>(acc);
    }
  }
}

void LinearBlock(const float* q_phi, int64_t rows, const KeyBlockStates& states,
                 const int32_t* kept, int64_t n_kept, float* out, float* scratch) {
  const int64_t d = states.d, blocks = states.blocks;
  std::fill(out, out + rows * d, 0.f);
  if (n_kept >= blocks) return;  // every block is sparse: no linear part
  float* H = scratch;
  float* Z = H + d * d;
  if (2 * n_kept <= blocks) {
    // Pre-aggregation: total minus the (few) kept blocks.
    std::memcpy(H, states.h_total, d * d * sizeof(float));
    std::memcpy(Z, states.z_total, d * sizeof(float));
    for (int64_t b = 0; b < n_kept; ++b) {
      const float* hj = states.h + kept[b] * d * d;
      const float* zj = states.z + kept[b] * d;
      for (int64_t e = 0; e < d * d; ++e) H[e] -= hj[e];
      for (int64_t c = 0; c < d; ++c) Z[c] -= zj[c];
    }
  } else {
    std::fill(H, H + d * d, 0.f);
    std::fill(Z, Z + d, 0.f);
    int64_t next = 0;  // kept is ascending: walk it alongside j
    for (int64_t j = 0; j < blocks; ++j) {
      if (next < n_kept && kept[next] == j) {
        ++next;
        continue;
      }
      const float* hj = states.h + j * d * d;
      const float* zj = states.z + j * d;
      for (int64_t e = 0; e < d * d; ++e) H[e] += hj[e];
      for (int64_t c = 0; c < d; ++c) Z[c] += zj[c];
    }
  }
  const int di = static_cast<int>(d);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), di, di, 1.f, q_phi,
              di, H, di, 0.f, out, di);
  for (int64_t r = 0; r < rows; ++r) {
    double den = 0;
    for (int64_t c = 0; c < d; ++c) den += static_cast<double>(q_phi[r * d + c]) * Z[c];
    float* o = out + r * d;
    if (!(den > 0.0)) {  // zero (or, after cancellation, non-positive) mass
      std::fill(o, o + d, 0.f);
      continue;
    }
    const float inv = static_cast<float>(1.0 / den);
    for (int64_t c = 0; c < d; ++c) o[c] *= inv;
  }
}

}  // namespace sparsevid::kernels::sla2
