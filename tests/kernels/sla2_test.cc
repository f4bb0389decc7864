// SLA2 (full precision) against the naive full-mask reference in
// sla2_reference.h. Tolerance 1e-4 absolute + 1e-4 relative: outputs are
// convex combinations of O(1) values; the kernel's f32 sums over <= 1000
// keys, and the linear branch's pre-aggregation (total minus kept blocks,
// totals in double) lose at most ~1e-6 relative against double.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "kernels/sla2/router.h"
#include "kernels/sla2/sla2_attention.h"
#include "sla2_reference.h"
#include "test_util.h"

namespace sparsevid::kernels {
namespace {

using testing::ExpectClose;
using testing::RandomTensor;
using testing::RandomVector;
using testing::RefSla2;
using testing::RefSla2Config;

constexpr double kAtol = 1e-4, kRtol = 1e-4;

// Tokens carry a smooth function of their position plus noise, so nearby
// blocks score high: the router then prefers a structured set, as in video.
Tensor CorrelatedTensor(int64_t L, int64_t H, int64_t d, uint64_t seed) {
  std::vector<float> noise = RandomVector(L * H * d, seed, -0.3f, 0.3f);
  std::vector<float> x(L * H * d);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < d; ++c)
        x[(t * H + h) * d + c] =
            2.f * std::sin(0.013f * t * (c % 7 + 1) + 0.5f * h + c) + noise[(t * H + h) * d + c];
  return Tensor::FromVector(x, {L, H, d});
}

class Sla2Test : public ::testing::Test {
 protected:
  void Check(const Tensor& q, const Tensor& k, const Tensor& v, const Sla2Params& p,
             const RefSla2Config& cfg, const char* what, Sla2Stats* stats_out = nullptr) {
    Tensor out = be_->Empty(q.shape());
    Sla2Stats stats;
    be_->Sla2Attention(q, k, v, p, out, &stats);
    ExpectClose(out.ToVector(), RefSla2(q, k, v, cfg), kAtol, kRtol, what);
    if (stats_out) *stats_out = stats;
  }
  std::unique_ptr<Backend> be_ = CreateCpuBackend(2);
};

TEST(Sla2RouterTest, KeptBlockCount) {
  EXPECT_EQ(sla2::KeptBlocksPerRow(0.03f, 36), 1);    // floor(1.08)
  EXPECT_EQ(sla2::KeptBlocksPerRow(0.03f, 100), 3);   // 0.03f*100 = 2.99999993: the user meant 3
  EXPECT_EQ(sla2::KeptBlocksPerRow(0.05f, 64), 3);    // floor(3.2)
  EXPECT_EQ(sla2::KeptBlocksPerRow(0.03f, 512), 15);  // 1.3B at 480p
  EXPECT_EQ(sla2::KeptBlocksPerRow(0.01f, 50), 1);    // floor(0.5) = 0 -> at least 1
  EXPECT_EQ(sla2::KeptBlocksPerRow(1.0f, 7), 7);
  EXPECT_EQ(sla2::KeptBlocksPerRow(2.0f, 7), 7);      // at most T_n
  // Python: 0.29 * 100 = 28.999999999999996 -> 28; the same here.
  EXPECT_EQ(sla2::KeptBlocksPerRow(0.29f, 100), 28);
  EXPECT_EQ(sla2::DecimalValue(0.03f), 0.03);
  EXPECT_EQ(sla2::DecimalValue(0.1f), 0.1);
  // Any float survives the trip through its decimal form.
  for (float f : RandomVector(200, 59, 0.f, 1.f)) EXPECT_EQ(static_cast<float>(sla2::DecimalValue(f)), f);
}

TEST(Sla2RouterTest, TopKTiesPreferLowerIndex) {
  const std::vector<float> scores = {1, 3, 3, 0, 3, 2,   // ties at the top
                                     5, 5, 5, 5, 5, 5};  // all equal
  std::vector<int32_t> kept;
  sla2::TopKPerRow(scores.data(), 2, 6, 2, &kept);
  EXPECT_EQ(kept, (std::vector<int32_t>{1, 2, 0, 1}));
  const float nan = std::nanf("");
  const std::vector<float> with_nan = {nan, 1, nan, 0};
  sla2::TopKPerRow(with_nan.data(), 1, 4, 2, &kept);
  EXPECT_EQ(kept, (std::vector<int32_t>{1, 3}));
}

TEST(Sla2RouterTest, PartialLastBlockPoolsValidRowsOnly) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};  // L = 5, d = 2
  std::vector<float> pooled(6);
  sla2::MeanPoolBlocks(x.data(), 5, 2, 2, pooled.data());
  EXPECT_EQ(pooled, (std::vector<float>{2, 3, 6, 7, 9, 10}));
}

