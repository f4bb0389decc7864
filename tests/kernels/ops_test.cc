// Every generic op against a plain scalar reference computed in double.
// Tolerances: f32 results of short sums (<= a few hundred terms) agree with
// a double reference to ~1e-6 relative; 1e-5 leaves room for the BLAS
// summation order and for transcendental functions (exp, tanh).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "kernels/cpu/fast_exp.h"
#include "test_util.h"

namespace sparsevid::kernels {
namespace {

using testing::ExpectClose;
using testing::RandomTensor;

class OpsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = CreateCpuBackend(2);
};

// The default span timer: wall clock over spans, taken and reset.
TEST_F(OpsTest, SpanTimerAddsSpansAndResetsWhenTaken) {
  std::unique_ptr<SpanTimer> timer = be_->NewSpanTimer();
  Tensor x = Tensor::FromVector(std::vector<float>(256 * 256, 0.5f), {256, 256});
  Tensor y = Tensor::Empty({256, 256});
  for (int i = 0; i < 2; ++i) {
    timer->Begin();
    be_->Linear(x, x, nullptr, y);
    timer->End();
  }
  const double seconds = timer->TakeSeconds();
  EXPECT_GT(seconds, 0.0);
  EXPECT_LT(seconds, 60.0);
  EXPECT_EQ(timer->TakeSeconds(), 0.0);
}

TEST_F(OpsTest, LinearMatchesScalarReference) {
  for (auto [m, n, k] : {std::tuple{1, 1, 1}, std::tuple{7, 13, 5}, std::tuple{37, 19, 65}}) {
    Tensor x = RandomTensor({m, k}, 1), w = RandomTensor({n, k}, 2), b = RandomTensor({n}, 3);
    Tensor y = be_->Empty({m, n});
    be_->Linear(x, w, &b, y);
    std::vector<double> ref(m * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = b.f32()[j];
        for (int c = 0; c < k; ++c) s += double(x.f32()[i * k + c]) * w.f32()[j * k + c];
        ref[i * n + j] = s;
      }
    ExpectClose(y.ToVector(), ref, 1e-5, 1e-5, "linear");
    Tensor y2 = be_->Empty({m, n});
    be_->Linear(x, w, nullptr, y2);
    for (int i = 0; i < m * n; ++i) ref[i] -= b.f32()[i % n];
    ExpectClose(y2.ToVector(), ref, 1e-5, 1e-5, "linear no bias");
  }
}

// Shapes large enough that Linear's GEMM is split over the two threads: by
// rows of the output (200 x 600 x 64), by columns (96 x 1000 x 128: fewer
// copies of the smaller operand), and a row count that leaves a short last
// slab (20 x 3000 x 64).
TEST_F(OpsTest, LinearSplitOverThreadsMatchesScalarReference) {
  for (auto [m, n, k] : {std::tuple{200, 600, 64}, std::tuple{96, 1000, 128}, std::tuple{20, 3000, 64}}) {
    Tensor x = RandomTensor({m, k}, 4), w = RandomTensor({n, k}, 5);
    Tensor y = be_->Empty({m, n});
    be_->Linear(x, w, nullptr, y);
    std::vector<double> ref(static_cast<size_t>(m) * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int c = 0; c < k; ++c) s += double(x.f32()[i * k + c]) * w.f32()[j * k + c];
        ref[static_cast<size_t>(i) * n + j] = s;
      }
    ExpectClose(y.ToVector(), ref, 1e-4, 1e-5, "linear split");
  }
}

TEST_F(OpsTest, LinearWithHalfPrecisionWeights) {
  const int m = 9, n = 11, k = 23;
  Tensor x = RandomTensor({m, k}, 4), w = RandomTensor({n, k}, 5);
  for (DType dt : {DType::kBF16, DType::kF16}) {
    Tensor wh = be_->Empty({n, k}, dt);
    for (int i = 0; i < n * k; ++i)
      wh.data<uint16_t>()[i] = dt == DType::kBF16 ? FloatToBf16(w.f32()[i]) : FloatToF16(w.f32()[i]);
    Tensor wf = be_->ToF32(wh);  // the exact f32 value of each rounded weight
    Tensor y = be_->Empty({m, n});
    be_->Linear(x, wh, nullptr, y);
    std::vector<double> ref(m * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int c = 0; c < k; ++c) s += double(x.f32()[i * k + c]) * wf.f32()[j * k + c];
        ref[i * n + j] = s;
      }
    ExpectClose(y.ToVector(), ref, 1e-5, 1e-5, DTypeName(dt));
  }
}

