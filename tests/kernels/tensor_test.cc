#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "kernels/backend.h"
#include "kernels/tensor.h"
#include "test_util.h"

namespace sparsevid::kernels {
namespace {

float BitsToFloat(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

TEST(TensorTest, ShapeViewsAndAlignment) {
  Tensor t = Tensor::FromVector({0, 1, 2, 3, 4, 5}, {3, 2});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dim(-1), 2);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  Tensor r = t.Reshape({2, 3});
  EXPECT_EQ(r.raw(), t.raw());
  Tensor n = t.Narrow0(1, 2);
  EXPECT_EQ(n.ToVector(), (std::vector<float>{2, 3, 4, 5}));
  Tensor c = n.Clone();
  c.f32()[0] = 42;
  EXPECT_EQ(t.f32()[2], 2.f);  // the clone owns its memory
  EXPECT_EQ(ShapeString({3, 2}), "[3, 2]");
}

TEST(TensorTest, MisuseStopsWithMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Tensor t = Tensor::Zeros({2, 3});
  EXPECT_DEATH(t.Reshape({4, 2}), "changes the element count");
  EXPECT_DEATH(t.Narrow0(1, 2), "out of range");
  EXPECT_DEATH(Tensor::FromVector({1, 2, 3}, {2, 2}), "3 values for shape");
}

// bf16 keeps the top 16 bits with round to nearest even.
TEST(ConversionTest, Bf16RoundingAndRoundTrip) {
  EXPECT_EQ(FloatToBf16(1.f), 0x3f80);
  // 1 + 2^-8 is exactly half way between bf16 1.0 and 1.0078125: even (1.0) wins.
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808000u)), 0x3f80);
  // Just above half way rounds up.
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f808001u)), 0x3f81);
  // Half way with an odd kept bit rounds up to even.
  EXPECT_EQ(FloatToBf16(BitsToFloat(0x3f818000u)), 0x3f82);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::infinity()))));
  // The largest float rounds to infinity in bf16 (it is above the bf16 max).
  EXPECT_TRUE(std::isinf(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::max()))));
  // Every bf16 value survives a round trip through float.
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToBf16(f), h) << h;
  }
  // A float's bf16 rounding is within half a bf16 ulp (2^-8 relative).
  for (float f : testing::RandomVector(1000, 7, -100.f, 100.f)) {
    EXPECT_LE(std::fabs(Bf16ToFloat(FloatToBf16(f)) - f), std::fabs(f) * 0x1p-8f);
  }
}

TEST(ConversionTest, F16RoundingAndRoundTrip) {
  EXPECT_EQ(FloatToF16(1.f), 0x3c00);
  EXPECT_EQ(FloatToF16(65504.f), 0x7bff);
  EXPECT_EQ(F16ToFloat(0x0001), 0x1p-24f);  // smallest subnormal
  // 1 + 2^-11 is half way between f16 1.0 and 1 + 2^-10: even (1.0) wins.
  EXPECT_EQ(FloatToF16(1.f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(FloatToF16(1.f + 3 * 0x1p-11f), 0x3c02);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToF16(f), h) << h;
  }
}

TEST(BackendMemoryTest, PeakBytesTracksLiveAllocations) {
  auto backend = CreateCpuBackend(2);
  EXPECT_EQ(backend->device(), DeviceKind::kCpu);
  EXPECT_EQ(backend->PeakBytes(), 0);
  {
    Tensor a = backend->Empty({1000});  // 4000 bytes
    Tensor b = backend->Zeros({500});   // 2000 bytes
    EXPECT_EQ(backend->PeakBytes(), 6000);
  }
  EXPECT_EQ(backend->PeakBytes(), 6000);
  backend->ResetPeakBytes();
  EXPECT_EQ(backend->PeakBytes(), 0);
  Tensor c = backend->Empty({10}, DType::kBF16);
  EXPECT_EQ(backend->PeakBytes(), 20);
  // A tensor may outlive its backend.
  backend.reset();
  c.data<uint16_t>()[0] = 1;
}

TEST(BackendMemoryTest, CopyFillAndToF32) {
  auto backend = CreateCpuBackend(2);
  Tensor h = backend->Empty({5}, DType::kBF16);
  backend->Fill(h, 1.5f);
  Tensor f = backend->ToF32(h);
  EXPECT_EQ(f.dtype(), DType::kF32);
  EXPECT_EQ(f.ToVector(), std::vector<float>(5, 1.5f));
  Tensor g = backend->Empty({5}, DType::kF16);
  for (int i = 0; i < 5; ++i) g.data<uint16_t>()[i] = FloatToF16(0.25f * i);
  EXPECT_EQ(backend->ToF32(g).ToVector(), (std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1.f}));
  Tensor dst = backend->Empty({5});
  backend->Copy(f, dst);
  EXPECT_EQ(dst.ToVector(), f.ToVector());
  Tensor host = backend->ToHost(dst);
  EXPECT_NE(host.raw(), dst.raw());
  EXPECT_EQ(host.ToVector(), dst.ToVector());
}

}  // namespace
}  // namespace sparsevid::kernels
