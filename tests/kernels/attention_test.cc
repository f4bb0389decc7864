// Dense attention against the textbook formula in double.
// Tolerance: logits are O(1); f32 sgemm + softmax over <= 2000 keys agree
// with double to ~1e-6, so 2e-5 absolute on O(1) outputs is safe.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "test_util.h"

namespace sparsevid::kernels {
namespace {

using testing::ExpectClose;
using testing::RandomTensor;

std::vector<double> NaiveAttention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                                   const Tensor* bias, int64_t key_valid) {
  const int64_t Lq = q.dim(0), H = q.dim(1), d = q.dim(2), Lk = k.dim(0);
  const int64_t nk = key_valid < 0 ? Lk : key_valid;
  std::vector<double> out(Lq * H * d, 0.0), logit(Lk);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < Lq; ++i) {
      double m = -1e300;
      for (int64_t j = 0; j < nk; ++j) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += double(q.f32()[(i * H + h) * d + c]) * k.f32()[(j * H + h) * d + c];
        s *= scale;
        if (bias) s += bias->f32()[(h * Lq + i) * Lk + j];
        logit[j] = s;
        m = std::max(m, s);
      }
      double z = 0;
      for (int64_t j = 0; j < nk; ++j) z += std::exp(logit[j] - m);
      for (int64_t j = 0; j < nk; ++j) {
        const double p = std::exp(logit[j] - m) / z;
        for (int64_t c = 0; c < d; ++c) out[(i * H + h) * d + c] += p * v.f32()[(j * H + h) * d + c];
      }
    }
  return out;
}

class AttentionTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = CreateCpuBackend(2);
};

TEST_F(AttentionTest, MatchesNaive) {
  struct Case { int64_t Lq, Lk, H, d; bool bias; int64_t key_valid; };
  for (const Case& c : {Case{1, 1, 1, 1, false, -1}, Case{37, 53, 3, 7, false, -1},
                        Case{64, 29, 2, 16, true, -1}, Case{21, 40, 2, 8, false, 33},
                        Case{1500, 40, 1, 8, true, 17}}) {  // many 256-row tiles, H = 1
    Tensor q = RandomTensor({c.Lq, c.H, c.d}, 50, -2, 2), k = RandomTensor({c.Lk, c.H, c.d}, 51, -2, 2);
    Tensor v = RandomTensor({c.Lk, c.H, c.d}, 52), b = RandomTensor({c.H, c.Lq, c.Lk}, 53);
    Tensor out = be_->Empty({c.Lq, c.H, c.d});
    const float scale = 1.f / std::sqrt(static_cast<float>(c.d));
    be_->Attention(q, k, v, scale, c.bias ? &b : nullptr, c.key_valid, out);
    ExpectClose(out.ToVector(), NaiveAttention(q, k, v, scale, c.bias ? &b : nullptr, c.key_valid),
                2e-5, 1e-5, "attention");
  }
}

TEST_F(AttentionTest, AllKeysMaskedGivesZero) {
  Tensor q = RandomTensor({3, 1, 4}, 54), k = RandomTensor({5, 1, 4}, 55), v = RandomTensor({5, 1, 4}, 56);
  Tensor out = be_->Empty({3, 1, 4});
  be_->Attention(q, k, v, 0.5f, nullptr, 0, out);
  EXPECT_EQ(out.ToVector(), std::vector<float>(12, 0.f));
}

TEST_F(AttentionTest, BadShapesStop) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor q = be_->Zeros({3, 2, 4}), k = be_->Zeros({5, 2, 8}), out = be_->Empty({3, 2, 4});
  EXPECT_DEATH(be_->Attention(q, k, k, 1.f, nullptr, -1, out), "Attention: q \\[3, 2, 4\\] k \\[5, 2, 8\\]");
  Tensor k2 = be_->Zeros({5, 2, 4});
  EXPECT_DEATH(be_->Attention(q, k2, k2, 1.f, nullptr, 6, out), "key_valid 6 for 5 keys");
}

}  // namespace
}  // namespace sparsevid::kernels