TEST_F(OpsTest, LinearShapeMismatchStops) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor x = be_->Zeros({3, 4}), w = be_->Zeros({5, 6}), y = be_->Empty({3, 5});
  EXPECT_DEATH(be_->Linear(x, w, nullptr, y), "Linear: x \\[3, 4\\] vs weight \\[5, 6\\]");
}

TEST_F(OpsTest, Norms) {
  const int rows = 5, d = 33;
  Tensor x = RandomTensor({rows, d}, 6, -2, 3), g = RandomTensor({d}, 7), b = RandomTensor({d}, 8);
  Tensor y = be_->Empty({rows, d});
  const float eps = 1e-6f;
  be_->LayerNorm(x, &g, &b, eps, y);
  std::vector<double> ref(rows * d), ref_plain(rows * d), ref_rms(rows * d);
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0, sq = 0;
    for (int i = 0; i < d; ++i) mean += x.f32()[r * d + i];
    mean /= d;
    for (int i = 0; i < d; ++i) {
      const double c = x.f32()[r * d + i] - mean;
      var += c * c;
      sq += double(x.f32()[r * d + i]) * x.f32()[r * d + i];
    }
    var /= d;
    for (int i = 0; i < d; ++i) {
      const double n = (x.f32()[r * d + i] - mean) / std::sqrt(var + eps);
      ref[r * d + i] = n * g.f32()[i] + b.f32()[i];
      ref_plain[r * d + i] = n;
      ref_rms[r * d + i] = x.f32()[r * d + i] / std::sqrt(sq / d + eps) * g.f32()[i];
    }
  }
  ExpectClose(y.ToVector(), ref, 1e-5, 1e-5, "layernorm");
  be_->LayerNorm(x, nullptr, nullptr, eps, y);
  ExpectClose(y.ToVector(), ref_plain, 1e-5, 1e-5, "layernorm plain");
  be_->RmsNorm(x, &g, eps, y);
  ExpectClose(y.ToVector(), ref_rms, 1e-5, 1e-5, "rmsnorm");
  // In place.
  Tensor xc = x.Clone();
  be_->RmsNorm(xc, &g, eps, xc);
  ExpectClose(xc.ToVector(), ref_rms, 1e-5, 1e-5, "rmsnorm in place");
}

TEST_F(OpsTest, ChannelRmsNorm) {
  const int C = 7, T = 2, H = 3, W = 5, P = T * H * W;
  Tensor x = RandomTensor({C, T, H, W}, 9), g = RandomTensor({C}, 10);
  Tensor y = be_->Empty({C, T, H, W});
  be_->ChannelRmsNorm(x, g, y);
  std::vector<double> ref(C * P);
  for (int p = 0; p < P; ++p) {
    double sq = 0;
    for (int c = 0; c < C; ++c) sq += double(x.f32()[c * P + p]) * x.f32()[c * P + p];
    for (int c = 0; c < C; ++c)
      ref[c * P + p] = x.f32()[c * P + p] / std::max(std::sqrt(sq), 1e-12) * std::sqrt(C) * g.f32()[c];
  }
  ExpectClose(y.ToVector(), ref, 1e-5, 1e-5, "channel rms");
  // A zero column stays zero (the 1e-12 clamp, no NaN).
  Tensor z = be_->Zeros({C, 1, 1, 1}), zy = be_->Empty({C, 1, 1, 1});
  be_->ChannelRmsNorm(z, g, zy);
  EXPECT_EQ(zy.ToVector(), std::vector<float>(C, 0.f));
}

