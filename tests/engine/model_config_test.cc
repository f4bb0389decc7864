// model.yaml parsing and validation, and the official-size configs checked
// against the tensor tables of wan2.1.md §1.9, §3.5, §4.3.
#include "worker/engine/model_config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_replace.h"
#include "worker/engine/umt5.h"
#include "worker/engine/wan_dit.h"
#include "worker/engine/wan_vae.h"

namespace sparsevid::engine {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ConfigText(const std::string& name) {
  return ReadFile(std::string(SPARSEVID_SOURCE_DIR) + "/models/configs/" + name);
}

std::map<std::string, kernels::Shape> ByName(const TensorSpecs& specs) {
  std::map<std::string, kernels::Shape> m;
  for (const auto& s : specs) EXPECT_TRUE(m.emplace(s.name, s.shape).second) << "dup " << s.name;
  return m;
}

TEST(ModelConfig, OfficialConfigsParse) {
  for (const char* f : {"wan2.1-t2v-1.3b.yaml", "wan2.1-t2v-14b.yaml"}) {
    auto c = ParseModelConfig(ConfigText(f), f);
    ASSERT_TRUE(c.ok()) << f << ": " << c.status();
    EXPECT_EQ(c->dit.head_dim(), 128);
    EXPECT_EQ(c->vae.spatial_stride(), 8);
    EXPECT_EQ(c->vae.temporal_stride(), 4);
  }
}

TEST(ModelConfig, Wan13bTensorShapesMatchTheOfficialTables) {
  auto c = ParseModelConfig(ConfigText("wan2.1-t2v-1.3b.yaml"), "1.3b");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto dit = ByName(WanDit::DeclareTensors(c->dit));
  EXPECT_EQ(dit.size(), 825u);  // §1.9
  using S = kernels::Shape;
  EXPECT_EQ(dit.at("patch_embedding.weight"), (S{1536, 16, 1, 2, 2}));
  EXPECT_EQ(dit.at("text_embedding.0.weight"), (S{1536, 4096}));
  EXPECT_EQ(dit.at("time_embedding.0.weight"), (S{1536, 256}));
  EXPECT_EQ(dit.at("time_projection.1.weight"), (S{9216, 1536}));
  EXPECT_EQ(dit.at("head.modulation"), (S{1, 2, 1536}));
  EXPECT_EQ(dit.at("head.head.weight"), (S{64, 1536}));
  EXPECT_EQ(dit.at("blocks.29.modulation"), (S{1, 6, 1536}));
  EXPECT_EQ(dit.at("blocks.0.self_attn.norm_q.weight"), (S{1536}));
  EXPECT_EQ(dit.at("blocks.0.cross_attn.o.weight"), (S{1536, 1536}));
  EXPECT_EQ(dit.at("blocks.0.norm3.bias"), (S{1536}));
  EXPECT_EQ(dit.at("blocks.0.ffn.0.weight"), (S{8960, 1536}));
  EXPECT_EQ(dit.at("blocks.0.ffn.2.weight"), (S{1536, 8960}));
  int64_t params = 0;
  for (const auto& [n, s] : dit) params += kernels::NumElements(s);
  EXPECT_EQ(params, 1418996800);  // §7

  const auto t5 = ByName(Umt5Encoder::DeclareTensors(c->t5));
  EXPECT_EQ(t5.size(), 242u);  // §3.5
  EXPECT_EQ(t5.at("token_embedding.weight"), (S{256384, 4096}));
  EXPECT_EQ(t5.at("blocks.23.pos_embedding.embedding.weight"), (S{32, 64}));
  EXPECT_EQ(t5.at("blocks.0.ffn.gate.0.weight"), (S{10240, 4096}));
  EXPECT_EQ(t5.at("blocks.0.ffn.fc2.weight"), (S{4096, 10240}));
  int64_t t5_params = 0;
  for (const auto& [n, s] : t5) t5_params += kernels::NumElements(s);
  EXPECT_EQ(t5_params, 5680910336);  // §7

  const auto vae = ByName(WanVaeDecoder::DeclareTensors(c->vae));
  EXPECT_EQ(vae.size(), 108u);  // 194 in the file minus 86 encoder/quant tensors
  EXPECT_EQ(vae.at("conv2.weight"), (S{16, 16, 1, 1, 1}));
  EXPECT_EQ(vae.at("decoder.conv1.weight"), (S{384, 16, 3, 3, 3}));
  EXPECT_EQ(vae.at("decoder.middle.1.to_qkv.weight"), (S{1152, 384, 1, 1}));
  EXPECT_EQ(vae.at("decoder.middle.1.norm.gamma"), (S{384, 1, 1}));
  EXPECT_EQ(vae.at("decoder.upsamples.3.resample.1.weight"), (S{192, 384, 3, 3}));
  EXPECT_EQ(vae.at("decoder.upsamples.3.time_conv.weight"), (S{768, 384, 3, 1, 1}));
  EXPECT_EQ(vae.at("decoder.upsamples.4.shortcut.weight"), (S{384, 192, 1, 1, 1}));
  EXPECT_EQ(vae.at("decoder.upsamples.7.time_conv.weight"), (S{768, 384, 3, 1, 1}));
  EXPECT_EQ(vae.at("decoder.upsamples.11.resample.1.weight"), (S{96, 192, 3, 3}));
  EXPECT_EQ(vae.count("decoder.upsamples.11.time_conv.weight"), 0u);
  EXPECT_EQ(vae.at("decoder.upsamples.14.residual.6.weight"), (S{96, 96, 3, 3, 3}));
  EXPECT_EQ(vae.at("decoder.head.2.weight"), (S{3, 96, 3, 3, 3}));
  int64_t vae_params = 0;
  for (const auto& [n, s] : vae) vae_params += kernels::NumElements(s);
  // §4.3: decoder 73.30M + post-quant conv2 272.
  EXPECT_NEAR(static_cast<double>(vae_params - 272), 73.30e6, 0.01e6);
}

TEST(ModelConfig, Wan14bTensorShapesMatchTheOfficialTables) {
  auto c = ParseModelConfig(ConfigText("wan2.1-t2v-14b.yaml"), "14b");
  ASSERT_TRUE(c.ok()) << c.status();
  const auto dit = ByName(WanDit::DeclareTensors(c->dit));
  EXPECT_EQ(dit.size(), 1095u);  // §7
  EXPECT_EQ(dit.at("blocks.39.self_attn.q.weight"), (kernels::Shape{5120, 5120}));
  EXPECT_EQ(dit.at("blocks.0.ffn.0.weight"), (kernels::Shape{13824, 5120}));
  int64_t params = 0;
  for (const auto& [n, s] : dit) params += kernels::NumElements(s);
  EXPECT_EQ(params, 14288491584);  // §7
  const auto sla2 = ByName(WanDit::DeclareSla2Tensors(c->dit, c->attention));
  EXPECT_EQ(sla2.size(), 120u);
  // 21·45·80 = 75,600 tokens -> 591 query blocks (sla2.md).
  EXPECT_EQ(sla2.at("blocks.0.self_attn.sla2.alpha_logit"), (kernels::Shape{40, 591}));
}

// Each edit breaks one rule; the error must name the key.
struct BadCase {
  std::string from, to, key;
};

TEST(ModelConfig, InvalidConfigsNameTheKey) {
  const std::string good = ConfigText("wan2.1-t2v-1.3b.yaml");
  const std::vector<BadCase> cases = {
      {"  dim: 1536\n", "  dim: 1537\n", "dit.dim"},
      {"  num_heads: 12\n", "  num_heads: 0\n", "dit.num_heads"},
      {"  in_dim: 16\n", "  in_dim: 8\n", "dit.in_dim"},
      {"  out_dim: 16\n", "  out_dim: 4\n", "dit.out_dim"},
      {"  text_dim: 4096\n", "  text_dim: 2048\n", "dit.text_dim"},
      {"  patch_size: [1, 2, 2]\n", "  patch_size: [1, 2]\n", "dit.patch_size"},
      {"  freq_dim: 256\n", "  freq_dim: abc\n", "dit.freq_dim"},
      {"  mode: dense\n", "  mode: sparse\n", "attention.mode"},
      {"  keep_ratio: 0.1\n", "  keep_ratio: 1.5\n", "attention.keep_ratio"},
      {"  num_buckets: 32\n", "  num_buckets: 30\n", "t5.num_buckets"},
      {"  tokenizer: spiece.model\n", "  tokenizer: \"\"\n", "t5.tokenizer"},
      {"  temporal_downsample: [false, true, true]\n", "  temporal_downsample: [false, true]\n",
       "vae.temporal_downsample"},
      {"  dim_mult: [1, 2, 4, 4]\n", "  dim_mult: [1, 2, 4, 4, 4]\n", "vae.dim_mult"},
      {"  sampler: unipc\n", "  sampler: ddim\n", "sampling.sampler"},
      {"  steps: 50\n", "  steps: 0\n", "sampling.steps"},
      {"  guidance_scale: 5.0\n", "  guidance_scale: -1\n", "sampling.guidance_scale"},
      {"  width: 832\n", "  width: 830\n", "video.width"},
      {"  num_frames: 81\n", "  num_frames: 80\n", "video.num_frames"},
      {"  max_width: 1280\n", "  max_width: 640\n", "video.width"},
      {"  vae: [wan_2.1_vae.safetensors]\n", "  vae: [../escape.safetensors]\n", "weights.vae"},
      {"  vae: [wan_2.1_vae.safetensors]\n", "  vae: []\n", "weights.vae"},
      {"  eps: 1.0e-6\n", "  eps: 1.0e-6\n  qk_norm: true\n", "dit.qk_norm"},
      {"name: wan2.1-t2v-1.3b\n", "name: wan2.1-t2v-1.3b\nextra: 1\n", "extra"},
      {"  shift: 5.0\n", "", "sampling.shift"},
  };
  for (const auto& c : cases) {
    const std::string text = absl::StrReplaceAll(good, {{c.from, c.to}});
    ASSERT_NE(text, good) << "edit did not apply: " << c.from;
    auto r = ParseModelConfig(text, "test.yaml");
    ASSERT_FALSE(r.ok()) << "accepted: " << c.to;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(r.status().message()).find(c.key), std::string::npos)
        << "expected '" << c.key << "' in: " << r.status();
  }
}

TEST(ModelConfig, LatentStatsMustMatchZDim) {
  std::string text = ConfigText("wan2.1-t2v-1.3b.yaml");
  const size_t pos = text.find("  latents_std: [");
  const size_t end = text.find("]\n", pos);
  text.replace(pos, end - pos + 2, "  latents_std: [1.0, 2.0]\n");
  auto r = ParseModelConfig(text, "t");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("vae.latents_std"), std::string::npos);
}

TEST(ModelConfig, GarbageIsAnErrorNotACrash) {
  for (const std::string& text : {std::string("{{{"), std::string("- a\n- b\n"),
                                  std::string(""), std::string("name: [1, 2]\n"),
                                  std::string("name: x\ndit: 3\n")}) {
    auto r = ParseModelConfig(text, "junk.yaml");
    EXPECT_FALSE(r.ok()) << text;
    EXPECT_NE(std::string(r.status().message()).find("junk.yaml"), std::string::npos);
  }
}

TEST(ModelConfig, MissingFileIsNotFound) {
  EXPECT_EQ(LoadModelConfig("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sparsevid::engine
