#include "kernels/sla2/sla2_attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/check.h"
#include "kernels/cpu/convert.h"
#include "kernels/sla2/linear_branch.h"
#include "kernels/sla2/low_bit.h"
#include "kernels/sla2/router.h"
#include "kernels/sla2/sparse_branch.h"

namespace sparsevid::kernels::sla2 {
namespace {

// Kept key blocks of every query block of one head, CSR-style.
struct KeptLists {
  std::vector<int32_t> index;
  std::vector<int64_t> begin;  // T_m + 1 offsets into index
  int64_t max_row = 0;
};

std::vector<float> ParamToF32(const Tensor* t) {
  std::vector<float> out;
  if (!t) return out;
  out.resize(t->numel());
  cpu::ConvertToF32(cpu::CpuContext{1, nullptr}, *t, out.data());
  return out;
}

void RouteHead(const float* qh, const float* kh, int64_t L, int64_t d, const Sla2Params& p,
               const float* proj_q, const float* proj_k, int64_t T_m, int64_t T_n,
               KeptLists* kept) {
  std::vector<float> pooled_q(T_m * d), pooled_k(T_n * d), pq(T_m * d), pk(T_n * d),
      scores(T_m * T_n);
  MeanPoolBlocks(qh, L, d, p.block_q, pooled_q.data());
  MeanPoolBlocks(kh, L, d, p.block_k, pooled_k.data());
  ProjectRows(pooled_q.data(), T_m, d, proj_q, pq.data());
  ProjectRows(pooled_k.data(), T_n, d, proj_k, pk.data());
  for (int64_t i = 0; i < T_m; ++i) {
    for (int64_t j = 0; j < T_n; ++j) {
      double s = 0;
      for (int64_t c = 0; c < d; ++c) s += static_cast<double>(pq[i * d + c]) * pk[j * d + c];
      scores[i * T_n + j] = static_cast<float>(s);
    }
  }
  const int64_t k = KeptBlocksPerRow(p.keep_ratio, T_n);
  TopKPerRow(scores.data(), T_m, T_n, k, &kept->index);
  kept->begin.resize(T_m + 1);
  for (int64_t i = 0; i <= T_m; ++i) kept->begin[i] = i * k;
  kept->max_row = k;
}

void MaskHead(const uint8_t* mask, int64_t T_m, int64_t T_n, KeptLists* kept) {
  kept->index.clear();
  kept->begin.assign(1, 0);
  kept->max_row = 0;
  for (int64_t i = 0; i < T_m; ++i) {
    for (int64_t j = 0; j < T_n; ++j) {
      if (mask[i * T_n + j]) kept->index.push_back(static_cast<int32_t>(j));
    }
    kept->begin.push_back(static_cast<int64_t>(kept->index.size()));
    kept->max_row = std::max(kept->max_row, kept->begin[i + 1] - kept->begin[i]);
  }
}


// Everything a head needs that is shared by all heads.
struct SharedInputs {
  const float *q, *k, *v;
  float* out;
  int64_t L, H, d, T_m, T_n;
  const Sla2Params& p;
  const float *proj_q, *proj_k;  // null = identity
  std::vector<float> alpha;      // [H, T_a] or empty
  int64_t T_a;
};

struct HeadResult {
  int64_t kept_blocks = 0;
  double alpha_sum = 0;
};

// One head, steps 1-6 of docs/conventions.md, using ctx.threads threads.
void ProcessHead(const cpu::CpuContext& ctx, const SharedInputs& in, int64_t h, HeadResult* result) {
  const Sla2Params& p = in.p;
  const int64_t L = in.L, d = in.d, T_m = in.T_m, T_n = in.T_n;
  const int threads = ctx.threads;
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  const int64_t row_stride = in.H * d;

  // Working set: Q, smoothed K, V, and (when needed) their features.
  cpu::Scratch head_buf(ctx, 5 * L * d);
  float* qh = head_buf.data();
  float* kh = qh + L * d;
  float* vh = kh + L * d;
  float* q_phi = vh + L * d;
  float* k_phi = q_phi + L * d;

#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < L; ++t) {
    std::memcpy(qh + t * d, in.q + t * row_stride + h * d, d * sizeof(float));
    std::memcpy(kh + t * d, in.k + t * row_stride + h * d, d * sizeof(float));
    std::memcpy(vh + t * d, in.v + t * row_stride + h * d, d * sizeof(float));
  }
  // Step 1: smooth K (subtract the per-channel mean over tokens).
  std::vector<double> mean(d, 0.0);
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t c = 0; c < d; ++c) mean[c] += kh[t * d + c];
  }
  std::vector<float> meanf(d);
  for (int64_t c = 0; c < d; ++c) meanf[c] = static_cast<float>(mean[c] / L);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t c = 0; c < d; ++c) kh[t * d + c] -= meanf[c];
  }

  // Steps 2-3: which key blocks each query block keeps.
  KeptLists kept;
  if (p.block_mask) {
    MaskHead(p.block_mask->data<uint8_t>() + h * T_m * T_n, T_m, T_n, &kept);
  } else {
    RouteHead(qh, kh, L, d, p, in.proj_q, in.proj_k, T_m, T_n, &kept);
  }
  std::vector<float> alpha(T_m, 1.f);
  bool need_linear = false;
  for (int64_t i = 0; i < T_m; ++i) {
    if (!in.alpha.empty()) alpha[i] = in.alpha[h * in.T_a + AlphaSourceIndex(i, T_m, in.T_a)];
    need_linear |= alpha[i] != 1.f;
    result->alpha_sum += alpha[i];
    result->kept_blocks += kept.begin[i + 1] - kept.begin[i];
  }

  // Step 5 precomputation: features and per-key-block states.
  std::unique_ptr<cpu::Scratch> state_buf;
  KeyBlockStates states;
  if (need_linear) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t t = 0; t < L; ++t) {
      FeatureMap(qh + t * d, 1, d, q_phi + t * d);
      FeatureMap(kh + t * d, 1, d, k_phi + t * d);
    }
    state_buf = std::make_unique<cpu::Scratch>(ctx, KeyBlockStates::Floats(T_n, d));
    states.Bind(state_buf->data(), T_n, d);
    BuildKeyBlockStates(ctx, k_phi, vh, L, p.block_k, states);
  }
  std::vector<int8_t> q8, k8;
  std::vector<float> sq, sk, v_hat, s_v;
  if (p.low_bit) {
    q8.resize(L * d);
    k8.resize(L * d);
    sq.resize(T_m);
    sk.resize(T_n);
    v_hat.resize(L * d);
    s_v.resize(d);
    for (int64_t i = 0; i < T_m; ++i) {
      const int64_t r0 = i * p.block_q, rows = std::min<int64_t>(p.block_q, L - r0);
      sq[i] = QuantizeBlockInt8(qh + r0 * d, rows, d, q8.data() + r0 * d);
    }
    for (int64_t j = 0; j < T_n; ++j) {
      const int64_t r0 = j * p.block_k, rows = std::min<int64_t>(p.block_k, L - r0);
      sk[j] = QuantizeBlockInt8(kh + r0 * d, rows, d, k8.data() + r0 * d);
    }
    QuantizeValuesFp8(vh, L, d, v_hat.data(), s_v.data());
  }

  // Steps 4-6 per query block.
  const int64_t max_kept_rows = kept.max_row * p.block_k;
  const int64_t branch_floats =
      std::max({SparseScratchFloats(p.block_q, max_kept_rows, d),
                LowBitScratchFloats(p.block_q, p.block_k, d), d * d + d});
  const int64_t per_thread = 2 * p.block_q * d + branch_floats;
  cpu::Scratch thread_buf(ctx, per_thread * threads);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < T_m; ++i) {
    float* o_s = thread_buf.data() + per_thread * (threads > 1 ? omp_get_thread_num() : 0);
    float* o_l = o_s + p.block_q * d;
    float* scratch = o_l + p.block_q * d;
    const int64_t r0 = i * p.block_q, rows = std::min<int64_t>(p.block_q, L - r0);
    const int32_t* ki = kept.index.data() + kept.begin[i];
    const int64_t nk = kept.begin[i + 1] - kept.begin[i];
    if (p.low_bit) {
      LowBitSparseBlock(q8.data() + r0 * d, sq[i], rows, k8.data(), sk.data(), v_hat.data(),
                        s_v.data(), L, d, p.block_k, ki, nk, o_s, scratch);
    } else {
      SparseBlockF32(qh + r0 * d, rows, kh, vh, L, d, p.block_k, ki, nk, scale, o_s, scratch);
    }
    const float a = alpha[i];
    if (a != 1.f) LinearBlock(q_phi + r0 * d, rows, states, ki, nk, o_l, scratch);
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = in.out + (r0 + r) * row_stride + h * d;
      const float* s = o_s + r * d;
      if (a == 1.f) {
        std::memcpy(dst, s, d * sizeof(float));
      } else {
        const float* l = o_l + r * d;
        for (int64_t c = 0; c < d; ++c) dst[c] = a * s[c] + (1.f - a) * l[c];
      }
    }
  }
}

}  // namespace

