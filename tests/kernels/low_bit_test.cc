// Low-bit (INT8 / FP8-E4M3) numerics: the rounding rules bit by bit, the
// low-bit SLA2 forward against a naive quantise-dequantise reference, and
// its distance from full precision.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/backend.h"
#include "kernels/sla2/low_bit.h"
#include "sla2_reference.h"
#include "test_util.h"

namespace sparsevid::kernels {
namespace {

using sla2::RoundToFp8E4M3;
using testing::ExpectClose;
using testing::RandomTensor;

// Decodes an e4m3fn byte (bias 7; exponent 0 = subnormal; S.1111.111 = NaN).
float DecodeE4M3(uint8_t b) {
  const int sign = b >> 7, exp = (b >> 3) & 15, man = b & 7;
  if (exp == 15 && man == 7) return std::nanf("");
  const float mag = exp == 0 ? std::ldexp(float(man), -9) : std::ldexp(1.f + man / 8.f, exp - 7);
  return sign ? -mag : mag;
}

TEST(Fp8E4M3Test, RoundingTable) {
  struct Row { float in, out; };
  for (const Row& r : {Row{0.f, 0.f}, Row{1.f, 1.f}, Row{448.f, 448.f}, Row{500.f, 448.f},
                       Row{1e9f, 448.f}, Row{INFINITY, 448.f}, Row{-460.f, -448.f},
                       Row{1.0625f, 1.f},      // tie between 1 and 1.125 -> even mantissa (1)
                       Row{1.1875f, 1.25f},    // tie between 1.125 and 1.25 -> 1.25
                       Row{1.07f, 1.125f}, Row{-3.3f, -3.25f},
                       Row{232.f, 224.f},      // tie between 224 (even) and 240
                       Row{248.f, 256.f},      // tie between 240 (odd) and 256
                       Row{440.f, 448.f},
                       Row{0x1p-6f, 0x1p-6f},  // smallest normal
                       Row{0x1p-9f, 0x1p-9f},  // smallest subnormal
                       Row{0x1p-10f, 0.f},     // tie between 0 and 2^-9 -> 0
                       Row{3 * 0x1p-10f, 0x1p-8f},  // tie between 2^-9 (odd) and 2^-8
                       Row{0x1.1p-7f, 0x1p-7f}}) {  // subnormal range, quantum 2^-9
    EXPECT_EQ(RoundToFp8E4M3(r.in), r.out) << r.in;
  }
  EXPECT_TRUE(std::isnan(RoundToFp8E4M3(NAN)));
}

// Every finite code is a fixed point, and each midpoint between neighbours
// rounds to the one with the even code (the lower mantissa bit 0).
TEST(Fp8E4M3Test, AllCodesAndMidpoints) {
  std::vector<std::pair<float, uint8_t>> values;
  for (int b = 0; b < 128; ++b) {
    const float f = DecodeE4M3(uint8_t(b));
    if (std::isnan(f)) continue;
    values.push_back({f, uint8_t(b)});
    EXPECT_EQ(RoundToFp8E4M3(f), f) << b;
    EXPECT_EQ(RoundToFp8E4M3(-f), -f) << b;
  }
  ASSERT_EQ(values.size(), 127u);
  EXPECT_EQ(values.back().first, 448.f);
  for (size_t i = 0; i + 1 < values.size(); ++i) {
    const float lo = values[i].first, hi = values[i + 1].first;
    const float mid = 0.5f * (lo + hi);
    const float even = (values[i].second & 1) == 0 ? lo : hi;
    EXPECT_EQ(RoundToFp8E4M3(mid), even) << lo << " .. " << hi;
    EXPECT_EQ(RoundToFp8E4M3(std::nextafter(mid, 0.f)), lo);
    EXPECT_EQ(RoundToFp8E4M3(std::nextafter(mid, 1e9f)), hi);
  }
}

TEST(Int8QuantTest, RoundHalfAwayAndClamp) {
  EXPECT_EQ(sla2::QuantizeInt8(0.5f, 1.f), 1);
  EXPECT_EQ(sla2::QuantizeInt8(-0.5f, 1.f), -1);
  EXPECT_EQ(sla2::QuantizeInt8(2.5f, 1.f), 3);
  EXPECT_EQ(sla2::QuantizeInt8(2.49f, 1.f), 2);
  EXPECT_EQ(sla2::QuantizeInt8(300.f, 1.f), 127);
  EXPECT_EQ(sla2::QuantizeInt8(-300.f, 1.f), -127);
  EXPECT_EQ(sla2::Int8Scale(0.f), 1.f);
  EXPECT_EQ(sla2::Int8Scale(254.f), 2.f);
  EXPECT_EQ(sla2::Fp8Scale(0.f), 1.f);
  EXPECT_EQ(sla2::Fp8Scale(896.f), 2.f);
  // amax maps to exactly +-127.
  const std::vector<float> x = {0.3f, -1.7f, 1.2f, 0.f};
  std::vector<int8_t> q(4);
  const float s = sla2::QuantizeBlockInt8(x.data(), 2, 2, q.data());
  EXPECT_FLOAT_EQ(s, 1.7f / 127);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[3], 0);
}

class LowBitSla2Test : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> be_ = CreateCpuBackend(2);
};

