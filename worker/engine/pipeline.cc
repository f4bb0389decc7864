#include "worker/engine/pipeline.h"

#include <chrono>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/flow_schedule.h"
#include "worker/engine/noise.h"
#include "worker/engine/pipeline_impl.h"
#include "worker/engine/sampler.h"
#include "worker/engine/status_macros.h"
#include "worker/engine/weight_store.h"
#if defined(SPARSEVID_HAVE_CUDA_BACKEND)
#include "kernels/cuda/cuda_backend.h"
#endif

namespace sparsevid::engine {

using kernels::Tensor;

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

absl::Status Invalid(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", what));
}

std::vector<std::string> Paths(const std::string& dir, const std::vector<std::string>& files) {
  std::vector<std::string> out;
  for (const auto& f : files) out.push_back(dir + "/" + f);
  return out;
}

AttentionMode ParseMode(const std::string& m) {
  if (m == "sla2") return AttentionMode::kSla2;
  if (m == "sla2_low_bit") return AttentionMode::kSla2LowBit;
  return AttentionMode::kDense;
}

// "cpu", "cuda" (= cuda:0) or "cuda:N".
absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateBackend(const EngineOptions& options) {
  const std::string& dev = options.device;
  if (dev == "cpu") return kernels::CreateCpuBackend(options.threads);
  int index = 0;
  const bool cuda = dev == "cuda" || (dev.rfind("cuda:", 0) == 0 &&
                                      absl::SimpleAtoi(dev.substr(5), &index) && index >= 0);
  if (!cuda) {
    return absl::InvalidArgumentError(
        absl::StrCat("device '", dev, "' is not recognised (expected cpu, cuda or cuda:N)"));
  }
#if defined(SPARSEVID_HAVE_CUDA_BACKEND)
  return kernels::cuda::CreateCudaBackend(index);
#else
  return absl::InvalidArgumentError(absl::StrCat(
      "device '", dev, "' is not available: this build has no CUDA support (only cpu)"));
#endif
}

}  // namespace

const char* StageName(Stage stage) {
  switch (stage) {
    case Stage::kTextEncode: return "text_encode";
    case Stage::kDenoise: return "denoise";
    case Stage::kVaeDecode: return "vae_decode";
  }
  return "unknown";
}

absl::Status CancelToken::Check() const {
  if (cancelled()) return absl::CancelledError("generation cancelled");
  if (deadline_ && std::chrono::system_clock::now() > *deadline_) {
    return absl::DeadlineExceededError("generation deadline exceeded");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Pipeline>> Pipeline::Load(const std::string& model_dir,
                                                          const EngineOptions& options) {
  SV_ASSIGN_OR_RETURN(std::unique_ptr<PipelineImpl> p, PipelineImpl::Create(model_dir, options));
  return std::unique_ptr<Pipeline>(std::move(p));
}

absl::StatusOr<std::unique_ptr<PipelineImpl>> PipelineImpl::Create(const std::string& model_dir,
                                                                   const EngineOptions& options) {
  std::unique_ptr<PipelineImpl> p(new PipelineImpl());
  SV_ASSIGN_OR_RETURN(p->cfg_, LoadModelConfig(model_dir));
  const ModelConfig& c = p->cfg_;
  SV_ASSIGN_OR_RETURN(p->backend_, CreateBackend(options));
  kernels::Backend& b = *p->backend_;

  SV_ASSIGN_OR_RETURN(p->tokenizer_, Tokenizer::Load(model_dir + "/" + c.t5.tokenizer));
  if (p->tokenizer_->vocab_size() > c.t5.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, "/model.yaml: t5.vocab_size (", c.t5.vocab_size,
        ") is smaller than the tokenizer's ", p->tokenizer_->vocab_size(), " pieces"));
  }

  WeightRequest t5_req;
  t5_req.component = WeightComponent::kT5;
  t5_req.files = Paths(model_dir, c.weights.t5);
  t5_req.required = Umt5Encoder::DeclareTensors(c.t5);
  SV_ASSIGN_OR_RETURN(WeightStore t5_w, WeightStore::Load(t5_req));
  SV_ASSIGN_OR_RETURN(p->t5_, Umt5Encoder::Create(c.t5, t5_w, b));

  WeightRequest dit_req;
  dit_req.component = WeightComponent::kDit;
  dit_req.files = Paths(model_dir, c.weights.dit);
  dit_req.required = WanDit::DeclareTensors(c.dit);
  dit_req.optional_groups = {WanDit::DeclareSla2Tensors(c.dit, c.attention)};
  SV_ASSIGN_OR_RETURN(WeightStore dit_w, WeightStore::Load(dit_req));
  if (c.attention.mode != "dense" && !dit_w.HasGroup(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_dir, ": attention.mode is ", c.attention.mode,
        " but the DiT weights have no SLA2 parameters (blocks.*.self_attn.sla2.*)"));
  }
  SV_ASSIGN_OR_RETURN(p->dit_, WanDit::Create(c.dit, c.attention, dit_w, b));

  WeightRequest vae_req;
  vae_req.component = WeightComponent::kVae;
  vae_req.files = Paths(model_dir, c.weights.vae);
  vae_req.required = WanVaeDecoder::DeclareTensors(c.vae);
  vae_req.ignored_prefixes = WanVaeDecoder::IgnoredPrefixes();
  vae_req.vae_num_res_blocks = static_cast<int>(c.vae.num_res_blocks);
  SV_ASSIGN_OR_RETURN(WeightStore vae_w, WeightStore::Load(vae_req));
  SV_ASSIGN_OR_RETURN(p->vae_, WanVaeDecoder::Create(c.vae, vae_w, b));

  ModelInfo& i = p->info_;
  i.name = c.name;
  i.device = b.name();
  i.spatial_multiple = static_cast<int>(
      c.vae.spatial_stride() * std::max(c.dit.patch_size[1], c.dit.patch_size[2]));
  i.temporal_stride = static_cast<int>(c.vae.temporal_stride() * c.dit.patch_size[0]);
  i.max_width = static_cast<int>(c.video.max_width);
  i.max_height = static_cast<int>(c.video.max_height);
  i.min_frames = 1;
  i.max_frames = static_cast<int>(c.video.max_frames);
  i.max_prompt_tokens = static_cast<int>(c.dit.text_len);
  i.default_width = static_cast<int>(c.video.width);
  i.default_height = static_cast<int>(c.video.height);
  i.default_frames = static_cast<int>(c.video.num_frames);
  i.default_fps = static_cast<int>(c.video.fps);
  i.default_steps = static_cast<int>(c.sampling.steps);
  i.default_guidance = static_cast<float>(c.sampling.guidance_scale);
  i.default_shift = static_cast<float>(c.sampling.shift);
  i.default_keep_ratio = static_cast<float>(c.attention.keep_ratio);
  i.default_attention = ParseMode(c.attention.mode);
  i.default_sampler = c.sampling.sampler == "euler" ? SamplerKind::kEuler : SamplerKind::kUniPC;
  i.default_negative_prompt = c.sampling.negative_prompt;
  return p;
}

