// The model directory schema (docs/model-config.md): model.yaml parsed into
// typed structs and checked for consistency. Unknown keys, missing keys and
// inconsistent dimensions are INVALID_ARGUMENT errors that name the key.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sparsevid::engine {

struct DitConfig {
  int64_t dim = 0;
  int64_t ffn_dim = 0;
  int64_t num_heads = 0;
  int64_t num_layers = 0;
  std::array<int64_t, 3> patch_size = {1, 2, 2};  // (t, h, w)
  int64_t in_dim = 0;
  int64_t out_dim = 0;
  int64_t text_dim = 0;
  int64_t text_len = 0;
  int64_t freq_dim = 0;
  double eps = 1e-6;
  int64_t head_dim() const { return num_heads ? dim / num_heads : 0; }
};

struct AttentionConfig {
  std::string mode = "dense";  // dense | sla2 | sla2_low_bit
  int64_t block_q = 128;
  int64_t block_k = 64;
  double keep_ratio = 0.03;
  std::array<int64_t, 3> trained_grid = {0, 0, 0};  // (f, h, w) tokens
  // Query blocks alpha was trained for: ceil(f*h*w / block_q).
  int64_t trained_query_blocks() const {
    const int64_t l = trained_grid[0] * trained_grid[1] * trained_grid[2];
    return block_q > 0 ? (l + block_q - 1) / block_q : 0;
  }
};

struct T5Config {
  int64_t vocab_size = 0;
  int64_t d_model = 0;
  int64_t num_heads = 0;
  int64_t d_kv = 0;
  int64_t d_ff = 0;
  int64_t num_layers = 0;
  int64_t num_buckets = 32;
  int64_t max_distance = 128;
  double eps = 1e-6;
  std::string tokenizer;  // relative to the model directory
};

struct VaeConfig {
  int64_t base_dim = 0;
  int64_t z_dim = 0;
  std::vector<int64_t> dim_mult;
  int64_t num_res_blocks = 0;
  std::vector<bool> temporal_downsample;
  std::vector<float> latents_mean;
  std::vector<float> latents_std;
  // Pixels per latent pixel (2^(stages-1)) and frames per latent frame.
  int64_t spatial_stride() const { return int64_t{1} << (dim_mult.size() - 1); }
  int64_t temporal_stride() const {
    int64_t s = 1;
    for (bool t : temporal_downsample) s *= t ? 2 : 1;
    return s;
  }
};

struct SamplingConfig {
  std::string sampler = "unipc";  // unipc | euler
  int64_t steps = 50;
  double guidance_scale = 5.0;
  double shift = 5.0;
  std::string negative_prompt;
};

struct VideoConfig {
  int64_t width = 0, height = 0, num_frames = 0, fps = 16;
  int64_t max_width = 0, max_height = 0, max_frames = 0;
};

struct WeightsConfig {
  std::vector<std::string> dit, t5, vae;
};

struct ModelConfig {
  std::string name;
  DitConfig dit;
  AttentionConfig attention;
  T5Config t5;
  VaeConfig vae;
  SamplingConfig sampling;
  VideoConfig video;
  WeightsConfig weights;
};

// Parses YAML (or JSON, which is YAML) text. `source` names the document in
// errors (a file path, "golden metadata", ...). Sections listed in
// `optional_sections` may be absent (parity files hold partial configs);
// absent sections keep their defaults and skip cross-checks.
absl::StatusOr<ModelConfig> ParseModelConfig(
    const std::string& text, const std::string& source,
    const std::vector<std::string>& optional_sections = {});

// Reads <model_dir>/model.yaml.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// Wan-VAE latent normalisation of Wan2.1 (wan2.1.md §4.1), used by the
// official-size configs and the test fixture.
extern const std::array<float, 16> kWanLatentsMean;
extern const std::array<float, 16> kWanLatentsStd;

}  // namespace sparsevid::engine
