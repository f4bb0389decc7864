// Wan-VAE decoder (chunked, feature cache, "Rep" rule) against the reference.
#include <gtest/gtest.h>

#include "kernels/backend.h"
#include "tests/parity/golden.h"
#include "tests/parity/parity_tolerance.h"
#include "worker/engine/wan_vae.h"

namespace sparsevid::parity {
namespace {

TEST(VaeParity, DecoderChunkedWithFeatureCache) {
  auto g = OpenGolden("vae_decoder.safetensors");
  ASSERT_TRUE(g.ok()) << g.status();
  auto backend = kernels::CreateCpuBackend(2);
  const auto& cfg = g->config.vae;
  auto w = g->Weights(engine::WeightComponent::kVae, engine::WanVaeDecoder::DeclareTensors(cfg));
  ASSERT_TRUE(w.ok()) << w.status();
  auto vae = engine::WanVaeDecoder::Create(cfg, *w, *backend);
  ASSERT_TRUE(vae.ok()) << vae.status();

  const kernels::Tensor ref = g->F32("output.video");  // [3, F, H, W]
  const int64_t F = ref.dim(1), HW = ref.dim(2) * ref.dim(3);
  std::vector<float> ours(ref.numel(), 0.0f);
  int frames = 0;
  std::vector<int> chunk_frames;
  absl::Status st = (*vae)->Decode(g->F32("input.latent"), [&](const kernels::Tensor& v, int first) {
    EXPECT_EQ(first, frames);
    const std::vector<float> x = v.ToVector();
    const int64_t n = v.dim(1);
    for (int c = 0; c < 3; ++c)
      for (int64_t f = 0; f < n; ++f)
        std::copy(x.begin() + (c * n + f) * HW, x.begin() + (c * n + f + 1) * HW,
                  ours.begin() + (c * F + first + f) * HW);
    frames += static_cast<int>(n);
    chunk_frames.push_back(static_cast<int>(n));
    return absl::OkStatus();
  });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(frames, F);
  EXPECT_EQ(chunk_frames, (std::vector<int>{1, 4, 4}));
  EXPECT_LE(ReportRelL2("vae_video", ours, ref.ToVector()), kFp32RelL2);
}

}  // namespace
}  // namespace sparsevid::parity
