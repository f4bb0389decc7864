// The GPU test's oracle (tests/cuda/sla2_reference.h) must compute the same
// operator as the product's CPU backend (kernels/sla2), so that "GPU matches
// the oracle" on the GPU machine means "GPU matches the CPU backend". This
// CPU-only test checks that link: router mode, external mask, low-bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/backend.h"
#include "tests/cuda/sla2_reference.h"

namespace sparsevid::kernels {
namespace {

namespace ref = cuda::testing;

float Bf16Round(float f) { return Bf16ToFloat(FloatToBf16(f)); }

double RelL2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

struct OracleCase {
  int heads = 2, dim = 64;
  int64_t len = 700;
  float keep = 0.1f;
  bool low_bit = false;
  bool external_mask = false;
};

void CompareWithCpuBackend(const OracleCase& s, double tol) {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  ref::RefProblem rp;
  rp.heads = s.heads;
  rp.head_dim = s.dim;
  rp.seq_len = s.len;
  rp.keep_ratio = s.keep;
  rp.low_bit = s.low_bit;
  const int tm = rp.q_blocks(), tn = rp.k_blocks();
  const size_t n = static_cast<size_t>(s.len) * s.heads * s.dim;
  std::vector<float> q(n), k(n), v(n), wq(s.dim * s.dim), wk(s.dim * s.dim), alpha(s.heads * tm);
  for (size_t i = 0; i < n; ++i) {
    q[i] = Bf16Round(1.5f * nd(rng));
    k[i] = Bf16Round(nd(rng) + 0.5f * (i % s.dim == 3));
    v[i] = Bf16Round(nd(rng));
  }
  for (int i = 0; i < s.dim; ++i)
    for (int j = 0; j < s.dim; ++j) {
      wq[i * s.dim + j] = (i == j) + 0.1f * nd(rng);
      wk[i * s.dim + j] = (i == j) + 0.1f * nd(rng);
    }
  std::uniform_real_distribution<float> ud(0.2f, 0.9f);
  for (float& a : alpha) a = ud(rng);
  rp.proj_q = &wq;
  rp.proj_k = &wk;
  rp.alpha = &alpha;

  ref::BlockMask mask;
  if (s.external_mask) {
    mask.resize(static_cast<size_t>(s.heads) * tm * tn);
    std::bernoulli_distribution keep(0.3);
    for (auto& m : mask) m = keep(rng);
    for (int j = 0; j < tn; ++j) mask[j] = 1;  // one all-kept row
  } else {
    mask = ref::RouteReference(rp, q, k, nullptr);
  }
  const std::vector<float> want = ref::Sla2Reference(rp, q, k, v, mask);

  auto backend = CreateCpuBackend(2);
  const Shape shape{s.len, s.heads, s.dim};
  Tensor tq = Tensor::FromVector(q, shape), tk = Tensor::FromVector(k, shape),
         tv = Tensor::FromVector(v, shape), out = Tensor::Zeros(shape);
  Tensor tpq = Tensor::FromVector(wq, {s.dim, s.dim}), tpk = Tensor::FromVector(wk, {s.dim, s.dim});
  Tensor talpha = Tensor::FromVector(alpha, {s.heads, tm});
  Tensor tmask = Tensor::Empty({s.heads, tm, tn}, DType::kU8);
  std::memcpy(tmask.raw(), mask.data(), mask.size());
  Sla2Params params;
  params.keep_ratio = s.keep;
  params.proj_q = &tpq;
  params.proj_k = &tpk;
  params.alpha = &talpha;
  params.low_bit = s.low_bit;
  if (s.external_mask) params.block_mask = &tmask;
  Sla2Stats stats;
  backend->Sla2Attention(tq, tk, tv, params, out, &stats);
  EXPECT_LE(RelL2(out.ToVector(), want), tol);
}

TEST(Sla2CudaOracle, MatchesCpuBackendWithRouter) { CompareWithCpuBackend({}, 1e-5); }

TEST(Sla2CudaOracle, MatchesCpuBackendWithExternalMask) {
  OracleCase s;
  s.external_mask = true;
  s.dim = 128;
  s.len = 333;
  CompareWithCpuBackend(s, 1e-5);
}

TEST(Sla2CudaOracle, MatchesCpuBackendLowBit) {
  OracleCase s;
  s.low_bit = true;
  s.len = 1000;
  CompareWithCpuBackend(s, 2e-3);
}

}  // namespace
}  // namespace sparsevid::kernels
