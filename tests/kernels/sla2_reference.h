// A naive SLA2 reference for the tests, written straight from
// docs/conventions.md: it materialises the full L x L token mask per head
// and evaluates both branches token by token (double precision, except the
// low-bit sparse branch, which follows the prescribed fp32 procedure).
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/sla2/low_bit.h"
#include "kernels/tensor.h"

namespace sparsevid::kernels::testing {

struct RefSla2Config {
  int64_t block_q = 128, block_k = 64;
  double keep_ratio = 0.03;
  std::vector<float> proj_q, proj_k;  // [d*d] or empty (identity)
  std::vector<float> alpha;           // [H*T_m] or empty (1)
  std::vector<uint8_t> mask;          // [H*T_m*T_n] or empty (router)
  bool low_bit = false;
};

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per head: returns smoothed K as the kernel forms it (mean in double,
// subtraction in float), so low-bit quantisation sees the same values.
inline std::vector<float> RefSmoothedK(const Tensor& k, int64_t h) {
  const int64_t L = k.dim(0), H = k.dim(1), d = k.dim(2);
  std::vector<double> mean(d, 0.0);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < d; ++c) mean[c] += k.f32()[(t * H + h) * d + c];
  std::vector<float> ks(L * d);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < d; ++c)
      ks[t * d + c] = k.f32()[(t * H + h) * d + c] - static_cast<float>(mean[c] / L);
  return ks;
}

// The router's block mask [H, T_m, T_n].
inline std::vector<uint8_t> RefRouterMask(const Tensor& q, const Tensor& k, const RefSla2Config& cfg) {
  const int64_t L = q.dim(0), H = q.dim(1), d = q.dim(2);
  const int64_t Tm = CeilDiv(L, cfg.block_q), Tn = CeilDiv(L, cfg.block_k);
  const int64_t keep = std::max<int64_t>(
      1, std::min<int64_t>(Tn, static_cast<int64_t>(std::floor(cfg.keep_ratio * Tn))));
  std::vector<uint8_t> mask(H * Tm * Tn, 0);
  auto project = [d](const std::vector<double>& x, const std::vector<float>& w) {
    if (w.empty()) return x;
    std::vector<double> y(d, 0.0);
    for (int64_t o = 0; o < d; ++o)
      for (int64_t c = 0; c < d; ++c) y[o] += x[c] * w[o * d + c];
    return y;
  };
  for (int64_t h = 0; h < H; ++h) {
    const std::vector<float> ks = RefSmoothedK(k, h);
    std::vector<std::vector<double>> pq(Tm), pk(Tn);
    for (int64_t i = 0; i < Tm; ++i) {
      std::vector<double> m(d, 0.0);
      const int64_t r0 = i * cfg.block_q, r1 = std::min(L, r0 + cfg.block_q);
      for (int64_t t = r0; t < r1; ++t)
        for (int64_t c = 0; c < d; ++c) m[c] += q.f32()[(t * H + h) * d + c] / double(r1 - r0);
      pq[i] = project(m, cfg.proj_q);
    }
    for (int64_t j = 0; j < Tn; ++j) {
      std::vector<double> m(d, 0.0);
      const int64_t r0 = j * cfg.block_k, r1 = std::min(L, r0 + cfg.block_k);
      for (int64_t t = r0; t < r1; ++t)
        for (int64_t c = 0; c < d; ++c) m[c] += ks[t * d + c] / double(r1 - r0);
      pk[j] = project(m, cfg.proj_k);
    }
    for (int64_t i = 0; i < Tm; ++i) {
      std::vector<double> score(Tn);
      for (int64_t j = 0; j < Tn; ++j)
        score[j] = std::inner_product(pq[i].begin(), pq[i].end(), pk[j].begin(), 0.0);
      std::vector<int64_t> order(Tn);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return score[a] > score[b]; });
      for (int64_t r = 0; r < keep; ++r) mask[(h * Tm + i) * Tn + order[r]] = 1;
    }
  }
  return mask;
}

inline std::vector<double> SoftmaxD(const float* x, int64_t d) {
  std::vector<double> p(d);
  double m = -1e300, s = 0;
  for (int64_t c = 0; c < d; ++c) m = std::max(m, double(x[c]));
  for (int64_t c = 0; c < d; ++c) s += (p[c] = std::exp(x[c] - m));
  for (double& v : p) v /= s;
  return p;
}