TEST(Sla2RouterTest, AlphaResamplingNearestNeighbour) {
  EXPECT_EQ(sla2::AlphaSourceIndex(3, 8, 8), 3);
  // T_m = 3 from T_a = 6: positions 1/6, 1/2, 5/6 -> 1, 3, 5.
  EXPECT_EQ(sla2::AlphaSourceIndex(0, 3, 6), 1);
  EXPECT_EQ(sla2::AlphaSourceIndex(1, 3, 6), 3);
  EXPECT_EQ(sla2::AlphaSourceIndex(2, 3, 6), 5);
  // T_m = 4 from T_a = 2: 0, 0, 1, 1.
  EXPECT_EQ(sla2::AlphaSourceIndex(1, 4, 2), 0);
  EXPECT_EQ(sla2::AlphaSourceIndex(2, 4, 2), 1);
}

// L not a multiple of either block size; one kept block per row (keep 10 %
// of T_n = 9 -> floor 0.9 -> 1); random router projections and alpha.
TEST_F(Sla2Test, RandomInputsOneKeptBlock) {
  const int64_t L = 515, H = 2, d = 32, Tm = 5;
  Tensor q = RandomTensor({L, H, d}, 60, -2, 2), k = RandomTensor({L, H, d}, 61, -2, 2);
  Tensor v = RandomTensor({L, H, d}, 62);
  Tensor pq = RandomTensor({d, d}, 63), pk = RandomTensor({d, d}, 64);
  Tensor alpha = RandomTensor({H, Tm}, 65, 0.f, 1.f);
  Sla2Params p;
  p.keep_ratio = 0.1f;
  p.proj_q = &pq;
  p.proj_k = &pk;
  p.alpha = &alpha;
  RefSla2Config cfg;
  cfg.keep_ratio = 0.1;
  cfg.proj_q = pq.ToVector();
  cfg.proj_k = pk.ToVector();
  cfg.alpha = alpha.ToVector();
  Sla2Stats stats;
  Check(q, k, v, p, cfg, "random keep 1", &stats);
  EXPECT_EQ(stats.total_blocks, H * Tm * 9);
  EXPECT_EQ(stats.kept_blocks, H * Tm * 1);
  double mean = 0;
  for (float a : alpha.ToVector()) mean += a;
  EXPECT_NEAR(stats.alpha_mean, mean / (H * Tm), 1e-9);
}

// Many kept blocks: 60 % of T_n, so the linear branch sums the non-kept
// blocks directly instead of subtracting from the total.
TEST_F(Sla2Test, CorrelatedInputsManyKeptBlocks) {
  const int64_t L = 700, H = 2, d = 64, Tm = 6;
  Tensor q = CorrelatedTensor(L, H, d, 66), k = CorrelatedTensor(L, H, d, 67);
  Tensor v = RandomTensor({L, H, d}, 68);
  Tensor alpha = RandomTensor({H, Tm}, 69, 0.2f, 0.9f);
  for (float keep : {0.2f, 0.6f}) {
    Sla2Params p;
    p.keep_ratio = keep;
    p.alpha = &alpha;
    RefSla2Config cfg;
    cfg.keep_ratio = keep;
    cfg.alpha = alpha.ToVector();
    Check(q, k, v, p, cfg, keep < 0.5f ? "correlated 20%" : "correlated 60%");
  }
}

TEST_F(Sla2Test, SmallBlocksAndOddHeadDim) {
  const int64_t L = 97, H = 3, d = 5;
  Tensor q = RandomTensor({L, H, d}, 70, -2, 2), k = RandomTensor({L, H, d}, 71, -2, 2);
  Tensor v = RandomTensor({L, H, d}, 72);
  Sla2Params p;
  p.block_q = 16;
  p.block_k = 8;
  p.keep_ratio = 0.25f;
  const int64_t Tm = 7;
  Tensor alpha = RandomTensor({H, Tm}, 73, 0.f, 1.f);
  p.alpha = &alpha;
  RefSla2Config cfg{16, 8, 0.25, {}, {}, alpha.ToVector(), {}, false};
  Check(q, k, v, p, cfg, "small blocks");
}

// keep = 1: every block is sparse, O_l = 0, O = alpha * full attention.
TEST_F(Sla2Test, AllBlocksKeptMatchesScaledDenseAttention) {
  const int64_t L = 300, H = 2, d = 16, Tm = 3;
  Tensor q = RandomTensor({L, H, d}, 74, -2, 2), k = RandomTensor({L, H, d}, 75, -2, 2);
  Tensor v = RandomTensor({L, H, d}, 76);
  Tensor alpha = RandomTensor({H, Tm}, 77, 0.f, 1.f);
  Sla2Params p;
  p.keep_ratio = 1.f;
  p.alpha = &alpha;
  Tensor out = be_->Empty({L, H, d}), dense = be_->Empty({L, H, d});
  Sla2Stats stats;
  be_->Sla2Attention(q, k, v, p, out, &stats);
  EXPECT_EQ(stats.kept_blocks, stats.total_blocks);
  be_->Attention(q, k, v, 1.f / std::sqrt(float(d)), nullptr, -1, dense);
  std::vector<double> expect(L * H * d);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < d; ++c)
        expect[(t * H + h) * d + c] = alpha.f32()[h * Tm + t / 128] * dense.f32()[(t * H + h) * d + c];
  ExpectClose(out.ToVector(), expect, kAtol, kRtol, "all kept");
}

