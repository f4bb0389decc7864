// Maps the tensor names of the checkpoint layouts we accept onto the official
// Wan2.1 names the models declare (wan2.1.md §1.9, §3.5, §4.3):
//   DiT: official, diffusers (WanTransformer3DModel), and either with the
//        ComfyUI/sd.cpp prefix `model.diffusion_model.`
//   T5:  official, HF UMT5EncoderModel (`shared.weight`, `encoder.block.*`)
//   VAE: official, diffusers AutoencoderKLWan (`decoder.up_blocks.*`)
// Names that match no rule are returned unchanged (the weight store then
// reports them as unexpected).
#pragma once

#include <string>

namespace sparsevid::engine {

enum class WeightComponent { kDit, kT5, kVae };
const char* WeightComponentName(WeightComponent c);

// vae_num_res_blocks: the config's vae.num_res_blocks; the official decoder
// numbers its upsample modules flat, (num_res_blocks + 2) per stage.
std::string ToOfficialName(WeightComponent component, const std::string& name,
                           int vae_num_res_blocks = 2);

}  // namespace sparsevid::engine
