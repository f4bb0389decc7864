#include "tests/cuda/sla2_reference.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sparsevid::kernels::cuda::testing {
namespace {

constexpr double kFp8Max = 448.0;

using Matrix = std::vector<double>;  // row-major

// Rows of one (b, h) slice as double [L][D].
Matrix Slice(const RefProblem& p, const std::vector<float>& x, int b, int h) {
  Matrix m(static_cast<size_t>(p.seq_len) * p.head_dim);
  for (int64_t l = 0; l < p.seq_len; ++l)
    for (int c = 0; c < p.head_dim; ++c) m[l * p.head_dim + c] = x[p.index(b, l, h, c)];
  return m;
}

Matrix SmoothK(const RefProblem& p, const Matrix& k) {
  const int D = p.head_dim;
  std::vector<double> mu(D, 0.0);
  for (int64_t l = 0; l < p.seq_len; ++l)
    for (int c = 0; c < D; ++c) mu[c] += k[l * D + c];
  for (double& m : mu) m /= static_cast<double>(p.seq_len);
  Matrix ks(k.size());
  // fp32 like the GPU (K~ feeds the INT8 quantiser).
  for (int64_t l = 0; l < p.seq_len; ++l)
    for (int c = 0; c < D; ++c)
      ks[l * D + c] = static_cast<float>(static_cast<float>(k[l * D + c]) - static_cast<float>(mu[c]));
  return ks;
}

Matrix Pool(const RefProblem& p, const Matrix& x, int block) {
  const int D = p.head_dim;
  const int t = static_cast<int>((p.seq_len + block - 1) / block);
  Matrix out(static_cast<size_t>(t) * D, 0.0);
  for (int i = 0; i < t; ++i) {
    const int64_t r0 = static_cast<int64_t>(i) * block;
    const int64_t r1 = std::min<int64_t>(p.seq_len, r0 + block);
    for (int64_t r = r0; r < r1; ++r)
      for (int c = 0; c < D; ++c) out[i * D + c] += x[r * D + c];
    for (int c = 0; c < D; ++c) out[i * D + c] /= static_cast<double>(r1 - r0);
  }
  return out;
}

Matrix Project(const Matrix& x, const std::vector<float>* w, int D) {
  if (w == nullptr) return x;
  Matrix y(x.size(), 0.0);
  const size_t rows = x.size() / D;
  for (size_t r = 0; r < rows; ++r)
    for (int o = 0; o < D; ++o) {
      double s = 0.0;
      for (int c = 0; c < D; ++c) s += x[r * D + c] * (*w)[o * D + c];
      y[r * D + o] = s;
    }
  return y;
}

Matrix FeatureMap(const RefProblem& p, const Matrix& x) {  // softmax over channels
  const int D = p.head_dim;
  Matrix out(x.size());
  for (int64_t l = 0; l < p.seq_len; ++l) {
    double m = -INFINITY, s = 0.0;
    for (int c = 0; c < D; ++c) m = std::max(m, x[l * D + c]);
    for (int c = 0; c < D; ++c) s += (out[l * D + c] = std::exp(x[l * D + c] - m));
    for (int c = 0; c < D; ++c) out[l * D + c] /= s;
  }
  return out;
}

// INT8 per row block: integer values and per-row scale.
void QuantInt8(const RefProblem& p, const Matrix& x, int block, Matrix& qi,
               std::vector<double>& row_scale) {
  const int D = p.head_dim;
  qi.assign(x.size(), 0.0);
  row_scale.assign(p.seq_len, 1.0);
  for (int64_t r0 = 0; r0 < p.seq_len; r0 += block) {
    const int64_t r1 = std::min<int64_t>(p.seq_len, r0 + block);
    float amax = 0.f;
    for (int64_t i = r0 * D; i < r1 * D; ++i) amax = std::max(amax, std::fabs(static_cast<float>(x[i])));
    const float s = Int8Scale(amax);
    for (int64_t r = r0; r < r1; ++r) {
      row_scale[r] = s;
      for (int c = 0; c < D; ++c) qi[r * D + c] = RoundToInt8(static_cast<float>(x[r * D + c]) / s);
    }
  }
}

}  // namespace

int RefProblem::keep_count() const {
  const int tn = k_blocks();
  const int k = static_cast<int>(std::floor(static_cast<double>(keep_ratio) * tn));
  return std::max(1, std::min(tn, k));
}

