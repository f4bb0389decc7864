#include "worker/engine/name_conversion.h"

#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sparsevid::engine {
namespace {

using Rules = std::vector<std::pair<const char*, const char*>>;

// Replaces the first matching prefix of `name` (rules are tried in order).
bool ReplacePrefix(std::string& name, const Rules& rules) {
  for (const auto& [from, to] : rules) {
    if (absl::StartsWith(name, from)) {
      name = absl::StrCat(to, name.substr(std::char_traits<char>::length(from)));
      return true;
    }
  }
  return false;
}

// Splits "<head><int>.<rest>" into the integer and rest; false if no match.
bool SplitIndexed(const std::string& name, const std::string& head, int* index,
                  std::string* rest) {
  if (!absl::StartsWith(name, head)) return false;
  const size_t start = head.size();
  size_t end = start;
  while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
  if (end == start || end >= name.size() || name[end] != '.') return false;
  *index = std::atoi(name.substr(start, end - start).c_str());
  *rest = name.substr(end + 1);
  return true;
}

std::string DitName(std::string name) {
  static const Rules kGlobal = {
      {"condition_embedder.text_embedder.linear_1.", "text_embedding.0."},
      {"condition_embedder.text_embedder.linear_2.", "text_embedding.2."},
      {"condition_embedder.time_embedder.linear_1.", "time_embedding.0."},
      {"condition_embedder.time_embedder.linear_2.", "time_embedding.2."},
      {"condition_embedder.time_proj.", "time_projection.1."},
      {"proj_out.", "head.head."},
  };
  static const Rules kBlock = {
      {"attn1.to_q.", "self_attn.q."},   {"attn1.to_k.", "self_attn.k."},
      {"attn1.to_v.", "self_attn.v."},   {"attn1.to_out.0.", "self_attn.o."},
      {"attn1.norm_q.", "self_attn.norm_q."}, {"attn1.norm_k.", "self_attn.norm_k."},
      {"attn1.sla2.", "self_attn.sla2."},
      {"attn2.to_q.", "cross_attn.q."},  {"attn2.to_k.", "cross_attn.k."},
      {"attn2.to_v.", "cross_attn.v."},  {"attn2.to_out.0.", "cross_attn.o."},
      {"attn2.norm_q.", "cross_attn.norm_q."}, {"attn2.norm_k.", "cross_attn.norm_k."},
      // diffusers calls the affine cross-attention norm norm2 (official norm3)
      {"norm2.", "norm3."},
      {"ffn.net.0.proj.", "ffn.0."},     {"ffn.net.2.", "ffn.2."},
  };
  if (absl::StartsWith(name, "model.diffusion_model.")) {
    name = name.substr(std::char_traits<char>::length("model.diffusion_model."));
  }
  if (name == "scale_shift_table") return "head.modulation";
  int i;
  std::string rest;
  if (SplitIndexed(name, "blocks.", &i, &rest)) {
    if (rest == "scale_shift_table") rest = "modulation";
    else ReplacePrefix(rest, kBlock);
    return absl::StrCat("blocks.", i, ".", rest);
  }
  ReplacePrefix(name, kGlobal);
  return name;
}

std::string T5Name(std::string name) {
  if (name == "shared.weight" || name == "encoder.embed_tokens.weight") {
    return "token_embedding.weight";
  }
  if (name == "encoder.final_layer_norm.weight") return "norm.weight";
  static const Rules kBlock = {
      {"layer.0.layer_norm.", "norm1."},
      {"layer.0.SelfAttention.relative_attention_bias.", "pos_embedding.embedding."},
      {"layer.0.SelfAttention.", "attn."},
      {"layer.1.layer_norm.", "norm2."},
      {"layer.1.DenseReluDense.wi_0.", "ffn.gate.0."},
      {"layer.1.DenseReluDense.wi_1.", "ffn.fc1."},
      {"layer.1.DenseReluDense.wo.", "ffn.fc2."},
  };
  int i;
  std::string rest;
  if (SplitIndexed(name, "encoder.block.", &i, &rest) && ReplacePrefix(rest, kBlock)) {
    return absl::StrCat("blocks.", i, ".", rest);
  }
  return name;
}

std::string VaeResidual(std::string rest) {
  static const Rules kResidual = {
      {"norm1.", "residual.0."}, {"conv1.", "residual.2."}, {"norm2.", "residual.3."},
      {"conv2.", "residual.6."}, {"conv_shortcut.", "shortcut."},
  };
  ReplacePrefix(rest, kResidual);
  return rest;
}

std::string VaeName(std::string name, int num_res_blocks) {
  static const Rules kTop = {
      {"post_quant_conv.", "conv2."},        {"quant_conv.", "conv1."},
      {"decoder.conv_in.", "decoder.conv1."}, {"decoder.norm_out.", "decoder.head.0."},
      {"decoder.conv_out.", "decoder.head.2."},
      {"decoder.mid_block.attentions.0.", "decoder.middle.1."},
  };
  if (ReplacePrefix(name, kTop)) return name;
  int i;
  std::string rest;
  if (SplitIndexed(name, "decoder.mid_block.resnets.", &i, &rest)) {
    return absl::StrCat("decoder.middle.", i == 0 ? 0 : 2, ".", VaeResidual(rest));
  }
  if (SplitIndexed(name, "decoder.up_blocks.", &i, &rest)) {
    const int per_stage = num_res_blocks + 2;  // res blocks + 1 resample
    int j;
    std::string tail;
    if (SplitIndexed(rest, "resnets.", &j, &tail)) {
      return absl::StrCat("decoder.upsamples.", i * per_stage + j, ".", VaeResidual(tail));
    }
    if (absl::StartsWith(rest, "upsamplers.0.")) {
      return absl::StrCat("decoder.upsamples.", i * per_stage + num_res_blocks + 1, ".",
                          rest.substr(std::char_traits<char>::length("upsamplers.0.")));
    }
  }
  return name;
}

}  // namespace

const char* WeightComponentName(WeightComponent c) {
  switch (c) {
    case WeightComponent::kDit: return "dit";
    case WeightComponent::kT5: return "t5";
    case WeightComponent::kVae: return "vae";
  }
  return "?";
}

std::string ToOfficialName(WeightComponent component, const std::string& name,
                           int vae_num_res_blocks) {
  switch (component) {
    case WeightComponent::kDit: return DitName(name);
    case WeightComponent::kT5: return T5Name(name);
    case WeightComponent::kVae: return VaeName(name, vae_num_res_blocks);
  }
  return name;
}

}  // namespace sparsevid::engine
