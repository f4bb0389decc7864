// σ schedule against the official t sequence, and sampler properties.
#include <gtest/gtest.h>

#include <cmath>

#include "worker/engine/euler_sampler.h"
#include "worker/engine/flow_schedule.h"
#include "worker/engine/sampler.h"
#include "worker/engine/unipc_sampler.h"

namespace sparsevid::engine {
namespace {

TEST(FlowSchedule, OfficialTimestepsFor50StepsShift5) {
  // wan2.1.md §5.2 (computed from the official scheduler).
  const std::vector<int64_t> expect = {
      999, 995, 991, 987, 982, 978, 973, 968, 963, 957, 952, 946, 940, 934, 927, 920, 913,
      906, 898, 890, 882, 873, 863, 854, 843, 833, 821, 809, 796, 783, 768, 753, 737, 720,
      701, 681, 660, 636, 611, 584, 555, 522, 487, 448, 405, 356, 302, 241, 172, 92};
  const FlowSchedule s = MakeFlowSchedule(50, 5.0);
  EXPECT_EQ(s.timesteps, expect);
  ASSERT_EQ(s.sigmas.size(), 51u);
  EXPECT_NEAR(s.sigmas[0], 0.999800, 1e-6);
  EXPECT_NEAR(s.sigmas[1], 0.995732, 1e-6);
  EXPECT_NEAR(s.sigmas[49], 0.092507, 1e-6);
  EXPECT_EQ(s.sigmas[50], 0.0f);
}

TEST(FlowSchedule, ShiftOneIsLinear) {
  const FlowSchedule s = MakeFlowSchedule(4, 1.0);
  const double smax = static_cast<double>(0.999f);
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(s.sigmas[i], static_cast<float>(smax * (4 - i) / 4));
}

// For v = ε − x0 exactly (a perfect model of a single clean sample x0), every
// flow sampler must land on x0 at σ = 0.
void ExpectRecoversCleanSample(const std::string& name) {
  const FlowSchedule s = MakeFlowSchedule(8, 3.0);
  auto sampler = MakeSampler(name, s);
  ASSERT_TRUE(sampler.ok());
  const std::vector<float> x0 = {0.5f, -1.0f, 2.0f};
  const std::vector<float> eps = {1.0f, 0.3f, -0.7f};
  std::vector<float> x(3);
  for (int k = 0; k < 3; ++k) x[k] = (1 - s.sigmas[0]) * x0[k] + s.sigmas[0] * eps[k];
  for (int i = 0; i < 8; ++i) {
    std::vector<float> v(3);
    for (int k = 0; k < 3; ++k) v[k] = eps[k] - x0[k];
    (*sampler)->Step(i, v, x);
  }
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(x[k], x0[k], 1e-5) << name;
}

TEST(Samplers, RecoverTheCleanSampleForAnExactVelocity) {
  ExpectRecoversCleanSample("euler");
  ExpectRecoversCleanSample("unipc");
}

TEST(Samplers, UnknownNameIsAnError) {
  auto s = MakeSampler("ddim", MakeFlowSchedule(2, 1.0));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("ddim"), std::string::npos);
}

TEST(Samplers, EulerStepIsTheFlowUpdate) {
  const FlowSchedule s = MakeFlowSchedule(2, 1.0);
  EulerSampler e(s);
  std::vector<float> x = {1.0f}, v = {2.0f};
  e.Step(0, v, x);
  EXPECT_FLOAT_EQ(x[0], 1.0f + (s.sigmas[1] - s.sigmas[0]) * 2.0f);
}

TEST(Samplers, UniPcFirstStepEqualsFirstOrderDpm) {
  // Step 0 is order 1 without a corrector: x1 = σ1/σ0·x − α1·expm1(−h)·m0.
  const FlowSchedule s = MakeFlowSchedule(5, 5.0);
  UniPcSampler u(s);
  std::vector<float> x = {0.7f}, v = {-0.4f};
  const float m0 = x[0] - s.sigmas[0] * v[0];
  const auto lam = [&](int i) { return std::log(1 - s.sigmas[i]) - std::log(s.sigmas[i]); };
  const float h = lam(1) - lam(0);
  const float expect = s.sigmas[1] / s.sigmas[0] * x[0] - (1 - s.sigmas[1]) * std::expm1(-h) * m0;
  u.Step(0, v, x);
  EXPECT_NEAR(x[0], expect, 1e-6);
}

}  // namespace
}  // namespace sparsevid::engine
