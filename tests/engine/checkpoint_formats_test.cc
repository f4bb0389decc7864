// A model whose files use diffusers (DiT with the ComfyUI prefix, VAE) and
// HF (T5) names, plus VAE encoder tensors the decoder does not need, loads
// and generates exactly what the official-name files generate.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>

#include "tests/engine/fixtures/tiny_model.h"
#include "worker/engine/pipeline.h"
#include "worker/engine/safetensors.h"

namespace sparsevid::engine {
namespace {

using Rule = std::pair<std::regex, std::string>;

// Official -> other-format names (the inverse of name_conversion, written
// independently from wan2.1.md §1.9, §3.5, §4.3).
std::string Rename(const std::string& name, const std::vector<Rule>& rules) {
  for (const auto& [re, to] : rules) {
    if (std::regex_match(name, re)) return std::regex_replace(name, re, to);
  }
  return name;
}

const std::vector<Rule>& DitToDiffusers() {
  static const std::vector<Rule> r = {
      {std::regex(R"(text_embedding\.0\.(.*))"), "condition_embedder.text_embedder.linear_1.$1"},
      {std::regex(R"(text_embedding\.2\.(.*))"), "condition_embedder.text_embedder.linear_2.$1"},
      {std::regex(R"(time_embedding\.0\.(.*))"), "condition_embedder.time_embedder.linear_1.$1"},
      {std::regex(R"(time_embedding\.2\.(.*))"), "condition_embedder.time_embedder.linear_2.$1"},
      {std::regex(R"(time_projection\.1\.(.*))"), "condition_embedder.time_proj.$1"},
      {std::regex(R"(head\.modulation)"), "scale_shift_table"},
      {std::regex(R"(head\.head\.(.*))"), "proj_out.$1"},
      {std::regex(R"(blocks\.(\d+)\.modulation)"), "blocks.$1.scale_shift_table"},
      {std::regex(R"(blocks\.(\d+)\.self_attn\.o\.(.*))"), "blocks.$1.attn1.to_out.0.$2"},
      {std::regex(R"(blocks\.(\d+)\.self_attn\.(q|k|v)\.(.*))"), "blocks.$1.attn1.to_$2.$3"},
      {std::regex(R"(blocks\.(\d+)\.self_attn\.(norm_.*))"), "blocks.$1.attn1.$2"},
      {std::regex(R"(blocks\.(\d+)\.cross_attn\.o\.(.*))"), "blocks.$1.attn2.to_out.0.$2"},
      {std::regex(R"(blocks\.(\d+)\.cross_attn\.(q|k|v)\.(.*))"), "blocks.$1.attn2.to_$2.$3"},
      {std::regex(R"(blocks\.(\d+)\.cross_attn\.(norm_.*))"), "blocks.$1.attn2.$2"},
      {std::regex(R"(blocks\.(\d+)\.norm3\.(.*))"), "blocks.$1.norm2.$2"},
      {std::regex(R"(blocks\.(\d+)\.ffn\.0\.(.*))"), "blocks.$1.ffn.net.0.proj.$2"},
      {std::regex(R"(blocks\.(\d+)\.ffn\.2\.(.*))"), "blocks.$1.ffn.net.2.$2"},
  };
  return r;
}

const std::vector<Rule>& T5ToHf() {
  static const std::vector<Rule> r = {
      {std::regex(R"(token_embedding\.weight)"), "shared.weight"},
      {std::regex(R"(norm\.weight)"), "encoder.final_layer_norm.weight"},
      {std::regex(R"(blocks\.(\d+)\.norm1\.(.*))"), "encoder.block.$1.layer.0.layer_norm.$2"},
      {std::regex(R"(blocks\.(\d+)\.attn\.(.*))"), "encoder.block.$1.layer.0.SelfAttention.$2"},
      {std::regex(R"(blocks\.(\d+)\.pos_embedding\.embedding\.(.*))"),
       "encoder.block.$1.layer.0.SelfAttention.relative_attention_bias.$2"},
      {std::regex(R"(blocks\.(\d+)\.norm2\.(.*))"), "encoder.block.$1.layer.1.layer_norm.$2"},
      {std::regex(R"(blocks\.(\d+)\.ffn\.gate\.0\.(.*))"), "encoder.block.$1.layer.1.DenseReluDense.wi_0.$2"},
      {std::regex(R"(blocks\.(\d+)\.ffn\.fc1\.(.*))"), "encoder.block.$1.layer.1.DenseReluDense.wi_1.$2"},
      {std::regex(R"(blocks\.(\d+)\.ffn\.fc2\.(.*))"), "encoder.block.$1.layer.1.DenseReluDense.wo.$2"},
  };
  return r;
}

// The fixture VAE has num_res_blocks 1: 3 modules per up stage.
const std::vector<Rule>& VaeToDiffusers() {
  static const std::vector<Rule> r = {
      {std::regex(R"(conv2\.(.*))"), "post_quant_conv.$1"},
      {std::regex(R"(decoder\.conv1\.(.*))"), "decoder.conv_in.$1"},
      {std::regex(R"(decoder\.head\.0\.(.*))"), "decoder.norm_out.$1"},
      {std::regex(R"(decoder\.head\.2\.(.*))"), "decoder.conv_out.$1"},
      {std::regex(R"(decoder\.middle\.1\.(.*))"), "decoder.mid_block.attentions.0.$1"},
      {std::regex(R"(decoder\.middle\.0\.(.*))"), "decoder.mid_block.resnets.0.$1"},
      {std::regex(R"(decoder\.middle\.2\.(.*))"), "decoder.mid_block.resnets.1.$1"},
  };
  return r;
}

std::string VaeName(const std::string& official) {
  std::string n = Rename(official, VaeToDiffusers());
  std::smatch m;
  static const std::regex up(R"(decoder\.upsamples\.(\d+)\.(.*))");
  if (std::regex_match(official, m, up)) {
    const int i = std::stoi(m[1]), stage = i / 3, j = i % 3;
    n = j == 2 ? "decoder.up_blocks." + std::to_string(stage) + ".upsamplers.0." + m[2].str()
               : "decoder.up_blocks." + std::to_string(stage) + ".resnets." + std::to_string(j) +
                     "." + m[2].str();
  }
  static const std::vector<Rule> res = {
      {std::regex(R"((.*)\.residual\.0\.(.*))"), "$1.norm1.$2"},
      {std::regex(R"((.*)\.residual\.2\.(.*))"), "$1.conv1.$2"},
      {std::regex(R"((.*)\.residual\.3\.(.*))"), "$1.norm2.$2"},
      {std::regex(R"((.*)\.residual\.6\.(.*))"), "$1.conv2.$2"},
      {std::regex(R"((.*)\.shortcut\.(.*))"), "$1.conv_shortcut.$2"},
  };
  return Rename(n, res);
}

void Rewrite(const std::string& path, const std::function<std::string(const std::string&)>& f,
             std::vector<std::pair<std::string, kernels::Tensor>> extra = {}) {
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::pair<std::string, kernels::Tensor>> out;
  for (const auto& e : (*file)->entries()) out.emplace_back(f(e.name), (*file)->GetF32(e));
  for (auto& x : extra) out.push_back(std::move(x));
  file->reset();
  ASSERT_TRUE(WriteSafetensors(path, out).ok());
}

std::vector<std::vector<uint8_t>> Frames(const std::string& dir) {
  EngineOptions o;
  o.threads = 2;
  auto p = Pipeline::Load(dir, o);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return {};
  GenerateParams g;
  g.prompt = "a cat walking across a sunny garden";
  g.steps = 1;
  g.seed = 3;
  std::vector<std::vector<uint8_t>> frames;
  auto st = (*p)->Generate(g, nullptr,
                           [&](const FrameBatch& b) {
                             for (auto& f : b.frames) frames.push_back(f);
                             return absl::OkStatus();
                           },
                           CancelToken());
  EXPECT_TRUE(st.ok()) << st.status();
  return frames;
}

TEST(CheckpointFormats, DiffusersAndHfNamesGenerateTheSameVideo) {
  const std::string base = std::string(::testing::TempDir()) + "/fmt_" + std::to_string(::getpid());
  const std::string official = base + "_official", other = base + "_other";
  ASSERT_TRUE(testing::WriteTinyModel(official).ok());
  ASSERT_TRUE(testing::WriteTinyModel(other).ok());
  ASSERT_NO_FATAL_FAILURE(Rewrite(other + "/diffusion_pytorch_model.safetensors",
                                  [](const std::string& n) {
                                    return "model.diffusion_model." + Rename(n, DitToDiffusers());
                                  }));
  kernels::Tensor emb;
  {
    auto f = SafetensorsFile::Open(other + "/t5.safetensors");
    ASSERT_TRUE(f.ok());
    emb = (*f)->GetF32(*(*f)->Find("token_embedding.weight"));
  }
  ASSERT_NO_FATAL_FAILURE(Rewrite(other + "/t5.safetensors",
                                  [](const std::string& n) { return Rename(n, T5ToHf()); },
                                  {{"encoder.embed_tokens.weight", emb}}));
  ASSERT_NO_FATAL_FAILURE(Rewrite(
      other + "/vae.safetensors", VaeName,
      {{"encoder.conv_in.weight", kernels::Tensor::Zeros({8, 3, 3, 3, 3})},
       {"quant_conv.weight", kernels::Tensor::Zeros({8, 8, 1, 1, 1})}}));

  {
    // The rewrite really produced foreign names.
    auto d = SafetensorsFile::Open(other + "/diffusion_pytorch_model.safetensors");
    ASSERT_TRUE(d.ok());
    EXPECT_EQ((*d)->Find("head.modulation"), nullptr);
    EXPECT_NE((*d)->Find("model.diffusion_model.blocks.0.attn1.to_q.weight"), nullptr);
    EXPECT_NE((*d)->Find("model.diffusion_model.blocks.1.norm2.bias"), nullptr);
    auto t = SafetensorsFile::Open(other + "/t5.safetensors");
    ASSERT_TRUE(t.ok());
    EXPECT_NE((*t)->Find("encoder.block.1.layer.1.DenseReluDense.wo.weight"), nullptr);
    auto v = SafetensorsFile::Open(other + "/vae.safetensors");
    ASSERT_TRUE(v.ok());
    EXPECT_NE((*v)->Find("decoder.up_blocks.1.upsamplers.0.time_conv.weight"), nullptr);
    EXPECT_NE((*v)->Find("decoder.up_blocks.1.resnets.0.conv_shortcut.weight"), nullptr);
    EXPECT_EQ((*v)->Find("decoder.conv1.weight"), nullptr);
  }
  const auto a = Frames(official);
  const auto b = Frames(other);
  ASSERT_EQ(a.size(), 9u);
  EXPECT_EQ(a, b);
  std::system(("rm -rf " + official + " " + other).c_str());
}

}  // namespace
}  // namespace sparsevid::engine
