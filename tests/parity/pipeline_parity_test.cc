// A whole 2-step generation (tokenizer, umT5, DiT with SLA2 and CFG, UniPC,
// VAE) against the reference, starting from the same noise.
#include <gtest/gtest.h>

#include "tests/parity/golden.h"
#include "tests/parity/parity_tolerance.h"
#include "worker/engine/noise.h"
#include "worker/engine/pipeline_impl.h"

namespace sparsevid::parity {
namespace {

TEST(PipelineParity, TwoStepGeneration) {
  auto g = OpenGolden("pipeline_2step/io.safetensors");
  ASSERT_TRUE(g.ok()) << g.status();
  engine::EngineOptions opts;
  opts.threads = 2;
  auto p = engine::PipelineImpl::Create(GoldenDir() + "/pipeline_2step", opts);
  ASSERT_TRUE(p.ok()) << p.status();
  const auto& c = g->params;

  engine::GenerateParams gp;
  gp.prompt = c.at("prompt").get<std::string>();
  gp.negative_prompt = c.at("negative_prompt").get<std::string>();
  gp.seed = c.at("seed").get<uint64_t>();
  gp.width = c.at("width").get<int>();
  gp.height = c.at("height").get<int>();
  gp.num_frames = c.at("num_frames").get<int>();
  gp.steps = c.at("steps").get<int>();
  gp.guidance_scale = c.at("guidance_scale").get<float>();
  gp.shift = c.at("shift").get<float>();
  gp.sampler = c.at("sampler").get<std::string>() == "euler" ? engine::SamplerKind::kEuler
                                                             : engine::SamplerKind::kUniPC;
  gp.attention = engine::AttentionMode::kSla2;
  ASSERT_EQ(c.at("attention").get<std::string>(), "sla2");
  auto r = (*p)->Resolve(gp);
  ASSERT_TRUE(r.ok()) << r.status();

  // Our tokenizer and noise give the reference's inputs.
  EXPECT_EQ(r->ids, g->Ints("input.ids"));
  EXPECT_EQ(r->neg_ids, g->Ints("input.neg_ids"));
  const kernels::Tensor noise = engine::GaussianNoiseTensor(gp.seed, r->latent_shape);
  EXPECT_EQ(noise.ToVector(), g->F32("input.noise").ToVector());

  kernels::Tensor latent, video;
  auto stats = (*p)->Run(*r, g->F32("input.noise"), nullptr, nullptr, engine::CancelToken(),
                         &latent, &video);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_LE(ReportRelL2("pipeline_latent", latent.ToVector(), g->F32("output.latent").ToVector()), kFp32RelL2);
  EXPECT_EQ(video.shape(), g->F32("output.video").shape());
  EXPECT_LE(ReportRelL2("pipeline_video", video.ToVector(), g->F32("output.video").ToVector()), kFp32RelL2);
}

}  // namespace
}  // namespace sparsevid::parity
