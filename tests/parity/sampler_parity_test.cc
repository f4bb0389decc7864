// σ schedule, Euler and UniPC against the reference on a synthetic linear
// model v(x, σ) = a·x + b·σ.
#include <gtest/gtest.h>

#include "tests/parity/golden.h"
#include "tests/parity/parity_tolerance.h"
#include "worker/engine/flow_schedule.h"
#include "worker/engine/sampler.h"

namespace sparsevid::parity {
namespace {

TEST(SamplerParity, ScheduleAndTrajectories) {
  auto g = OpenGolden("sampler.safetensors");
  ASSERT_TRUE(g.ok()) << g.status();
  const int steps = g->params.at("steps").get<int>();
  const double shift = g->params.at("shift").get<double>();
  const float a = g->params.at("a").get<float>(), b = g->params.at("b").get<float>();
  const engine::FlowSchedule s = engine::MakeFlowSchedule(steps, shift);

  const std::vector<float> sigmas = g->F32("output.sigmas").ToVector();
  const std::vector<int> timesteps = g->Ints("output.timesteps");
  ASSERT_EQ(sigmas.size(), s.sigmas.size());
  for (size_t i = 0; i < sigmas.size(); ++i) EXPECT_EQ(s.sigmas[i], sigmas[i]) << i;
  ASSERT_EQ(timesteps.size(), s.timesteps.size());
  for (size_t i = 0; i < timesteps.size(); ++i) EXPECT_EQ(s.timesteps[i], timesteps[i]) << i;

  const std::vector<float> x0 = g->F32("input.x").ToVector();
  for (const std::string name : {"euler", "unipc"}) {
    auto sampler = engine::MakeSampler(name, s);
    ASSERT_TRUE(sampler.ok());
    const std::vector<float> traj = g->F32("output." + name + "_trajectory").ToVector();
    ASSERT_EQ(traj.size(), x0.size() * steps);
    std::vector<float> x = x0;
    for (int i = 0; i < steps; ++i) {
      std::vector<float> v(x.size());
      for (size_t k = 0; k < x.size(); ++k) v[k] = a * x[k] + b * s.sigmas[i];
      (*sampler)->Step(i, v, x);
      const std::vector<float> ref(traj.begin() + i * x.size(), traj.begin() + (i + 1) * x.size());
      EXPECT_LE(i + 1 == steps ? ReportRelL2("sampler_" + name + "_final", x, ref) : RelL2(x, ref),
                kFp32RelL2)
          << name << " step " << i;
    }
  }
}

}  // namespace
}  // namespace sparsevid::parity