TEST_F(OpsTest, Elementwise) {
  const int n = 1000;  // crosses no parallel grain; see LargeElementwise
  Tensor a = RandomTensor({n}, 11, -4, 4), b = RandomTensor({n}, 12, -4, 4);
  Tensor y = be_->Empty({n});
  std::vector<double> ref(n);
  auto check = [&](auto f, const char* what) {
    for (int i = 0; i < n; ++i) ref[i] = f(double(a.f32()[i]), double(b.f32()[i]));
    ExpectClose(y.ToVector(), ref, 1e-6, 1e-5, what);
  };
  be_->GeluTanh(a, y);
  check([](double x, double) {
    return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
  }, "gelu");
  be_->Silu(a, y);
  check([](double x, double) { return x / (1 + std::exp(-x)); }, "silu");
  be_->Add(a, b, y);
  check([](double x, double z) { return x + z; }, "add");
  be_->Mul(a, b, y);
  check([](double x, double z) { return x * z; }, "mul");
  be_->Scale(a, -0.5f, y);
  check([](double x, double) { return -0.5 * x; }, "scale");
  be_->Clamp(a, -1.f, 2.f, y);
  check([](double x, double) { return std::min(2.0, std::max(-1.0, x)); }, "clamp");
}

TEST_F(OpsTest, LargeElementwiseRunsInParallelCorrectly) {
  const int n = 100003;
  Tensor a = RandomTensor({n}, 13), b = RandomTensor({n}, 14);
  Tensor y = a.Clone();
  be_->Add(y, b, y);  // aliasing output
  std::vector<double> ref(n);
  for (int i = 0; i < n; ++i) ref[i] = double(a.f32()[i]) + b.f32()[i];
  ExpectClose(y.ToVector(), ref, 1e-6, 1e-6, "add aliased");
}

TEST_F(OpsTest, ModulateAndAddGated) {
  const int L = 6, D = 17;
  Tensor x = RandomTensor({L, D}, 15), shift = RandomTensor({D}, 16), scale = RandomTensor({D}, 17);
  Tensor y = be_->Empty({L, D});
  be_->Modulate(x, shift, scale, y);
  std::vector<double> ref(L * D);
  for (int i = 0; i < L * D; ++i)
    ref[i] = double(x.f32()[i]) * (1 + scale.f32()[i % D]) + shift.f32()[i % D];
  ExpectClose(y.ToVector(), ref, 1e-6, 1e-6, "modulate");
  Tensor acc = x.Clone();
  be_->AddGated(acc, y, &scale);
  for (int i = 0; i < L * D; ++i) ref[i] = double(x.f32()[i]) + double(y.f32()[i]) * scale.f32()[i % D];
  ExpectClose(acc.ToVector(), ref, 1e-6, 1e-6, "add gated");
  Tensor acc2 = x.Clone();
  be_->AddGated(acc2, y, nullptr);
  for (int i = 0; i < L * D; ++i) ref[i] = double(x.f32()[i]) + y.f32()[i];
  ExpectClose(acc2.ToVector(), ref, 1e-6, 1e-6, "add ungated");
}

TEST_F(OpsTest, Softmax) {
  const int rows = 4, d = 29;
  Tensor x = RandomTensor({rows, d}, 18, -20, 20);
  x.f32()[3] = 80.f;  // large logit: needs the max subtraction
  Tensor y = be_->Empty({rows, d});
  be_->Softmax(x, y);
  std::vector<double> ref(rows * d);
  for (int r = 0; r < rows; ++r) {
    double m = -1e300, s = 0;
    for (int i = 0; i < d; ++i) m = std::max(m, double(x.f32()[r * d + i]));
    for (int i = 0; i < d; ++i) s += std::exp(x.f32()[r * d + i] - m);
    for (int i = 0; i < d; ++i) ref[r * d + i] = std::exp(x.f32()[r * d + i] - m) / s;
  }
  ExpectClose(y.ToVector(), ref, 1e-7, 1e-5, "softmax");
}

TEST_F(OpsTest, PermuteAnyOrder) {
  const Shape shape{3, 4, 5, 2};
  Tensor x = RandomTensor(shape, 19);
  for (std::vector<int> perm : {std::vector<int>{1, 0, 2, 3}, {3, 2, 1, 0}, {0, 2, 3, 1}, {2, 0, 3, 1}}) {
    Shape out_shape;
    for (int p : perm) out_shape.push_back(shape[p]);
    Tensor y = be_->Empty(out_shape);
    be_->Permute(x, perm, y);
    // Walk every input coordinate and find it in the output.
    std::vector<double> ref(x.numel());
    for (int64_t i = 0; i < x.numel(); ++i) {
      int64_t c[4], rem = i;
      for (int a = 3; a >= 0; --a) {
        c[a] = rem % shape[a];
        rem /= shape[a];
      }
      int64_t o = 0;
      for (int a = 0; a < 4; ++a) o = o * out_shape[a] + c[perm[a]];
      ref[o] = x.f32()[i];
    }
    ExpectClose(y.ToVector(), ref, 0, 0, "permute");
  }
}

