#include "kernels/sla2/low_bit.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sparsevid::kernels::sla2 {

float RoundToFp8E4M3(float x) {
  if (std::isnan(x)) return x;
  const float a = std::fabs(x);
  float r;
  if (a >= kFp8E4M3Max) {
    r = kFp8E4M3Max;
  } else if (a < 0x1p-6f) {
    // Subnormal range: fixed quantum 2^-9.
    r = std::nearbyint(a * 512.f) / 512.f;
  } else {
    int e;
    std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): leading bit is 2^(e-1)
    const float quantum = std::ldexp(1.f, e - 4);  // 3 mantissa bits
    r = std::nearbyint(a / quantum) * quantum;     // ties to even (default FE_TONEAREST)
    r = std::min(r, kFp8E4M3Max);
  }
  return std::copysign(r, x);
}

float Int8Scale(float amax) { return amax > 0.f ? amax / 127.f : 1.f; }

int8_t QuantizeInt8(float x, float scale) {
  const float r = std::round(x / scale);  // std::round: half away from zero
  return static_cast<int8_t>(std::max(-127.f, std::min(127.f, r)));
}

float Fp8Scale(float amax) { return amax > 0.f ? amax / kFp8E4M3Max : 1.f; }

float QuantizeBlockInt8(const float* x, int64_t rows, int64_t d, int8_t* q) {
  float amax = 0.f;
  for (int64_t i = 0; i < rows * d; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float scale = Int8Scale(amax);
  for (int64_t i = 0; i < rows * d; ++i) q[i] = QuantizeInt8(x[i], scale);
  return scale;
}

void QuantizeValuesFp8(const float* v, int64_t L, int64_t d, float* v_hat, float* s_v) {
  for (int64_t c = 0; c < d; ++c) s_v[c] = 0.f;
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t c = 0; c < d; ++c) s_v[c] = std::max(s_v[c], std::fabs(v[t * d + c]));
  }
  for (int64_t c = 0; c < d; ++c) s_v[c] = Fp8Scale(s_v[c]);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t c = 0; c < d; ++c) v_hat[t * d + c] = RoundToFp8E4M3(v[t * d + c] / s_v[c]);
  }
}

int64_t LowBitScratchFloats(int64_t rows, int64_t block_k, int64_t d) {
  return rows * block_k + 2 * rows;  // one score tile, running max, running sum
}

void LowBitSparseBlock(const int8_t* q8, float sq, int64_t rows, const int8_t* k8, const float* sk,
                       const float* v_hat, const float* s_v, int64_t L, int64_t d, int64_t block_k,
                       const int32_t* kept, int64_t n_kept, float* out, float* scratch) {
  const float sqrt_d = static_cast<float>(std::sqrt(static_cast<double>(d)));
  float* s = scratch;
  float* m = s + rows * block_k;
  float* l = m + rows;
  for (int64_t r = 0; r < rows; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.f;
  }
  std::fill(out, out + rows * d, 0.f);
  for (int64_t kb = 0; kb < n_kept; ++kb) {
    const int64_t j = kept[kb];
    const int64_t c0 = j * block_k, cols = std::min(block_k, L - c0);
    const float skj = sk[j];
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* qr = q8 + r * d;
      float* sr = s + r * block_k;
      float row_max = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < cols; ++c) {
        const int8_t* kc = k8 + (c0 + c) * d;
        int32_t dot = 0;  // exact integer product, as the INT8 tensor cores
        for (int64_t e = 0; e < d; ++e) dot += static_cast<int32_t>(qr[e]) * kc[e];
        // Same operation order as training/ (q.k * s_q * s_k / sqrt(d)), so
        // P rounds to the same FP8 values.
        sr[c] = static_cast<float>(dot) * sq * skj / sqrt_d;
        row_max = std::max(row_max, sr[c]);
      }
      const float m_new = std::max(m[r], row_max);
      const float rescale = std::exp(m[r] - m_new);  // 0 on the first block (m = -inf)
      float* orow = out + r * d;
      for (int64_t e = 0; e < d; ++e) orow[e] *= rescale;
      float sum = 0.f;
      for (int64_t c = 0; c < cols; ++c) {
        const float p = std::exp(sr[c] - m_new);
        sum += p;  // l uses the unquantised P
        const float p_hat = RoundToFp8E4M3(p * kFp8E4M3Max);
        const float* vc = v_hat + (c0 + c) * d;
        for (int64_t e = 0; e < d; ++e) orow[e] += p_hat * vc[e];
      }
      l[r] = l[r] * rescale + sum;
      m[r] = m_new;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    float* orow = out + r * d;
    if (l[r] == 0.f) {
      std::fill(orow, orow + d, 0.f);
      continue;
    }
    const float inv = 1.f / (kFp8E4M3Max * l[r]);
    for (int64_t e = 0; e < d; ++e) orow[e] = orow[e] * s_v[e] * inv;
  }
}

}  // namespace sparsevid::kernels::sla2