float Int8Scale(float amax) { return amax > 0.f ? amax / 127.f : 1.f; }
float RoundToInt8(float y) { return std::clamp(std::round(y), -127.f, 127.f); }  // half away from 0
float Fp8Scale(float amax) { return amax > 0.f ? amax / 448.f : 1.f; }

float RoundToE4m3(float x) {
  const float a = std::fabs(x);
  if (a >= 448.f) return std::copysign(448.f, x);
  // Spacing: 2^(e-3) for normals (e >= -6), 2^-9 for subnormals.
  const int e = a > 0.f ? std::max(-6, static_cast<int>(std::floor(std::log2(a)))) : -6;
  const float step = std::ldexp(1.f, e - 3);
  const float r = std::nearbyint(a / step) * step;  // ties to even
  return std::copysign(std::min(r, 448.f), x);
}

BlockMask RouteReference(const RefProblem& p, const std::vector<float>& q,
                         const std::vector<float>& k, std::vector<double>* scores) {
  const int D = p.head_dim, tm = p.q_blocks(), tn = p.k_blocks(), keep = p.keep_count();
  BlockMask mask(static_cast<size_t>(p.batch) * p.heads * tm * tn, 0);
  if (scores) scores->assign(mask.size(), 0.0);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.heads; ++h) {
      const Matrix qb = Project(Pool(p, Slice(p, q, b, h), p.block_q), p.proj_q, D);
      const Matrix kb = Project(Pool(p, SmoothK(p, Slice(p, k, b, h)), p.block_k), p.proj_k, D);
      const size_t base = (static_cast<size_t>(b) * p.heads + h) * tm * tn;
      for (int i = 0; i < tm; ++i) {
        std::vector<double> s(tn);
        for (int j = 0; j < tn; ++j) {
          double acc = 0.0;
          for (int c = 0; c < D; ++c) acc += qb[i * D + c] * kb[j * D + c];
          s[j] = acc;
          if (scores) (*scores)[base + i * tn + j] = acc;
        }
        std::vector<int> order(tn);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return s[a] > s[c]; });
        for (int r = 0; r < keep; ++r) mask[base + i * tn + order[r]] = 1;
      }
    }
  return mask;
}