// Same procedure as the reference (same quantised operands, same block
// order), so only f32 summation order differs: 1e-4 absolute is ample.
TEST_F(LowBitSla2Test, MatchesNaiveQuantDequantReference) {
  struct Case { int64_t L, H, d; float keep; };
  for (const Case& c : {Case{515, 2, 32, 0.2f}, Case{300, 1, 64, 1.f}, Case{97, 3, 16, 0.5f}}) {
    Tensor q = RandomTensor({c.L, c.H, c.d}, 90, -2, 2), k = RandomTensor({c.L, c.H, c.d}, 91, -2, 2);
    Tensor v = RandomTensor({c.L, c.H, c.d}, 92);
    const int64_t Tm = testing::CeilDiv(c.L, 128);
    Tensor alpha = RandomTensor({c.H, Tm}, 93, 0.f, 1.f);
    Sla2Params p;
    p.keep_ratio = c.keep;
    p.alpha = &alpha;
    p.low_bit = true;
    testing::RefSla2Config cfg;
    cfg.keep_ratio = c.keep;
    cfg.alpha = alpha.ToVector();
    cfg.low_bit = true;
    Tensor out = be_->Empty(q.shape());
    be_->Sla2Attention(q, k, v, p, out, nullptr);
    ExpectClose(out.ToVector(), testing::RefSla2(q, k, v, cfg), 1e-4, 1e-4, "low-bit");
  }
}

// INT8 Q/K (relative step 1/254 of the block max) and FP8 P/V (3 mantissa
// bits, <= 6.25 % per element, errors average out over keys) keep the
// output within a few percent of full precision: we require relative L2
// error < 4 % on the sparse output, random and correlated inputs alike.
TEST_F(LowBitSla2Test, CloseToFullPrecision) {
  const int64_t L = 640, H = 2, d = 64;
  for (uint64_t seed : {94u, 95u}) {
    Tensor q = RandomTensor({L, H, d}, seed, -2, 2), k = RandomTensor({L, H, d}, seed + 10, -2, 2);
    Tensor v = RandomTensor({L, H, d}, seed + 20);
    Sla2Params p;
    p.keep_ratio = 0.2f;
    Tensor full = be_->Empty(q.shape()), low = be_->Empty(q.shape());
    be_->Sla2Attention(q, k, v, p, full, nullptr);
    p.low_bit = true;
    be_->Sla2Attention(q, k, v, p, low, nullptr);
    const std::vector<float> f = full.ToVector();
    const double err = testing::RelativeL2(low.ToVector(), std::vector<double>(f.begin(), f.end()));
    EXPECT_LT(err, 0.04) << "seed " << seed;
    EXPECT_GT(err, 0.0) << "low-bit path must actually quantise";
  }
}

}  // namespace
}  // namespace sparsevid::kernels
