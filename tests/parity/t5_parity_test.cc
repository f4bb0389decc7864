// umT5 encoder against the reference.
#include <gtest/gtest.h>

#include "kernels/backend.h"
#include "tests/parity/golden.h"
#include "tests/parity/parity_tolerance.h"
#include "worker/engine/umt5.h"

namespace sparsevid::parity {
namespace {

TEST(T5Parity, EncoderHiddenStates) {
  auto g = OpenGolden("t5_encoder.safetensors");
  ASSERT_TRUE(g.ok()) << g.status();
  auto backend = kernels::CreateCpuBackend(2);
  auto w = g->Weights(engine::WeightComponent::kT5,
                      engine::Umt5Encoder::DeclareTensors(g->config.t5));
  ASSERT_TRUE(w.ok()) << w.status();
  auto t5 = engine::Umt5Encoder::Create(g->config.t5, *w, *backend);
  ASSERT_TRUE(t5.ok()) << t5.status();
  auto hidden = (*t5)->Encode(g->Ints("input.ids"));
  ASSERT_TRUE(hidden.ok()) << hidden.status();
  const std::vector<float> ref = g->F32("output.hidden").ToVector();
  EXPECT_LE(ReportRelL2("t5_hidden", backend->ToHost(*hidden).ToVector(), ref), kFp32RelL2);
}

}  // namespace
}  // namespace sparsevid::parity
