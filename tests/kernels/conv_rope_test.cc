// Conv3d and 3-D RoPE against direct scalar formulas (double).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "test_util.h"

namespace sparsevid::kernels {
namespace {

using testing::ExpectClose;
using testing::RandomTensor;

std::vector<double> NaiveConv3d(const Tensor& x, const Tensor& w, const Tensor* bias, int ph,
                                int pw) {
  const int64_t C = x.dim(0), T = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = w.dim(0), kt = w.dim(2), kh = w.dim(3), kw = w.dim(4);
  const int64_t To = T - kt + 1, Ho = H + 2 * ph - kh + 1, Wo = W + 2 * pw - kw + 1;
  std::vector<double> y(O * To * Ho * Wo);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t t = 0; t < To; ++t)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          double s = bias ? bias->f32()[o] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t a = 0; a < kt; ++a)
              for (int64_t b = 0; b < kh; ++b)
                for (int64_t e = 0; e < kw; ++e) {
                  const int64_t yy = i + b - ph, xx = j + e - pw;
                  if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                  s += double(x.f32()[((c * T + t + a) * H + yy) * W + xx]) *
                       w.f32()[(((o * C + c) * kt + a) * kh + b) * kw + e];
                }
          y[((o * To + t) * Ho + i) * Wo + j] = s;
        }
  return y;
}

class ConvRopeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = CreateCpuBackend(2);
};

// Sums of up to a few thousand products of O(1) values: f32 sgemm vs double
// agree to ~1e-5 relative of the sum's magnitude; 1e-4 absolute is safe.
TEST_F(ConvRopeTest, Conv3dMatchesDirectSum) {
  struct Case { int64_t C, T, H, W, O, kt, kh, kw; int ph, pw; bool bias; };
  for (const Case& c : {Case{3, 5, 7, 6, 4, 3, 3, 3, 1, 1, true}, Case{2, 1, 4, 5, 3, 1, 3, 1, 1, 0, false},
                        Case{5, 2, 3, 3, 6, 1, 1, 1, 0, 0, true}, Case{4, 4, 6, 9, 2, 2, 1, 3, 0, 2, true}}) {
    Tensor x = RandomTensor({c.C, c.T, c.H, c.W}, 40), w = RandomTensor({c.O, c.C, c.kt, c.kh, c.kw}, 41);
    Tensor b = RandomTensor({c.O}, 42);
    const int64_t To = c.T - c.kt + 1, Ho = c.H + 2 * c.ph - c.kh + 1, Wo = c.W + 2 * c.pw - c.kw + 1;
    Tensor y = be_->Empty({c.O, To, Ho, Wo});
    be_->Conv3d(x, w, c.bias ? &b : nullptr, c.ph, c.pw, y);
    ExpectClose(y.ToVector(), NaiveConv3d(x, w, c.bias ? &b : nullptr, c.ph, c.pw), 1e-4, 1e-5, "conv3d");
  }
}

// Large enough that each frame's output is split into many pixel tiles.
TEST_F(ConvRopeTest, Conv3dChunkedColumns) {
  const int64_t C = 64, T = 3, H = 100, W = 100, O = 3;
  Tensor x = RandomTensor({C, T, H, W}, 43), w = RandomTensor({O, C, 3, 3, 3}, 44, -0.1f, 0.1f);
  Tensor y = be_->Empty({O, 1, H, W});
  be_->Conv3d(x, w, nullptr, 1, 1, y);
  ExpectClose(y.ToVector(), NaiveConv3d(x, w, nullptr, 1, 1), 1e-4, 1e-5, "conv3d chunked");
}

// Several frames, each split into pixel tiles that start and end inside an
// output row, with padding wider than some kernel offsets (zeros at both
// ends of a tile's rows).
TEST_F(ConvRopeTest, Conv3dTilesCrossRows) {
  const int64_t C = 40, T = 4, H = 13, W = 37, O = 5;  // K = 720: 352-pixel tiles, 507 per frame
  Tensor x = RandomTensor({C, T, H, W}, 45), w = RandomTensor({O, C, 2, 3, 3}, 46, -0.1f, 0.1f);
  Tensor b = RandomTensor({O}, 47);
  const int64_t To = T - 1, Ho = H, Wo = W + 2 * 2 - 3 + 1;
  Tensor y = be_->Empty({O, To, Ho, Wo});
  be_->Conv3d(x, w, &b, 1, 2, y);
  ExpectClose(y.ToVector(), NaiveConv3d(x, w, &b, 1, 2), 1e-4, 1e-5, "conv3d tiles");
}

TEST_F(ConvRopeTest, Conv3dBadShapeStops) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor x = be_->Zeros({3, 2, 4, 4}), w = be_->Zeros({2, 3, 3, 3, 3}), y = be_->Empty({2, 1, 4, 4});
  EXPECT_DEATH(be_->Conv3d(x, w, nullptr, 1, 1, y), "larger than padded input");
}

// Wan rope: pairs (2j, 2j+1), axis split t: d/2 - 2(d/6), h, w: d/6 pairs,
// frequency 10000^(-2k/axis_dim) with axis_dim = 2 * pairs of that axis.
TEST_F(ConvRopeTest, Rope3dMatchesWanFormula) {
  for (int64_t d : {128, 64, 12}) {
    const TokenGrid grid{3, 4, 5};
    const int64_t L = grid.tokens(), H = 2;
    Tensor x = RandomTensor({L, H, d}, 45);
    Tensor y = x.Clone();
    be_->Rope3d(y, grid);
    const int64_t ph = d / 6, pt = d / 2 - 2 * ph;
    std::vector<double> ref(x.numel());
    for (int64_t n = 0; n < L; ++n) {
      const int64_t f = n / (grid.height * grid.width), hh = (n / grid.width) % grid.height,
                    ww = n % grid.width;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t j = 0; j < d / 2; ++j) {
          double theta;
          if (j < pt) theta = f * std::pow(10000.0, -2.0 * j / (2 * pt));
          else if (j < pt + ph) theta = hh * std::pow(10000.0, -2.0 * (j - pt) / (2 * ph));
          else theta = ww * std::pow(10000.0, -2.0 * (j - pt - ph) / (2 * ph));
          const float* v = x.f32() + (n * H + h) * d;
          ref[(n * H + h) * d + 2 * j] = v[2 * j] * std::cos(theta) - v[2 * j + 1] * std::sin(theta);
          ref[(n * H + h) * d + 2 * j + 1] = v[2 * j] * std::sin(theta) + v[2 * j + 1] * std::cos(theta);
        }
    }
    ExpectClose(y.ToVector(), ref, 1e-6, 1e-6, "rope");
  }
}

}  // namespace
}  // namespace sparsevid::kernels