std::vector<float> Sla2Reference(const RefProblem& p, const std::vector<float>& q,
                                 const std::vector<float>& k, const std::vector<float>& v,
                                 const BlockMask& mask) {
  const int D = p.head_dim, tm = p.q_blocks(), tn = p.k_blocks();
  const int64_t L = p.seq_len;
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(D));
  std::vector<float> out(q.size(), 0.f);
  for (int b = 0; b < p.batch; ++b)
    for (int h = 0; h < p.heads; ++h) {
      const Matrix qs = Slice(p, q, b, h);
      const Matrix ks = SmoothK(p, Slice(p, k, b, h));
      const Matrix vs = Slice(p, v, b, h);
      const uint8_t* m = mask.data() + (static_cast<size_t>(b) * p.heads + h) * tm * tn;

      // Low-bit operands.
      Matrix qi, ki, vhat;
      std::vector<double> sq, sk, sv(D, 1.0);
      if (p.low_bit) {
        QuantInt8(p, qs, p.block_q, qi, sq);
        QuantInt8(p, ks, p.block_k, ki, sk);
        for (int c = 0; c < D; ++c) {
          float amax = 0.f;
          for (int64_t l = 0; l < L; ++l) amax = std::max(amax, std::fabs(static_cast<float>(vs[l * D + c])));
          sv[c] = Fp8Scale(amax);
        }
        vhat.resize(vs.size());
        for (int64_t l = 0; l < L; ++l)
          for (int c = 0; c < D; ++c)
            vhat[l * D + c] = RoundToE4m3(static_cast<float>(vs[l * D + c]) / static_cast<float>(sv[c]));
      }

      // Linear-branch states per key block.
      const Matrix qphi = FeatureMap(p, qs);
      const Matrix kphi = FeatureMap(p, ks);
      std::vector<Matrix> hj(tn, Matrix(static_cast<size_t>(D) * D, 0.0));
      std::vector<std::vector<double>> zj(tn, std::vector<double>(D, 0.0));
      for (int64_t l = 0; l < L; ++l) {
        const int j = static_cast<int>(l / p.block_k);
        for (int c = 0; c < D; ++c) {
          zj[j][c] += kphi[l * D + c];
          for (int e = 0; e < D; ++e) hj[j][c * D + e] += kphi[l * D + c] * vs[l * D + e];
        }
      }

      for (int i = 0; i < tm; ++i) {
        std::vector<int> kept;
        Matrix hsum(static_cast<size_t>(D) * D, 0.0);
        std::vector<double> zsum(D, 0.0);
        for (int j = 0; j < tn; ++j) {
          if (m[i * tn + j]) {
            kept.push_back(j);
          } else {
            for (size_t x = 0; x < hsum.size(); ++x) hsum[x] += hj[j][x];
            for (int c = 0; c < D; ++c) zsum[c] += zj[j][c];
          }
        }
        const double alpha = p.alpha ? (*p.alpha)[h * tm + i] : 1.0;
        const int64_t r0 = static_cast<int64_t>(i) * p.block_q;
        const int64_t r1 = std::min<int64_t>(L, r0 + p.block_q);
        for (int64_t r = r0; r < r1; ++r) {
          std::vector<double> os(D, 0.0);
          if (!kept.empty() && !p.low_bit) {
            std::vector<double> logits;
            std::vector<int64_t> keys;
            for (int j : kept)
              for (int64_t t = j * int64_t{p.block_k}; t < std::min<int64_t>(L, (j + 1) * int64_t{p.block_k}); ++t) {
                double s = 0.0;
                for (int c = 0; c < D; ++c) s += qs[r * D + c] * ks[t * D + c];
                logits.push_back(s * inv_sqrt_d);
                keys.push_back(t);
              }
            const double mx = *std::max_element(logits.begin(), logits.end());
            double l = 0.0;
            for (double& x : logits) l += (x = std::exp(x - mx));
            for (size_t n = 0; n < keys.size(); ++n)
              for (int c = 0; c < D; ++c) os[c] += logits[n] / l * vs[keys[n] * D + c];
          } else if (!kept.empty()) {
            // Online softmax in ascending block order, P^ quantised against
            // the running max of its block (conventions.md "Low-bit").
            double m_run = -INFINITY, l = 0.0;
            std::vector<double> acc(D, 0.0);
            for (int j : kept) {
              const int64_t t0 = j * int64_t{p.block_k};
              const int64_t t1 = std::min<int64_t>(L, t0 + p.block_k);
              std::vector<float> s(t1 - t0);
              float bmax = -INFINITY;
              for (int64_t t = t0; t < t1; ++t) {
                double dot = 0.0;
                for (int c = 0; c < D; ++c) dot += qi[r * D + c] * ki[t * D + c];
                s[t - t0] = static_cast<float>(dot * sq[r] * sk[t] * inv_sqrt_d);
                bmax = std::max(bmax, s[t - t0]);
              }
              const double m_new = std::max(m_run, static_cast<double>(bmax));
              const double rescale = std::exp(m_run - m_new);
              l *= rescale;
              for (double& a : acc) a *= rescale;
              for (int64_t t = t0; t < t1; ++t) {
                const double pv = std::exp(s[t - t0] - m_new);
                l += pv;
                const double phat = RoundToE4m3(static_cast<float>(pv * kFp8Max));
                for (int c = 0; c < D; ++c) acc[c] += phat * vhat[t * D + c];
              }
              m_run = m_new;
            }
            for (int c = 0; c < D; ++c) os[c] = acc[c] * sv[c] / (kFp8Max * l);
          }
          // Linear branch over the blocks not kept.
          std::vector<double> ol(D, 0.0);
          double den = 0.0;
          for (int c = 0; c < D; ++c) den += qphi[r * D + c] * zsum[c];
          if (den > 0.0 && static_cast<int>(kept.size()) < tn) {
            for (int c = 0; c < D; ++c) {
              const double w = qphi[r * D + c];
              for (int e = 0; e < D; ++e) ol[e] += w * hsum[c * D + e];
            }
            for (double& x : ol) x /= den;
          }
          for (int c = 0; c < D; ++c)
            out[p.index(b, r, h, c)] = static_cast<float>(alpha * os[c] + (1.0 - alpha) * ol[c]);
        }
      }
    }
  return out;
}

}  // namespace sparsevid::kernels::cuda::testing
