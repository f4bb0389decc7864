#include "worker/engine/wan_vae.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/weight_upload.h"

namespace sparsevid::engine {

using kernels::Shape;
using kernels::Tensor;

namespace {

// Decoder channel widths: [base·mult[-1]] + base·mult reversed.
std::vector<int64_t> DecoderDims(const VaeConfig& c) {
  std::vector<int64_t> dims = {c.base_dim * c.dim_mult.back()};
  for (auto it = c.dim_mult.rbegin(); it != c.dim_mult.rend(); ++it) dims.push_back(c.base_dim * *it);
  return dims;
}

void AddConv(TensorSpecs& s, const std::string& name, int64_t o, int64_t i, Shape k) {
  Shape w = {o, i};
  w.insert(w.end(), k.begin(), k.end());
  s.push_back({name + ".weight", w});
  s.push_back({name + ".bias", {o}});
}

void AddRes(TensorSpecs& s, const std::string& p, int64_t i, int64_t o) {
  s.push_back({p + ".residual.0.gamma", {i, 1, 1, 1}});
  AddConv(s, p + ".residual.2", o, i, {3, 3, 3});
  s.push_back({p + ".residual.3.gamma", {o, 1, 1, 1}});
  AddConv(s, p + ".residual.6", o, o, {3, 3, 3});
  if (i != o) AddConv(s, p + ".shortcut", o, i, {1, 1, 1});
}

// Visits the decoder layout once; both the declaration and the loader use it
// so names and shapes cannot drift apart.
struct Layout {
  struct Res { std::string name; int64_t in, out; };
  struct Up { std::string name; int64_t dim; bool temporal; };
  struct StageL { std::vector<Res> res; bool has_up = false; Up up; };
  std::vector<StageL> stages;
  int64_t mid = 0, out = 0;
};

Layout MakeLayout(const VaeConfig& c) {
  Layout l;
  const std::vector<int64_t> dims = DecoderDims(c);
  l.mid = dims[0];
  l.out = dims.back();
  const size_t n = c.dim_mult.size();
  int idx = 0;
  for (size_t i = 0; i + 1 < dims.size(); ++i) {
    Layout::StageL st;
    int64_t din = dims[i], dout = dims[i + 1];
    if (i >= 1) din /= 2;  // the previous stage's upsampler halves the channels
    for (int64_t r = 0; r <= c.num_res_blocks; ++r) {
      st.res.push_back({absl::StrCat("decoder.upsamples.", idx++), din, dout});
      din = dout;
    }
    if (i != n - 1) {
      st.has_up = true;
      // temporal_upsample = reversed temporal_downsample
      st.up = {absl::StrCat("decoder.upsamples.", idx++), dout, c.temporal_downsample[n - 2 - i]};
    }
    l.stages.push_back(std::move(st));
  }
  return l;
}

}  // namespace

TensorSpecs WanVaeDecoder::DeclareTensors(const VaeConfig& c) {
  const Layout l = MakeLayout(c);
  TensorSpecs s;
  AddConv(s, "conv2", c.z_dim, c.z_dim, {1, 1, 1});
  AddConv(s, "decoder.conv1", l.mid, c.z_dim, {3, 3, 3});
  AddRes(s, "decoder.middle.0", l.mid, l.mid);
  s.push_back({"decoder.middle.1.norm.gamma", {l.mid, 1, 1}});
  AddConv(s, "decoder.middle.1.to_qkv", 3 * l.mid, l.mid, {1, 1});
  AddConv(s, "decoder.middle.1.proj", l.mid, l.mid, {1, 1});
  AddRes(s, "decoder.middle.2", l.mid, l.mid);
  for (const auto& st : l.stages) {
    for (const auto& r : st.res) AddRes(s, r.name, r.in, r.out);
    if (st.has_up) {
      AddConv(s, st.up.name + ".resample.1", st.up.dim / 2, st.up.dim, {3, 3});
      if (st.up.temporal) AddConv(s, st.up.name + ".time_conv", 2 * st.up.dim, st.up.dim, {3, 1, 1});
    }
  }
  s.push_back({"decoder.head.0.gamma", {l.out, 1, 1, 1}});
  AddConv(s, "decoder.head.2", 3, l.out, {3, 3, 3});
  return s;
}

absl::StatusOr<std::unique_ptr<WanVaeDecoder>> WanVaeDecoder::Create(const VaeConfig& cfg,
                                                                     const WeightStore& w,
                                                                     kernels::Backend& b) {
  std::unique_ptr<WanVaeDecoder> m(new WanVaeDecoder(cfg, b));
  const Layout l = MakeLayout(cfg);
  int slot = 0;
  auto f32 = [&](const std::string& n) { return UploadF32(b, w, n); };
  auto gamma = [&](const std::string& n) {
    Tensor g = f32(n);
    return g.Reshape({g.dim(0)});
  };
  auto conv = [&](const std::string& n, int pad, bool cached) {
    Conv c;
    c.w = f32(n + ".weight");
    if (c.w.ndim() == 4) {  // Conv2d [O, C, kh, kw] -> [O, C, 1, kh, kw]
      c.w = c.w.Reshape({c.w.dim(0), c.w.dim(1), 1, c.w.dim(2), c.w.dim(3)});
    }
    c.b = f32(n + ".bias");
    c.pad = pad;
    c.slot = cached ? slot++ : -1;
    return c;
  };
  auto res = [&](const std::string& p, int64_t in, int64_t out) {
    ResBlock r;
    r.gamma1 = gamma(p + ".residual.0.gamma");
    r.conv1 = conv(p + ".residual.2", 1, true);
    r.gamma2 = gamma(p + ".residual.3.gamma");
    r.conv2 = conv(p + ".residual.6", 1, true);
    r.has_shortcut = in != out;
    if (r.has_shortcut) r.shortcut = conv(p + ".shortcut", 0, false);
    return r;
  };
  m->post_quant_ = conv("conv2", 0, false);
  m->conv_in_ = conv("decoder.conv1", 1, true);
  m->mid0_ = res("decoder.middle.0", l.mid, l.mid);
  m->attn_gamma_ = gamma("decoder.middle.1.norm.gamma");
  {
    const int64_t C = l.mid;
    Tensor qkv_w = f32("decoder.middle.1.to_qkv.weight").Reshape({3 * C, C});
    Tensor qkv_b = f32("decoder.middle.1.to_qkv.bias");
    m->attn_q_w_ = qkv_w.Narrow0(0, C);
    m->attn_k_w_ = qkv_w.Narrow0(C, C);
    m->attn_v_w_ = qkv_w.Narrow0(2 * C, C);
    m->attn_q_b_ = qkv_b.Narrow0(0, C);
    m->attn_k_b_ = qkv_b.Narrow0(C, C);
    m->attn_v_b_ = qkv_b.Narrow0(2 * C, C);
    m->attn_proj_w_ = f32("decoder.middle.1.proj.weight").Reshape({C, C});
    m->attn_proj_b_ = f32("decoder.middle.1.proj.bias");
  }
  m->mid2_ = res("decoder.middle.2", l.mid, l.mid);
  for (const auto& st : l.stages) {
    Stage s;
    for (const auto& r : st.res) s.res.push_back(res(r.name, r.in, r.out));
    s.has_upsample = st.has_up;
    if (st.has_up) {
      s.up.temporal = st.up.temporal;
      if (st.up.temporal) s.up.time_conv = conv(st.up.name + ".time_conv", 0, true);
      s.up.conv = conv(st.up.name + ".resample.1", 1, false);
    }
    m->stages_.push_back(std::move(s));
  }
  m->head_gamma_ = gamma("decoder.head.0.gamma");
  m->head_conv_ = conv("decoder.head.2", 1, true);
  m->num_slots_ = slot;
  return m;
}

int64_t WanVaeDecoder::FramesFor(int64_t latent_frames) const {
  return 1 + cfg_.temporal_stride() * (latent_frames - 1);
}

Tensor WanVaeDecoder::LastFrames(const Tensor& x, int64_t n) {
  // [C, T, H, W] -> last n frames, via a [T, C, HW] view.
  const int64_t C = x.dim(0), T = x.dim(1), H = x.dim(2), W = x.dim(3);
  if (n >= T) {  // a copy on the backend's device (Tensor::Clone is host-only)
    Tensor copy = b_.Empty(x.shape(), x.dtype());
    b_.Copy(x, copy);
    return copy;
  }
  Tensor tc = b_.Empty({T, C, H * W});
  b_.Permute(x.Reshape({C, T, H * W}), {1, 0, 2}, tc);
  Tensor out = b_.Empty({C, n, H * W});
  b_.Permute(tc.Narrow0(T - n, n), {1, 0, 2}, out);
  return out.Reshape({C, n, H, W});
}

Tensor WanVaeDecoder::RunConv(const Conv& c, const Tensor& x) {
  const int64_t kt = c.w.dim(2);
  Tensor input = x;
  if (c.slot >= 0 && kt > 1) {
    Slot& s = slots_[c.slot];
    const int64_t C = x.dim(0), H = x.dim(2), W = x.dim(3);
    const int64_t cached = s.state == SlotState::kFrames ? s.frames.dim(1) : 0;
    // hist = [cached frames, x]: the real frames this conv has seen lately.
    Tensor hist = x;
    if (cached > 0) {
      hist = b_.Empty({C, cached + x.dim(1), H, W});
      b_.Concat({s.frames, x}, 1, hist);
    }
    const int64_t zeros = (kt - 1) - cached;
    input = hist;
    if (zeros > 0) {
      input = b_.Empty({C, zeros + hist.dim(1), H, W});
      b_.Concat({b_.Zeros({C, zeros, H, W}), hist}, 1, input);
    }
    // The next chunk sees the last 2 frames (the reference's CACHE_T = 2).
    s.frames = LastFrames(hist, std::min<int64_t>(2, hist.dim(1)));
    s.state = SlotState::kFrames;
  } else if (kt > 1) {
    // Uncached causal conv: front zero padding.
    const int64_t C = x.dim(0), H = x.dim(2), W = x.dim(3);
    input = b_.Empty({C, kt - 1 + x.dim(1), H, W});
    b_.Concat({b_.Zeros({C, kt - 1, H, W}), x}, 1, input);
  }
  const int64_t kh = c.w.dim(3), kw = c.w.dim(4);
  Tensor y = b_.Empty({c.w.dim(0), input.dim(1) - kt + 1, input.dim(2) + 2 * c.pad - kh + 1,
                       input.dim(3) + 2 * c.pad - kw + 1});
  b_.Conv3d(input, c.w, &c.b, c.pad, c.pad, y);
  return y;
}

Tensor WanVaeDecoder::NormSilu(const Tensor& x, const Tensor& gamma) {
  Tensor y = b_.Empty(x.shape());
  b_.ChannelRmsNorm(x, gamma, y);
  b_.Silu(y, y);
  return y;
}

Tensor WanVaeDecoder::RunRes(const ResBlock& r, const Tensor& x) {
  Tensor shortcut = r.has_shortcut ? RunConv(r.shortcut, x) : x;
  Tensor h = RunConv(r.conv1, NormSilu(x, r.gamma1));
  h = RunConv(r.conv2, NormSilu(h, r.gamma2));
  b_.Add(h, shortcut, h);
  return h;
}

Tensor WanVaeDecoder::RunAttention(const Tensor& x) {
  // Single-head attention within each frame.
  const int64_t C = x.dim(0), T = x.dim(1), HW = x.dim(2) * x.dim(3);
  Tensor frames = b_.Empty({T, C, HW});
  b_.Permute(x.Reshape({C, T, HW}), {1, 0, 2}, frames);
  Tensor out_frames = b_.Empty({T, C, HW});
  Tensor normed = b_.Empty({C, HW});
  Tensor tokens = b_.Empty({HW, C});
  Tensor q = b_.Empty({HW, C}), k = b_.Empty({HW, C}), v = b_.Empty({HW, C});
  Tensor a = b_.Empty({HW, 1, C});
  Tensor y = b_.Empty({HW, C});
  for (int64_t t = 0; t < T; ++t) {
    const Tensor f = frames.Narrow0(t, 1).Reshape({C, HW});
    b_.ChannelRmsNorm(f, attn_gamma_, normed);
    b_.Permute(normed, {1, 0}, tokens);
    b_.Linear(tokens, attn_q_w_, &attn_q_b_, q);
    b_.Linear(tokens, attn_k_w_, &attn_k_b_, k);
    b_.Linear(tokens, attn_v_w_, &attn_v_b_, v);
    b_.Attention(q.Reshape({HW, 1, C}), k.Reshape({HW, 1, C}), v.Reshape({HW, 1, C}),
                 1.0f / std::sqrt(static_cast<float>(C)), nullptr, -1, a);
    b_.Linear(a.Reshape({HW, C}), attn_proj_w_, &attn_proj_b_, y);
    Tensor dst = out_frames.Narrow0(t, 1).Reshape({C, HW});
    b_.Permute(y, {1, 0}, dst);
    b_.Add(dst, f, dst);
  }
  Tensor out = b_.Empty({C, T, x.dim(2), x.dim(3)});
  Tensor out3 = out.Reshape({C, T, HW});
  b_.Permute(out_frames, {1, 0, 2}, out3);
  return out;
}

Tensor WanVaeDecoder::RunUpsample(const Upsample& u, const Tensor& x) {
  Tensor h = x;
  if (u.temporal) {
    Slot& s = slots_[u.time_conv.slot];
    if (s.state == SlotState::kEmpty) {
      // "Rep": the first chunk is not doubled in time and does not enter
      // the temporal conv's history.
      s.state = SlotState::kRep;
    } else {
      if (s.state == SlotState::kRep) s.state = SlotState::kEmpty;  // zero history
      const int64_t C = x.dim(0), T = x.dim(1), H = x.dim(2), W = x.dim(3);
      Tensor tc = RunConv(u.time_conv, x);  // [2C, T, H, W]: [0:C] -> 2t, [C:2C] -> 2t+1
      h = b_.Empty({C, 2 * T, H, W});
      Tensor h5 = h.Reshape({C, T, 2, H, W});
      b_.Permute(tc.Reshape({2, C, T, H, W}), {1, 2, 0, 3, 4}, h5);
    }
  }
  Tensor up = b_.Empty({h.dim(0), h.dim(1), 2 * h.dim(2), 2 * h.dim(3)});
  b_.UpsampleNearest2x(h, up);
  return RunConv(u.conv, up);
}

Tensor WanVaeDecoder::DecodeChunk(const Tensor& x) {
  Tensor h = RunConv(conv_in_, x);
  h = RunRes(mid0_, h);
  h = RunAttention(h);
  h = RunRes(mid2_, h);
  for (const Stage& st : stages_) {
    for (const ResBlock& r : st.res) h = RunRes(r, h);
    if (st.has_upsample) h = RunUpsample(st.up, h);
  }
  h = RunConv(head_conv_, NormSilu(h, head_gamma_));
  b_.Clamp(h, -1.0f, 1.0f, h);
  return h;
}

absl::Status WanVaeDecoder::Decode(const Tensor& z, const VaeChunkSink& sink) {
  const int64_t C = z.dim(0), T = z.dim(1), H = z.dim(2), W = z.dim(3);
  if (z.ndim() != 4 || C != cfg_.z_dim || T < 1) {
    return absl::InvalidArgumentError(absl::StrCat("VAE: latent ", kernels::ShapeString(z.shape()),
                                                   " does not match z_dim ", cfg_.z_dim));
  }
  // DiT space -> VAE space: z·std + mean per channel.
  Tensor zv = Tensor::Empty(z.shape());
  const float* src = z.f32();
  float* dst = zv.f32();
  const int64_t per_channel = T * H * W;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < per_channel; ++i)
      dst[c * per_channel + i] = src[c * per_channel + i] * cfg_.latents_std[c] + cfg_.latents_mean[c];
  Tensor x = RunConv(post_quant_, b_.ToDevice(zv));  // all frames at once (kernel 1)

  // One latent frame per chunk, walked in a [T, C, HW] layout.
  Tensor frames = b_.Empty({T, C, H * W});
  b_.Permute(x.Reshape({C, T, H * W}), {1, 0, 2}, frames);
  slots_.assign(num_slots_, Slot{});
  int first = 0;
  absl::Status status;
  for (int64_t t = 0; t < T && status.ok(); ++t) {
    Tensor chunk = frames.Narrow0(t, 1).Reshape({C, 1, H, W});
    Tensor video = b_.ToHost(DecodeChunk(chunk));
    status = sink(video, first);
    first += static_cast<int>(video.dim(1));
  }
  slots_.clear();  // release the feature cache
  return status;
}

}  // namespace sparsevid::engine
