// The engine's Pipeline implementation, exposed inside the engine so the
// parity tests and benchmarks can drive the stages with given token ids and
// noise (the public API starts from a prompt and a seed).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "worker/engine/model_config.h"
#include "worker/engine/pipeline.h"
#include "worker/engine/tokenizer.h"
#include "worker/engine/umt5.h"
#include "worker/engine/wan_dit.h"
#include "worker/engine/wan_vae.h"

namespace sparsevid::engine {

// GenerateParams with the model defaults filled in and validated.
struct ResolvedParams {
  int width = 0, height = 0, num_frames = 0, steps = 0;
  float guidance = 0, shift = 0, keep_ratio = 0;
  std::string sampler;  // "euler" | "unipc"
  DitAttention attention = DitAttention::kDense;
  std::vector<int> ids, neg_ids;  // token ids with EOS
  kernels::Shape latent_shape;    // [z_dim, T', H/s, W/s]
};

class PipelineImpl : public Pipeline {
 public:
  static absl::StatusOr<std::unique_ptr<PipelineImpl>> Create(const std::string& model_dir,
                                                              const EngineOptions& options);

  const ModelInfo& info() const override { return info_; }
  absl::Status Validate(const GenerateParams& params) const override;
  absl::StatusOr<GenerateStats> Generate(const GenerateParams& params,
                                         const ProgressCallback& progress,
                                         const FrameSink& frames,
                                         const CancelToken& cancel) override;

  absl::StatusOr<ResolvedParams> Resolve(const GenerateParams& params) const;
  // The generation proper, from token ids and the initial noise (host
  // [z_dim, T', h, w]). Optional outputs for tests: `final_latent` receives
  // the clean latent, `video` the decoded float video [3, F, H, W] in [-1, 1].
  absl::StatusOr<GenerateStats> Run(const ResolvedParams& p, const kernels::Tensor& noise,
                                    const ProgressCallback& progress, const FrameSink& frames,
                                    const CancelToken& cancel,
                                    kernels::Tensor* final_latent = nullptr,
                                    kernels::Tensor* video = nullptr);

  const ModelConfig& config() const { return cfg_; }
  kernels::Backend& backend() { return *backend_; }

 private:
  PipelineImpl() = default;
  ModelConfig cfg_;
  ModelInfo info_;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Umt5Encoder> t5_;
  std::unique_ptr<WanDit> dit_;
  std::unique_ptr<WanVaeDecoder> vae_;
};

// Converts a decoded chunk (host [3, F, H, W] in [-1, 1]) to 8-bit RGB
// frames: trunc(((x + 1) / 2) · 255), the reference's save path.
FrameBatch ToFrameBatch(const kernels::Tensor& video, int first_frame);

}  // namespace sparsevid::engine
