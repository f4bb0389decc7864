// The Wan2.1 DiT (wan2.1.md §1): patch embedding, time and text embeddings,
// blocks with modulation, self-attention with 3-D RoPE (dense or SLA2),
// cross-attention, FFN, head and unpatchify. fp32 throughout (GEMM weights
// may be bf16/f16 in the file; the backend widens them).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/engine/model_config.h"
#include "worker/engine/tensor_spec.h"
#include "worker/engine/weight_store.h"

namespace sparsevid::engine {

enum class DitAttention { kDense, kSla2, kSla2LowBit };

struct DitAttentionSettings {
  DitAttention mode = DitAttention::kDense;
  float keep_ratio = 0.03f;
};

// Per-forward statistics of the self-attention.
struct DitForwardStats {
  double attention_seconds = 0;       // self-attention spans, device time (Backend::NewSpanTimer)
  std::vector<double> layer_density;  // kept fraction per layer (1 for dense)
  double alpha_mean = 0;              // mean over layers (0 for dense)
};

// Cross-attention keys/values of one prompt, per layer ([Lc, H, d] each);
// computed once per prompt and reused at every step (wan2.1.md §1.4).
struct DitTextContext {
  std::vector<kernels::Tensor> k, v;
};

class WanDit {
 public:
  // Every tensor of an official checkpoint for this config (825 for 1.3B).
  static TensorSpecs DeclareTensors(const DitConfig& cfg);
  // The SLA2 router/blend parameters (docs/conventions.md), all-or-none.
  static TensorSpecs DeclareSla2Tensors(const DitConfig& cfg, const AttentionConfig& attn);

  static absl::StatusOr<std::unique_ptr<WanDit>> Create(const DitConfig& cfg,
                                                        const AttentionConfig& attn,
                                                        const WeightStore& weights,
                                                        kernels::Backend& backend);

  bool has_sla2_weights() const { return has_sla2_; }
  const DitConfig& config() const { return cfg_; }

  // text: umT5 rows of the valid tokens [L_valid <= text_len, text_dim], on
  // the backend. Zero-padded to text_len before the text MLP.
  DitTextContext PrepareText(const kernels::Tensor& text);

  // latent: host [in_dim, T, H, W] f32 (T, H, W divisible by the patch).
  // Returns the velocity, host [out_dim, T, H, W].
  kernels::Tensor Forward(const kernels::Tensor& latent, int64_t timestep,
                          const DitTextContext& text, const DitAttentionSettings& attention,
                          DitForwardStats* stats);

 private:
  struct Block {
    kernels::Tensor modulation;  // [6, D]
    kernels::Tensor sq_w, sq_b, sk_w, sk_b, sv_w, sv_b, so_w, so_b, snorm_q, snorm_k;
    kernels::Tensor norm3_w, norm3_b;
    kernels::Tensor cq_w, cq_b, ck_w, ck_b, cv_w, cv_b, co_w, co_b, cnorm_q, cnorm_k;
    kernels::Tensor ffn0_w, ffn0_b, ffn2_w, ffn2_b;
    kernels::Tensor proj_q, proj_k;  // SLA2 router, [d, d]
    std::vector<float> alpha;        // sigmoid(alpha_logit), [H, T_train]
  };

  WanDit(const DitConfig& cfg, const AttentionConfig& attn, kernels::Backend& backend)
      : cfg_(cfg), attn_(attn), b_(backend) {}
  kernels::Tensor Linear(const kernels::Tensor& x, const kernels::Tensor& w,
                         const kernels::Tensor& bias);
  // α of layer `layer` resampled to T_m query blocks by nearest neighbour
  // over (i + 0.5)/T_m, on the backend; uploaded once per T_m.
  const kernels::Tensor& AlphaFor(size_t layer, int64_t t_m);

  DitConfig cfg_;
  AttentionConfig attn_;
  kernels::Backend& b_;
  bool has_sla2_ = false;
  kernels::Tensor patch_w_, patch_b_;  // [D, C*pt*ph*pw]
  kernels::Tensor text0_w_, text0_b_, text2_w_, text2_b_;
  kernels::Tensor time0_w_, time0_b_, time2_w_, time2_b_, proj_w_, proj_b_;
  kernels::Tensor head_mod_, head_w_, head_b_;  // [2, D], [out*p, D]
  std::vector<Block> blocks_;
  std::vector<kernels::Tensor> alpha_dev_;  // AlphaFor's uploads, for alpha_t_m_
  int64_t alpha_t_m_ = -1;
  // Times the self-attention spans of a forward without draining the
  // backend's queue around each (made on first use).
  std::unique_ptr<kernels::SpanTimer> attention_timer_;
};

// Sinusoidal time embedding (float64, cos first), [freq_dim].
std::vector<float> TimestepSinusoid(int64_t timestep, int64_t freq_dim);

// Host-side patchify / unpatchify (wan2.1.md §1.2, §1.6).
kernels::Tensor Patchify(const kernels::Tensor& latent, const std::array<int64_t, 3>& patch);
kernels::Tensor Unpatchify(const kernels::Tensor& tokens, int64_t channels,
                           const kernels::TokenGrid& grid, const std::array<int64_t, 3>& patch);

}  // namespace sparsevid::engine
