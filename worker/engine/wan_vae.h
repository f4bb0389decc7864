// Wan-VAE decoder (wan2.1.md §4): causal 3-D convolutions with the per-chunk
// feature cache, residual blocks, the mid-block per-frame attention, 2-D/3-D
// upsamplers (with the "Rep" rule for the temporal upsampler) and the head.
// Decoding runs one latent frame per chunk, so memory is constant in the
// number of frames, and each chunk's frames are handed out as they appear.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "worker/engine/model_config.h"
#include "worker/engine/tensor_spec.h"
#include "worker/engine/weight_store.h"

namespace sparsevid::engine {

// video: host [3, frames, H, W] f32 in [-1, 1]; first_frame: index in the
// whole video. A non-OK status stops decoding and is returned.
using VaeChunkSink = std::function<absl::Status(const kernels::Tensor& video, int first_frame)>;

class WanVaeDecoder {
 public:
  // The decoder half of the VAE (plus the post-quant conv2): 108 tensors for
  // Wan2.1. The encoder and quant conv of a full checkpoint are skipped.
  static TensorSpecs DeclareTensors(const VaeConfig& cfg);
  static std::vector<std::string> IgnoredPrefixes() { return {"encoder.", "conv1."}; }

  static absl::StatusOr<std::unique_ptr<WanVaeDecoder>> Create(const VaeConfig& cfg,
                                                               const WeightStore& weights,
                                                               kernels::Backend& backend);

  // z: host [z_dim, T', h, w] in DiT (normalised) space.
  absl::Status Decode(const kernels::Tensor& z, const VaeChunkSink& sink);

  // Frames a latent of T' frames decodes to: 1 + temporal_stride·(T' − 1).
  int64_t FramesFor(int64_t latent_frames) const;

 private:
  struct Conv {  // causal conv; slot < 0: not cached (kernel 1 in time)
    kernels::Tensor w, b;
    int pad = 0;
    int slot = -1;
  };
  struct ResBlock {
    kernels::Tensor gamma1, gamma2;
    Conv conv1, conv2;
    bool has_shortcut = false;
    Conv shortcut;
  };
  struct Upsample {
    bool temporal = false;
    Conv time_conv;
    Conv conv;  // 3x3 spatial, as a [O, C, 1, 3, 3] conv
  };
  struct Stage {
    std::vector<ResBlock> res;
    bool has_upsample = false;
    Upsample up;
  };
  enum class SlotState { kEmpty, kRep, kFrames };
  struct Slot {
    SlotState state = SlotState::kEmpty;
    kernels::Tensor frames;  // [C, <=2, H, W]
  };

  WanVaeDecoder(const VaeConfig& cfg, kernels::Backend& b) : cfg_(cfg), b_(b) {}
  kernels::Tensor RunConv(const Conv& c, const kernels::Tensor& x);
  kernels::Tensor NormSilu(const kernels::Tensor& x, const kernels::Tensor& gamma);
  kernels::Tensor RunRes(const ResBlock& r, const kernels::Tensor& x);
  kernels::Tensor RunAttention(const kernels::Tensor& x);
  kernels::Tensor RunUpsample(const Upsample& u, const kernels::Tensor& x);
  kernels::Tensor LastFrames(const kernels::Tensor& x, int64_t n);
  kernels::Tensor DecodeChunk(const kernels::Tensor& x);

  VaeConfig cfg_;
  kernels::Backend& b_;
  Conv post_quant_;
  Conv conv_in_;
  ResBlock mid0_, mid2_;
  kernels::Tensor attn_gamma_, attn_q_w_, attn_q_b_, attn_k_w_, attn_k_b_, attn_v_w_,
      attn_v_b_, attn_proj_w_, attn_proj_b_;
  std::vector<Stage> stages_;
  kernels::Tensor head_gamma_;
  Conv head_conv_;
  int num_slots_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace sparsevid::engine