// O [L, H, d] of SLA2 per docs/conventions.md.
inline std::vector<double> RefSla2(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const RefSla2Config& cfg) {
  const int64_t L = q.dim(0), H = q.dim(1), d = q.dim(2);
  const int64_t Tm = CeilDiv(L, cfg.block_q), Tn = CeilDiv(L, cfg.block_k);
  const std::vector<uint8_t> mask = cfg.mask.empty() ? RefRouterMask(q, k, cfg) : cfg.mask;
  const double scale = 1.0 / std::sqrt(double(d));
  const float sqrt_d = static_cast<float>(std::sqrt(double(d)));  // as training/ (Python float)
  std::vector<double> out(L * H * d, 0.0);
  for (int64_t h = 0; h < H; ++h) {
    const std::vector<float> ks = RefSmoothedK(k, h);
    auto Q = [&](int64_t t, int64_t c) { return q.f32()[(t * H + h) * d + c]; };
    auto V = [&](int64_t t, int64_t c) { return v.f32()[(t * H + h) * d + c]; };
    auto kept = [&](int64_t t, int64_t s) {
      return mask[(h * Tm + t / cfg.block_q) * Tn + s / cfg.block_k] != 0;
    };
    std::vector<std::vector<double>> kphi(L);
    for (int64_t s = 0; s < L; ++s) kphi[s] = SoftmaxD(&ks[s * d], d);

    // Low-bit operands: INT8 Q per query block, INT8 K per key block, FP8 V per channel.
    std::vector<int8_t> q8(L * d), k8(L * d);
    std::vector<float> sq(Tm), sk(Tn), s_v(d, 0.f), v_hat(L * d);
    if (cfg.low_bit) {
      for (int64_t i = 0; i < Tm; ++i) {
        const int64_t r0 = i * cfg.block_q, r1 = std::min(L, r0 + cfg.block_q);
        float amax = 0;
        for (int64_t t = r0; t < r1; ++t)
          for (int64_t c = 0; c < d; ++c) amax = std::max(amax, std::fabs(Q(t, c)));
        sq[i] = amax > 0 ? amax / 127.f : 1.f;
        for (int64_t t = r0; t < r1; ++t)
          for (int64_t c = 0; c < d; ++c)
            q8[t * d + c] = static_cast<int8_t>(std::clamp(std::round(Q(t, c) / sq[i]), -127.f, 127.f));
      }
      for (int64_t j = 0; j < Tn; ++j) {
        const int64_t r0 = j * cfg.block_k, r1 = std::min(L, r0 + cfg.block_k);
        float amax = 0;
        for (int64_t t = r0; t < r1; ++t)
          for (int64_t c = 0; c < d; ++c) amax = std::max(amax, std::fabs(ks[t * d + c]));
        sk[j] = amax > 0 ? amax / 127.f : 1.f;
        for (int64_t t = r0; t < r1; ++t)
          for (int64_t c = 0; c < d; ++c)
            k8[t * d + c] = static_cast<int8_t>(std::clamp(std::round(ks[t * d + c] / sk[j]), -127.f, 127.f));
      }
      for (int64_t t = 0; t < L; ++t)
        for (int64_t c = 0; c < d; ++c) s_v[c] = std::max(s_v[c], std::fabs(V(t, c)));
      for (int64_t c = 0; c < d; ++c) s_v[c] = s_v[c] > 0 ? s_v[c] / 448.f : 1.f;
      for (int64_t t = 0; t < L; ++t)
        for (int64_t c = 0; c < d; ++c) v_hat[t * d + c] = sla2::RoundToFp8E4M3(V(t, c) / s_v[c]);
    }

    for (int64_t t = 0; t < L; ++t) {
      const int64_t i = t / cfg.block_q;
      const double a = cfg.alpha.empty() ? 1.0 : cfg.alpha[h * Tm + i];
      std::vector<double> os(d, 0.0), ol(d, 0.0);
      if (!cfg.low_bit) {
        std::vector<double> logit(L);
        double m = -1e300;
        for (int64_t s = 0; s < L; ++s) {
          if (!kept(t, s)) continue;
          double dot = 0;
          for (int64_t c = 0; c < d; ++c) dot += double(Q(t, c)) * ks[s * d + c];
          logit[s] = dot * scale;
          m = std::max(m, logit[s]);
        }
        double z = 0;
        for (int64_t s = 0; s < L; ++s)
          if (kept(t, s)) z += std::exp(logit[s] - m);
        for (int64_t s = 0; s < L; ++s) {
          if (!kept(t, s)) continue;
          const double p = std::exp(logit[s] - m) / z;
          for (int64_t c = 0; c < d; ++c) os[c] += p * V(s, c);
        }
      } else {
        // Kept key blocks in ascending order, online softmax per block.
        float m = -std::numeric_limits<float>::infinity(), l = 0.f;
        std::vector<float> acc(d, 0.f);
        for (int64_t j = 0; j < Tn; ++j) {
          if (!mask[(h * Tm + i) * Tn + j]) continue;
          const int64_t s0 = j * cfg.block_k, s1 = std::min(L, s0 + cfg.block_k);
          std::vector<float> S(s1 - s0);
          float mb = -std::numeric_limits<float>::infinity();
          for (int64_t s = s0; s < s1; ++s) {
            int32_t dot = 0;
            for (int64_t c = 0; c < d; ++c) dot += int32_t(q8[t * d + c]) * k8[s * d + c];
            S[s - s0] = float(dot) * sq[i] * sk[j] / sqrt_d;
            mb = std::max(mb, S[s - s0]);
          }
          const float m_new = std::max(m, mb);
          const float r = std::exp(m - m_new);
          for (float& x : acc) x *= r;
          l *= r;
          for (int64_t s = s0; s < s1; ++s) {
            const float p = std::exp(S[s - s0] - m_new);
            l += p;
            const float ph = sla2::RoundToFp8E4M3(p * 448.f);
            for (int64_t c = 0; c < d; ++c) acc[c] += ph * v_hat[s * d + c];
          }
          m = m_new;
        }
        if (l > 0)
          for (int64_t c = 0; c < d; ++c) os[c] = double(acc[c]) * s_v[c] / (448.0 * l);
      }
      if (a != 1.0) {
        const std::vector<double> qphi = SoftmaxD(&q.f32()[(t * H + h) * d], d);
        double den = 0;
        for (int64_t s = 0; s < L; ++s) {
          if (kept(t, s)) continue;
          const double w = std::inner_product(qphi.begin(), qphi.end(), kphi[s].begin(), 0.0);
          den += w;
          for (int64_t c = 0; c < d; ++c) ol[c] += w * V(s, c);
        }
        for (int64_t c = 0; c < d; ++c) ol[c] = den > 0 ? ol[c] / den : 0.0;
      }
      for (int64_t c = 0; c < d; ++c) out[(t * H + h) * d + c] = a * os[c] + (1 - a) * ol[c];
    }
  }
  return out;
}

}  // namespace sparsevid::kernels::testing