// An external mask with uneven rows: one block, none (O_s = 0), all (O_l = 0).
TEST_F(Sla2Test, ExternalBlockMask) {
  const int64_t L = 260, H = 2, d = 16, Tm = 3, Tn = 5;
  Tensor q = RandomTensor({L, H, d}, 78, -2, 2), k = RandomTensor({L, H, d}, 79, -2, 2);
  Tensor v = RandomTensor({L, H, d}, 80);
  Tensor mask = be_->Zeros({H, Tm, Tn}, DType::kU8);
  const std::vector<uint8_t> m = {0, 0, 1, 0, 0,  0, 0, 0, 0, 0,  1, 1, 1, 1, 1,
                                  1, 0, 0, 0, 1,  0, 1, 1, 0, 1,  0, 0, 0, 0, 1};
  std::copy(m.begin(), m.end(), mask.data<uint8_t>());
  Tensor alpha = RandomTensor({H, Tm}, 81, 0.1f, 0.9f);
  Sla2Params p;
  p.block_mask = &mask;
  p.alpha = &alpha;
  RefSla2Config cfg;
  cfg.mask = m;
  cfg.alpha = alpha.ToVector();
  Sla2Stats stats;
  Check(q, k, v, p, cfg, "external mask", &stats);
  EXPECT_EQ(stats.kept_blocks, 1 + 0 + 5 + 2 + 3 + 1);
}

// No alpha: sparse branch only (alpha = 1); alpha trained at another T_m is
// resampled by nearest neighbour.
TEST_F(Sla2Test, AlphaDefaultsAndResampling) {
  const int64_t L = 400, H = 2, d = 16, Tm = 4;
  Tensor q = RandomTensor({L, H, d}, 82, -2, 2), k = RandomTensor({L, H, d}, 83, -2, 2);
  Tensor v = RandomTensor({L, H, d}, 84);
  Sla2Params p;
  p.keep_ratio = 0.3f;
  RefSla2Config cfg;
  cfg.keep_ratio = 0.3;
  Sla2Stats stats;
  Check(q, k, v, p, cfg, "no alpha", &stats);
  EXPECT_DOUBLE_EQ(stats.alpha_mean, 1.0);

  Tensor trained = RandomTensor({H, 7}, 85, 0.f, 1.f);
  p.alpha = &trained;
  cfg.alpha.resize(H * Tm);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < Tm; ++i)
      cfg.alpha[h * Tm + i] = trained.f32()[h * 7 + int64_t(std::floor((i + 0.5) / Tm * 7))];
  Check(q, k, v, p, cfg, "resampled alpha");
}

// H = 1 < threads: the backend parallelises inside the head instead of
// across heads; a 1-thread backend runs everything serially. Both must match.
TEST_F(Sla2Test, SingleHeadAndSingleThread) {
  const int64_t L = 515, H = 1, d = 32, Tm = 5;
  Tensor q = RandomTensor({L, H, d}, 86, -2, 2), k = RandomTensor({L, H, d}, 87, -2, 2);
  Tensor v = RandomTensor({L, H, d}, 88);
  Tensor alpha = RandomTensor({H, Tm}, 89, 0.f, 1.f);
  Sla2Params p;
  p.keep_ratio = 0.2f;
  p.alpha = &alpha;
  RefSla2Config cfg;
  cfg.keep_ratio = 0.2;
  cfg.alpha = alpha.ToVector();
  Check(q, k, v, p, cfg, "one head");
  be_ = CreateCpuBackend(1);
  Check(q, k, v, p, cfg, "one thread");
}

TEST_F(Sla2Test, BadParamsStop) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor q = be_->Zeros({100, 2, 8});
  Tensor out = be_->Empty({100, 2, 8});
  Tensor mask = be_->Zeros({2, 1, 1}, DType::kU8);
  Sla2Params p;
  p.block_mask = &mask;
  EXPECT_DEATH(be_->Sla2Attention(q, q, q, p, out, nullptr), "block_mask \\[2, 1, 1\\] u8, expected u8 \\[2, 1, 2\\]");
  Sla2Params p2;
  Tensor proj = be_->Zeros({8, 4});
  p2.proj_q = &proj;
  EXPECT_DEATH(be_->Sla2Attention(q, q, q, p2, out, nullptr), "router projection \\[8, 4\\]");
  Tensor bad = be_->Zeros({100, 2, 4});
  EXPECT_DEATH(be_->Sla2Attention(q, bad, q, Sla2Params{}, out, nullptr), "must all be \\[L, H, d\\]");
}

}  // namespace
}  // namespace sparsevid::kernels