int64_t AlphaSourceIndex(int64_t i, int64_t T_m, int64_t T_a) {
  if (T_a == T_m) return i;
  const double pos = (static_cast<double>(i) + 0.5) / static_cast<double>(T_m);
  return std::min<int64_t>(T_a - 1, static_cast<int64_t>(std::floor(pos * T_a)));
}

void Sla2AttentionCpu(const cpu::CpuContext& ctx, const Tensor& q, const Tensor& k,
                      const Tensor& v, const Sla2Params& p, Tensor& out, Sla2Stats* stats) {
  SV_CHECK(q.ndim() == 3 && q.shape() == k.shape() && q.shape() == v.shape() &&
               q.shape() == out.shape(),
           "Sla2Attention: q %s k %s v %s out %s must all be [L, H, d]",
           ShapeString(q.shape()).c_str(), ShapeString(k.shape()).c_str(),
           ShapeString(v.shape()).c_str(), ShapeString(out.shape()).c_str());
  SV_CHECK(q.dtype() == DType::kF32 && k.dtype() == DType::kF32 && v.dtype() == DType::kF32 &&
               out.dtype() == DType::kF32,
           "Sla2Attention: f32 only");
  SV_CHECK(p.block_q > 0 && p.block_k > 0, "Sla2Attention: block sizes %d/%d", p.block_q,
           p.block_k);
  SV_CHECK(std::isfinite(p.keep_ratio), "Sla2Attention: keep_ratio %g", p.keep_ratio);
  const int64_t L = q.dim(0), H = q.dim(1), d = q.dim(2);
  const int64_t T_m = NumBlocks(L, p.block_q), T_n = NumBlocks(L, p.block_k);
  for (const Tensor* proj : {p.proj_q, p.proj_k}) {
    if (proj) SV_CHECK((proj->shape() == Shape{d, d}), "Sla2Attention: router projection %s, expected [%lld, %lld]",
                       ShapeString(proj->shape()).c_str(), static_cast<long long>(d),
                       static_cast<long long>(d));
  }
  if (p.alpha) {
    SV_CHECK(p.alpha->ndim() == 2 && p.alpha->dim(0) == H && p.alpha->dim(1) >= 1,
             "Sla2Attention: alpha %s, expected [%lld, T_m]", ShapeString(p.alpha->shape()).c_str(),
             static_cast<long long>(H));
  }
  if (p.block_mask) {
    SV_CHECK(p.block_mask->dtype() == DType::kU8 && (p.block_mask->shape() == Shape{H, T_m, T_n}),
             "Sla2Attention: block_mask %s %s, expected u8 [%lld, %lld, %lld]",
             ShapeString(p.block_mask->shape()).c_str(), DTypeName(p.block_mask->dtype()),
             static_cast<long long>(H), static_cast<long long>(T_m), static_cast<long long>(T_n));
  }
  SV_CHECK(out.raw() != q.raw() && out.raw() != k.raw() && out.raw() != v.raw(),
           "Sla2Attention: out must not alias q, k or v");
  Sla2Stats local;
  local.total_blocks = H * T_m * T_n;
  if (L == 0 || d == 0) {
    if (stats) *stats = local;
    return;
  }

  const std::vector<float> proj_q = ParamToF32(p.proj_q), proj_k = ParamToF32(p.proj_k);
  const SharedInputs in{q.f32(), k.f32(), v.f32(), out.f32(), L, H, d, T_m, T_n, p,
                        p.proj_q ? proj_q.data() : nullptr, p.proj_k ? proj_k.data() : nullptr,
                        ParamToF32(p.alpha), p.alpha ? p.alpha->dim(1) : 0};
  std::vector<HeadResult> results(H);
  if (H >= ctx.threads && ctx.threads > 1) {
    // Whole heads per thread: one parallel region per call, no barriers
    // inside (robust when the cores are shared with other processes).
    const cpu::CpuContext serial{1, ctx.account};
#pragma omp parallel for num_threads(ctx.threads) schedule(dynamic, 1)
    for (int64_t h = 0; h < H; ++h) ProcessHead(serial, in, h, &results[h]);
  } else {
    // Few heads: parallelise inside each head instead.
    for (int64_t h = 0; h < H; ++h) ProcessHead(ctx, in, h, &results[h]);
  }
  double alpha_sum = 0;
  for (const HeadResult& r : results) {
    local.kept_blocks += r.kept_blocks;
    alpha_sum += r.alpha_sum;
  }
  local.alpha_mean = alpha_sum / static_cast<double>(H * T_m);
  if (stats) *stats = local;
}

}  // namespace sparsevid::kernels::sla2
