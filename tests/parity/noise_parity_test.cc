// Seeded noise: the C++ generator and the numpy port agree bit for bit.
#include <gtest/gtest.h>

#include "tests/parity/golden.h"
#include "worker/engine/noise.h"

namespace sparsevid::parity {
namespace {

TEST(NoiseParity, BitExactWithNumpyPort) {
  auto g = OpenGolden("noise.safetensors");
  ASSERT_TRUE(g.ok()) << g.status();
  const uint64_t seed = g->params.at("seed").get<uint64_t>();
  kernels::Shape shape;
  for (const auto& d : g->params.at("shape")) shape.push_back(d.get<int64_t>());
  const std::vector<float> ref = g->F32("output.noise").ToVector();
  const std::vector<float> ours = engine::GaussianNoiseTensor(seed, shape).ToVector();
  ASSERT_EQ(ours.size(), ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(ours[i], ref[i]) << "element " << i;
}

}  // namespace
}  // namespace sparsevid::parity
