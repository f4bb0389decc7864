#include "worker/engine/unipc_sampler.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"

namespace sparsevid::engine {

float UniPcSampler::Lambda(int i) const {
  const float sigma = schedule_.sigmas[i];
  const float alpha = 1.0f - sigma;
  return std::log(alpha) - std::log(sigma);
}

void UniPcSampler::Step(int i, const std::vector<float>& v, std::vector<float>& x) {
  SV_CHECK(i == next_step_ && i < schedule_.steps() && v.size() == x.size(),
           "UniPC steps must be taken in order");
  ++next_step_;
  const size_t n = x.size();
  const auto& sig = schedule_.sigmas;
  const int num_steps = schedule_.steps();

  // x0 prediction at the (uncorrected) sample.
  std::vector<float> m_i(n);
  for (size_t k = 0; k < n; ++k) m_i[k] = x[k] - sig[i] * v[k];

  // 1. Corrector (UniC, bh2) on the previous predictor's output.
  if (i > 0) {
    const float sigma_t = sig[i], sigma_s0 = sig[i - 1];
    const float alpha_t = 1.0f - sigma_t;
    const float h = Lambda(i) - Lambda(i - 1);
    const float hh = -h;
    const float phi = std::expm1(hh);  // h_phi_1
    const float b_h = phi;             // bh2
    const std::vector<float>& m0 = m_.back();
    float rho_d1 = 0.0f, rho_t = 0.5f;
    float r = 0.0f;
    if (this_order_ == 2) {
      r = (Lambda(i - 2) - Lambda(i - 1)) / h;
      float h_phi_k = phi / hh - 1.0f;
      const float b1 = h_phi_k / b_h;
      h_phi_k = h_phi_k / hh - 0.5f;
      const float b2 = h_phi_k * 2.0f / b_h;
      // [[1, 1], [r, 1]] rho = [b1, b2]
      const float det = 1.0f - r;
      rho_d1 = (b1 - b2) / det;
      rho_t = (b2 - r * b1) / det;
    }
    const float c_x = sigma_t / sigma_s0;
    const float c_m = alpha_t * phi;
    const float c_b = alpha_t * b_h;
    for (size_t k = 0; k < n; ++k) {
      const float x_t_ = c_x * last_sample_[k] - c_m * m0[k];
      float corr = 0.0f;
      if (this_order_ == 2) corr = rho_d1 * ((m_[0][k] - m0[k]) / r);
      const float d1_t = m_i[k] - m0[k];
      x[k] = x_t_ - c_b * (corr + rho_t * d1_t);
    }
  }

  // 2. History and order.
  m_.push_back(std::move(m_i));
  while (m_.size() > 2) m_.pop_front();
  this_order_ = std::min({2, num_steps - i, lower_order_nums_ + 1});
  last_sample_ = x;

  // 3. Predictor (UniP, bh2).
  const std::vector<float>& m0 = m_.back();
  if (sig[i + 1] == 0.0f) {
    // λ = +inf at σ = 0: the step lands on the x0 prediction.
    x = m0;
  } else {
    const float sigma_t = sig[i + 1], sigma_s0 = sig[i];
    const float alpha_t = 1.0f - sigma_t;
    const float h = Lambda(i + 1) - Lambda(i);
    const float phi = std::expm1(-h);
    const float c_x = sigma_t / sigma_s0;
    const float c_m = alpha_t * phi;
    if (this_order_ == 1) {
      for (size_t k = 0; k < n; ++k) x[k] = c_x * x[k] - c_m * m0[k];
    } else {
      const float r = (Lambda(i - 1) - Lambda(i)) / h;
      const std::vector<float>& m1 = m_[0];
      for (size_t k = 0; k < n; ++k) {
        const float d1 = (m1[k] - m0[k]) / r;
        x[k] = c_x * x[k] - c_m * m0[k] - c_m * (0.5f * d1);
      }
    }
  }
  lower_order_nums_ = std::min(lower_order_nums_ + 1, 2);
}

}  // namespace sparsevid::engine