TEST_F(OpsTest, ConcatAlongEachDim) {
  Tensor a = RandomTensor({2, 3, 4}, 20);
  for (int dim = 0; dim < 3; ++dim) {
    Shape sb{2, 3, 4};
    sb[dim] = 5;
    Tensor b = RandomTensor(sb, 21 + dim);
    Shape sy{2, 3, 4};
    sy[dim] = sy[dim] + 5;
    Tensor y = be_->Empty(sy);
    be_->Concat({a, b}, dim, y);
    std::vector<double> ref(y.numel());
    for (int64_t i = 0; i < y.numel(); ++i) {
      int64_t c[3], rem = i;
      for (int ax = 2; ax >= 0; --ax) {
        c[ax] = rem % sy[ax];
        rem /= sy[ax];
      }
      const bool from_a = c[dim] < a.shape()[dim];
      const Tensor& src = from_a ? a : b;
      if (!from_a) c[dim] -= a.shape()[dim];
      ref[i] = src.f32()[(c[0] * src.shape()[1] + c[1]) * src.shape()[2] + c[2]];
    }
    ExpectClose(y.ToVector(), ref, 0, 0, "concat");
  }
}

TEST_F(OpsTest, EmbeddingAndBadId) {
  Tensor table = RandomTensor({10, 6}, 30);
  Tensor y = be_->Empty({3, 6});
  be_->Embedding(table, {9, 0, 4}, y);
  std::vector<double> ref;
  for (int id : {9, 0, 4})
    for (int c = 0; c < 6; ++c) ref.push_back(table.f32()[id * 6 + c]);
  ExpectClose(y.ToVector(), ref, 0, 0, "embedding");
  Tensor bf = be_->Empty({10, 6}, DType::kBF16);
  for (int i = 0; i < 60; ++i) bf.data<uint16_t>()[i] = FloatToBf16(table.f32()[i]);
  be_->Embedding(bf, {9, 0, 4}, y);
  ExpectClose(y.ToVector(), ref, 0, 1.0 / 256, "embedding bf16");
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor y1 = be_->Empty({1, 6});
  EXPECT_DEATH(be_->Embedding(table, {10}, y1), "id 10 outside the table of 10 rows");
}

TEST_F(OpsTest, UpsampleNearest2x) {
  const int C = 2, T = 3, H = 3, W = 5;
  Tensor x = RandomTensor({C, T, H, W}, 31);
  Tensor y = be_->Empty({C, T, 2 * H, 2 * W});
  be_->UpsampleNearest2x(x, y);
  std::vector<double> ref(y.numel());
  for (int p = 0; p < C * T; ++p)
    for (int i = 0; i < 2 * H; ++i)
      for (int j = 0; j < 2 * W; ++j)
        ref[(p * 2 * H + i) * 2 * W + j] = x.f32()[(p * H + i / 2) * W + j / 2];
  ExpectClose(y.ToVector(), ref, 0, 0, "upsample");
}

}  // namespace
}  // namespace sparsevid::kernels

namespace sparsevid::kernels {
namespace {

// The vectorisable exp used by every softmax: within 4 ulp (relative 5e-7)
// of the correctly rounded value over the range softmax uses, and exactly 0
// far below.
TEST(FastExpTest, MatchesStdExp) {
  for (float x = -87.f; x <= 88.f; x += 0.001953125f) {
    const double ref = std::exp(double(x));
    ASSERT_NEAR(cpu::FastExp(x), ref, 5e-7 * ref) << x;
  }
  EXPECT_EQ(cpu::FastExp(0.f), 1.f);
  EXPECT_EQ(cpu::FastExp(-100.f), 0.f);
  EXPECT_EQ(cpu::FastExp(-INFINITY), 0.f);
}

}  // namespace
}  // namespace sparsevid::kernels
