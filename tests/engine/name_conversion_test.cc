// Official, diffusers, HF-T5 and prefixed names all map to the official ones.
#include "worker/engine/name_conversion.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sparsevid::engine {
namespace {

std::string Dit(const std::string& n) { return ToOfficialName(WeightComponent::kDit, n); }
std::string T5(const std::string& n) { return ToOfficialName(WeightComponent::kT5, n); }
std::string Vae(const std::string& n) { return ToOfficialName(WeightComponent::kVae, n, 2); }

// Each (input, expected official name) pair, checked one by one.
void ExpectConverted(std::string (*convert)(const std::string&),
                     const std::vector<std::pair<std::string, std::string>>& table) {
  for (const auto& [input, expected] : table) EXPECT_EQ(convert(input), expected) << input;
}

TEST(NameConversion, DitOfficialNamesAreKept) {
  for (const char* n : {"patch_embedding.weight", "blocks.3.self_attn.q.weight",
                        "blocks.3.norm3.bias", "head.head.weight", "head.modulation",
                        "blocks.12.self_attn.sla2.alpha_logit"}) {
    EXPECT_EQ(Dit(n), n);
  }
}

TEST(NameConversion, DitComfyPrefix) {
  ExpectConverted(Dit, {
      {"model.diffusion_model.blocks.0.ffn.0.weight", "blocks.0.ffn.0.weight"},
      {"model.diffusion_model.head.modulation", "head.modulation"},
  });
}

TEST(NameConversion, DitDiffusersNames) {
  ExpectConverted(Dit, {
      {"condition_embedder.text_embedder.linear_1.weight", "text_embedding.0.weight"},
      {"condition_embedder.text_embedder.linear_2.bias", "text_embedding.2.bias"},
      {"condition_embedder.time_embedder.linear_1.weight", "time_embedding.0.weight"},
      {"condition_embedder.time_embedder.linear_2.weight", "time_embedding.2.weight"},
      {"condition_embedder.time_proj.weight", "time_projection.1.weight"},
      {"scale_shift_table", "head.modulation"},
      {"proj_out.bias", "head.head.bias"},
      {"blocks.7.scale_shift_table", "blocks.7.modulation"},
      {"blocks.7.attn1.to_q.weight", "blocks.7.self_attn.q.weight"},
      {"blocks.7.attn1.to_out.0.bias", "blocks.7.self_attn.o.bias"},
      {"blocks.7.attn1.norm_k.weight", "blocks.7.self_attn.norm_k.weight"},
      {"blocks.7.attn2.to_v.weight", "blocks.7.cross_attn.v.weight"},
      {"blocks.7.attn2.norm_q.weight", "blocks.7.cross_attn.norm_q.weight"},
      // diffusers norm2 is the affine cross-attention norm, official norm3
      {"blocks.7.norm2.weight", "blocks.7.norm3.weight"},
      {"blocks.7.ffn.net.0.proj.weight", "blocks.7.ffn.0.weight"},
      {"blocks.7.ffn.net.2.bias", "blocks.7.ffn.2.bias"},
      {"model.diffusion_model.blocks.1.attn2.to_k.bias", "blocks.1.cross_attn.k.bias"},
  });
}

TEST(NameConversion, T5HuggingFaceNames) {
  ExpectConverted(T5, {
      {"shared.weight", "token_embedding.weight"},
      {"encoder.embed_tokens.weight", "token_embedding.weight"},
      {"encoder.final_layer_norm.weight", "norm.weight"},
      {"encoder.block.5.layer.0.layer_norm.weight", "blocks.5.norm1.weight"},
      {"encoder.block.5.layer.0.SelfAttention.q.weight", "blocks.5.attn.q.weight"},
      {"encoder.block.5.layer.0.SelfAttention.o.weight", "blocks.5.attn.o.weight"},
      {"encoder.block.5.layer.0.SelfAttention.relative_attention_bias.weight",
       "blocks.5.pos_embedding.embedding.weight"},
      {"encoder.block.5.layer.1.layer_norm.weight", "blocks.5.norm2.weight"},
      {"encoder.block.5.layer.1.DenseReluDense.wi_0.weight", "blocks.5.ffn.gate.0.weight"},
      {"encoder.block.5.layer.1.DenseReluDense.wi_1.weight", "blocks.5.ffn.fc1.weight"},
      {"encoder.block.5.layer.1.DenseReluDense.wo.weight", "blocks.5.ffn.fc2.weight"},
      {"blocks.5.attn.q.weight", "blocks.5.attn.q.weight"},
  });
}

TEST(NameConversion, VaeDiffusersNames) {
  ExpectConverted(Vae, {
      {"post_quant_conv.weight", "conv2.weight"},
      {"quant_conv.bias", "conv1.bias"},
      {"decoder.conv_in.weight", "decoder.conv1.weight"},
      {"decoder.mid_block.resnets.0.norm1.gamma", "decoder.middle.0.residual.0.gamma"},
      {"decoder.mid_block.resnets.1.conv2.weight", "decoder.middle.2.residual.6.weight"},
      {"decoder.mid_block.attentions.0.to_qkv.weight", "decoder.middle.1.to_qkv.weight"},
      {"decoder.up_blocks.0.resnets.2.conv1.bias", "decoder.upsamples.2.residual.2.bias"},
      {"decoder.up_blocks.0.upsamplers.0.time_conv.weight", "decoder.upsamples.3.time_conv.weight"},
      {"decoder.up_blocks.1.resnets.0.conv_shortcut.weight", "decoder.upsamples.4.shortcut.weight"},
      {"decoder.up_blocks.1.resnets.0.norm2.gamma", "decoder.upsamples.4.residual.3.gamma"},
      {"decoder.up_blocks.2.upsamplers.0.resample.1.weight",
       "decoder.upsamples.11.resample.1.weight"},
      {"decoder.up_blocks.3.resnets.2.conv2.weight", "decoder.upsamples.14.residual.6.weight"},
      {"decoder.norm_out.gamma", "decoder.head.0.gamma"},
      {"decoder.conv_out.bias", "decoder.head.2.bias"},
  });
  // Other res-block counts renumber the flat official list.
  EXPECT_EQ(ToOfficialName(WeightComponent::kVae, "decoder.up_blocks.1.upsamplers.0.time_conv.bias", 1),
            "decoder.upsamples.5.time_conv.bias");
}

TEST(NameConversion, UnknownNamesPassThrough) {
  EXPECT_EQ(Dit("something.else"), "something.else");
  EXPECT_EQ(T5("encoder.block.x.layer"), "encoder.block.x.layer");
  EXPECT_EQ(Vae("decoder.up_blocks.9"), "decoder.up_blocks.9");
}

}  // namespace
}  // namespace sparsevid::engine