absl::StatusOr<ResolvedParams> PipelineImpl::Resolve(const GenerateParams& in) const {
  const ModelConfig& c = cfg_;
  ResolvedParams r;
  const int64_t sw = c.vae.spatial_stride() * c.dit.patch_size[2];
  const int64_t sh = c.vae.spatial_stride() * c.dit.patch_size[1];
  r.width = in.width == 0 ? info_.default_width : in.width;
  r.height = in.height == 0 ? info_.default_height : in.height;
  r.num_frames = in.num_frames == 0 ? info_.default_frames : in.num_frames;
  if (r.width < 0 || r.width % sw != 0) {
    return Invalid("width", absl::StrCat("(", r.width, ") must be a positive multiple of ", sw));
  }
  if (r.width > info_.max_width) {
    return Invalid("width", absl::StrCat("(", r.width, ") exceeds the model's maximum ",
                                         info_.max_width));
  }
  if (r.height < 0 || r.height % sh != 0) {
    return Invalid("height", absl::StrCat("(", r.height, ") must be a positive multiple of ", sh));
  }
  if (r.height > info_.max_height) {
    return Invalid("height", absl::StrCat("(", r.height, ") exceeds the model's maximum ",
                                          info_.max_height));
  }
  const int ts = info_.temporal_stride;
  if (r.num_frames < info_.min_frames || r.num_frames > info_.max_frames) {
    return Invalid("num_frames", absl::StrCat("(", r.num_frames, ") must be in [",
                                              info_.min_frames, ", ", info_.max_frames, "]"));
  }
  if ((r.num_frames - 1) % ts != 0) {
    return Invalid("num_frames", absl::StrCat("(", r.num_frames, ") must be of the form ", ts,
                                              "n+1"));
  }
  r.steps = in.steps == 0 ? info_.default_steps : in.steps;
  if (r.steps < 1 || r.steps > 200) {
    return Invalid("steps", absl::StrCat("(", in.steps, ") must be in [1, 200] (0 = default)"));
  }
  r.guidance = in.guidance_scale.value_or(info_.default_guidance);
  if (!std::isfinite(r.guidance) || r.guidance < 0 || r.guidance > 30) {
    return Invalid("guidance_scale", absl::StrCat("(", r.guidance, ") must be in [0, 30]"));
  }
  r.shift = in.shift.value_or(info_.default_shift);
  if (!std::isfinite(r.shift) || r.shift <= 0 || r.shift > 20) {
    return Invalid("shift", absl::StrCat("(", r.shift, ") must be in (0, 20]"));
  }
  r.keep_ratio = in.keep_ratio.value_or(info_.default_keep_ratio);
  if (!std::isfinite(r.keep_ratio) || r.keep_ratio <= 0 || r.keep_ratio > 1) {
    return Invalid("keep_ratio", absl::StrCat("(", r.keep_ratio, ") must be in (0, 1]"));
  }
  SamplerKind sampler = in.sampler == SamplerKind::kModelDefault ? info_.default_sampler : in.sampler;
  switch (sampler) {
    case SamplerKind::kEuler: r.sampler = "euler"; break;
    case SamplerKind::kUniPC: r.sampler = "unipc"; break;
    default:
      return Invalid("sampler", absl::StrCat("(", static_cast<int>(in.sampler), ") is unknown"));
  }
  AttentionMode mode =
      in.attention == AttentionMode::kModelDefault ? info_.default_attention : in.attention;
  switch (mode) {
    case AttentionMode::kDense: r.attention = DitAttention::kDense; break;
    case AttentionMode::kSla2: r.attention = DitAttention::kSla2; break;
    case AttentionMode::kSla2LowBit: r.attention = DitAttention::kSla2LowBit; break;
    default:
      return Invalid("attention", absl::StrCat("(", static_cast<int>(in.attention),
                                               ") is unknown"));
  }
  if (Tokenizer::Clean(in.prompt).empty()) return Invalid("prompt", "must not be empty");
  SV_ASSIGN_OR_RETURN(r.ids, tokenizer_->Encode(in.prompt, info_.max_prompt_tokens, "prompt"));
  const std::string& neg =
      in.negative_prompt.empty() ? info_.default_negative_prompt : in.negative_prompt;
  SV_ASSIGN_OR_RETURN(r.neg_ids,
                      tokenizer_->Encode(neg, info_.max_prompt_tokens, "negative_prompt"));
  const int64_t s = c.vae.spatial_stride();
  r.latent_shape = {c.vae.z_dim, (r.num_frames - 1) / c.vae.temporal_stride() + 1,
                    r.height / s, r.width / s};
  return r;
}

absl::Status PipelineImpl::Validate(const GenerateParams& params) const {
  return Resolve(params).status();
}

absl::StatusOr<GenerateStats> PipelineImpl::Generate(const GenerateParams& params,
                                                     const ProgressCallback& progress,
                                                     const FrameSink& frames,
                                                     const CancelToken& cancel) {
  SV_ASSIGN_OR_RETURN(ResolvedParams r, Resolve(params));
  const Tensor noise = GaussianNoiseTensor(params.seed, r.latent_shape);
  return Run(r, noise, progress, frames, cancel);
}

absl::StatusOr<GenerateStats> PipelineImpl::Run(const ResolvedParams& p, const Tensor& noise,
                                                const ProgressCallback& progress,
                                                const FrameSink& frames,
                                                const CancelToken& cancel, Tensor* final_latent,
                                                Tensor* video_out) {
  kernels::Backend& b = *backend_;
  b.ResetPeakBytes();
  GenerateStats stats;
  SV_RETURN_IF_ERROR(cancel.Check());
  const bool cfg_on = p.guidance != 1.0f;

  // 1. Text: umT5 on the valid tokens, then the DiT's text MLP and per-layer
  //    cross-attention K/V, once per prompt.
  auto t0 = Clock::now();
  DitTextContext ctx_pos, ctx_neg;
  {
    SV_ASSIGN_OR_RETURN(Tensor pos, t5_->Encode(p.ids));
    ctx_pos = dit_->PrepareText(pos);
    if (cfg_on) {
      SV_ASSIGN_OR_RETURN(Tensor neg, t5_->Encode(p.neg_ids));
      ctx_neg = dit_->PrepareText(neg);
    }
  }
  stats.text_encode_seconds = Since(t0);
  if (progress) {
    ProgressEvent e;
    e.stage = Stage::kTextEncode;
    e.step = 1;
    e.total = 1;
    e.step_seconds = stats.text_encode_seconds;
    progress(e);
  }
  SV_RETURN_IF_ERROR(cancel.Check());

  // 2. Denoise.
  const FlowSchedule schedule = MakeFlowSchedule(p.steps, p.shift);
  SV_ASSIGN_OR_RETURN(std::unique_ptr<Sampler> sampler, MakeSampler(p.sampler, schedule));
  SV_CHECK(noise.shape() == p.latent_shape, "noise shape");
  std::vector<float> x = noise.ToVector();
  const DitAttentionSettings attn{p.attention, p.keep_ratio};
  stats.video_tokens = (p.latent_shape[1] / cfg_.dit.patch_size[0]) *
                       (p.latent_shape[2] / cfg_.dit.patch_size[1]) *
                       (p.latent_shape[3] / cfg_.dit.patch_size[2]);
  double density_sum = 0;
  t0 = Clock::now();
  for (int i = 0; i < p.steps; ++i) {
    const auto step_start = Clock::now();
    const Tensor xt = Tensor::FromVector(x, p.latent_shape);
    DitForwardStats sc, su;
    const Tensor vc = dit_->Forward(xt, schedule.timesteps[i], ctx_pos, attn, &sc);
    std::vector<float> v = vc.ToVector();
    ProgressEvent e;
    e.stage = Stage::kDenoise;
    e.step = i + 1;
    e.total = p.steps;
    e.attention_seconds = sc.attention_seconds;
    e.layer_density = sc.layer_density;
    e.alpha_mean = sc.alpha_mean;
    if (cfg_on) {
      const std::vector<float> vu = dit_->Forward(xt, schedule.timesteps[i], ctx_neg, attn, &su)
                                        .ToVector();
      for (size_t k = 0; k < v.size(); ++k) v[k] = vu[k] + p.guidance * (v[k] - vu[k]);
      e.attention_seconds += su.attention_seconds;
      for (size_t l = 0; l < e.layer_density.size(); ++l) {
        e.layer_density[l] = 0.5 * (e.layer_density[l] + su.layer_density[l]);
      }
      e.alpha_mean = 0.5 * (sc.alpha_mean + su.alpha_mean);
    }
    sampler->Step(i, v, x);
    double density = 0;
    for (double d : e.layer_density) density += d;
    e.attention_density = e.layer_density.empty() ? 1.0 : density / e.layer_density.size();
    e.step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    stats.attention_seconds += e.attention_seconds;
    density_sum += e.attention_density;
    if (progress) progress(e);
    SV_RETURN_IF_ERROR(cancel.Check());
  }
  stats.denoise_seconds = Since(t0);
  stats.mean_attention_density = density_sum / p.steps;
  ctx_pos = DitTextContext{};  // release the cross-attention K/V
  ctx_neg = DitTextContext{};
  const Tensor latent = Tensor::FromVector(x, p.latent_shape);
  if (final_latent) *final_latent = latent.Clone();

  // 3. VAE decode, one latent frame per chunk; frames leave as they appear.
  t0 = Clock::now();
  const int chunks = static_cast<int>(p.latent_shape[1]);
  int chunk = 0;
  std::vector<float> video_all;  // [3][F][H][W], only when requested
  int64_t video_h = 0, video_w = 0;
  std::vector<std::vector<float>> planes(3);
  auto chunk_t0 = t0;  // per-chunk time for progress events
  SV_RETURN_IF_ERROR(vae_->Decode(latent, [&](const Tensor& video, int first) -> absl::Status {
    if (video_out) {
      const std::vector<float> v = video.ToVector();
      const size_t plane = v.size() / 3;
      for (int c = 0; c < 3; ++c) {
        planes[c].insert(planes[c].end(), v.begin() + c * plane, v.begin() + (c + 1) * plane);
      }
      video_h = video.dim(2);
      video_w = video.dim(3);
    }
    const FrameBatch batch = ToFrameBatch(video, first);
    stats.frames += static_cast<int>(batch.frames.size());
    if (frames) SV_RETURN_IF_ERROR(frames(batch));
    ++chunk;
    if (progress) {
      ProgressEvent e;
      e.stage = Stage::kVaeDecode;
      e.step = chunk;
      e.total = chunks;
      e.step_seconds = Since(chunk_t0);
      progress(e);
    }
    chunk_t0 = Clock::now();
    return cancel.Check();
  }));
  stats.vae_decode_seconds = Since(t0);
  if (video_out) {
    for (auto& pl : planes) video_all.insert(video_all.end(), pl.begin(), pl.end());
    *video_out = Tensor::FromVector(video_all, {3, stats.frames, video_h, video_w});
  }
  stats.peak_bytes = b.PeakBytes();
  return stats;
}

FrameBatch ToFrameBatch(const Tensor& video, int first_frame) {
  const int64_t F = video.dim(1), H = video.dim(2), W = video.dim(3);
  FrameBatch batch;
  batch.width = static_cast<int>(W);
  batch.height = static_cast<int>(H);
  batch.first_frame = first_frame;
  const float* v = video.f32();
  const int64_t plane = F * H * W;
  for (int64_t f = 0; f < F; ++f) {
    std::vector<uint8_t> rgb(H * W * 3);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          float s = v[c * plane + (f * H + y) * W + x];
          s = std::min(1.0f, std::max(-1.0f, s));
          rgb[(y * W + x) * 3 + c] = static_cast<uint8_t>((s + 1.0f) / 2.0f * 255.0f);
        }
    batch.frames.push_back(std::move(rgb));
  }
  return batch;
}

}  // namespace sparsevid::engine
