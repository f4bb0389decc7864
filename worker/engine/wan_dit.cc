#include "worker/engine/wan_dit.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/engine/weight_upload.h"

namespace sparsevid::engine {

using kernels::Shape;
using kernels::Tensor;

namespace {

// Row j of a [R, D] tensor as a [D] view.
Tensor Row(const Tensor& t, int64_t j) { return t.Narrow0(j, 1).Reshape({t.dim(1)}); }

}  // namespace

TensorSpecs WanDit::DeclareTensors(const DitConfig& c) {
  const int64_t D = c.dim, F = c.ffn_dim;
  const auto& p = c.patch_size;
  TensorSpecs s = {
      {"patch_embedding.weight", {D, c.in_dim, p[0], p[1], p[2]}},
      {"patch_embedding.bias", {D}},
      {"text_embedding.0.weight", {D, c.text_dim}},
      {"text_embedding.0.bias", {D}},
      {"text_embedding.2.weight", {D, D}},
      {"text_embedding.2.bias", {D}},
      {"time_embedding.0.weight", {D, c.freq_dim}},
      {"time_embedding.0.bias", {D}},
      {"time_embedding.2.weight", {D, D}},
      {"time_embedding.2.bias", {D}},
      {"time_projection.1.weight", {6 * D, D}},
      {"time_projection.1.bias", {6 * D}},
  };
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("blocks.", i, ".");
    s.push_back({b + "modulation", {1, 6, D}});
    for (const char* attn : {"self_attn.", "cross_attn."}) {
      for (const char* proj : {"q", "k", "v", "o"}) {
        s.push_back({absl::StrCat(b, attn, proj, ".weight"), {D, D}});
        s.push_back({absl::StrCat(b, attn, proj, ".bias"), {D}});
      }
      s.push_back({absl::StrCat(b, attn, "norm_q.weight"), {D}});
      s.push_back({absl::StrCat(b, attn, "norm_k.weight"), {D}});
    }
    s.push_back({b + "norm3.weight", {D}});
    s.push_back({b + "norm3.bias", {D}});
    s.push_back({b + "ffn.0.weight", {F, D}});
    s.push_back({b + "ffn.0.bias", {F}});
    s.push_back({b + "ffn.2.weight", {D, F}});
    s.push_back({b + "ffn.2.bias", {D}});
  }
  s.push_back({"head.modulation", {1, 2, D}});
  s.push_back({"head.head.weight", {c.out_dim * p[0] * p[1] * p[2], D}});
  s.push_back({"head.head.bias", {c.out_dim * p[0] * p[1] * p[2]}});
  return s;
}

TensorSpecs WanDit::DeclareSla2Tensors(const DitConfig& c, const AttentionConfig& a) {
  const int64_t d = c.head_dim();
  TensorSpecs s;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("blocks.", i, ".self_attn.sla2.");
    s.push_back({b + "proj_q.weight", {d, d}});
    s.push_back({b + "proj_k.weight", {d, d}});
    s.push_back({b + "alpha_logit", {c.num_heads, a.trained_query_blocks()}});
  }
  return s;
}

absl::StatusOr<std::unique_ptr<WanDit>> WanDit::Create(const DitConfig& cfg,
                                                       const AttentionConfig& attn,
                                                       const WeightStore& w,
                                                       kernels::Backend& b) {
  std::unique_ptr<WanDit> m(new WanDit(cfg, attn, b));
  const int64_t D = cfg.dim;
  auto lin = [&](const std::string& n) { return UploadLinear(b, w, n); };
  auto f32 = [&](const std::string& n) { return UploadF32(b, w, n); };
  m->patch_w_ = b.ToDevice(w.GetF32("patch_embedding.weight"));
  m->patch_w_ = m->patch_w_.Reshape({D, m->patch_w_.numel() / D});
  m->patch_b_ = f32("patch_embedding.bias");
  m->text0_w_ = lin("text_embedding.0.weight");
  m->text0_b_ = f32("text_embedding.0.bias");
  m->text2_w_ = lin("text_embedding.2.weight");
  m->text2_b_ = f32("text_embedding.2.bias");
  m->time0_w_ = lin("time_embedding.0.weight");
  m->time0_b_ = f32("time_embedding.0.bias");
  m->time2_w_ = lin("time_embedding.2.weight");
  m->time2_b_ = f32("time_embedding.2.bias");
  m->proj_w_ = lin("time_projection.1.weight");
  m->proj_b_ = f32("time_projection.1.bias");
  m->head_mod_ = f32("head.modulation").Reshape({2, D});
  m->head_w_ = lin("head.head.weight");
  m->head_b_ = f32("head.head.bias");
  m->has_sla2_ = w.Has("blocks.0.self_attn.sla2.alpha_logit");
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = absl::StrCat("blocks.", i, ".");
    Block blk;
    blk.modulation = f32(p + "modulation").Reshape({6, D});
    blk.sq_w = lin(p + "self_attn.q.weight"); blk.sq_b = f32(p + "self_attn.q.bias");
    blk.sk_w = lin(p + "self_attn.k.weight"); blk.sk_b = f32(p + "self_attn.k.bias");
    blk.sv_w = lin(p + "self_attn.v.weight"); blk.sv_b = f32(p + "self_attn.v.bias");
    blk.so_w = lin(p + "self_attn.o.weight"); blk.so_b = f32(p + "self_attn.o.bias");
    blk.snorm_q = f32(p + "self_attn.norm_q.weight");
    blk.snorm_k = f32(p + "self_attn.norm_k.weight");
    blk.norm3_w = f32(p + "norm3.weight"); blk.norm3_b = f32(p + "norm3.bias");
    blk.cq_w = lin(p + "cross_attn.q.weight"); blk.cq_b = f32(p + "cross_attn.q.bias");
    blk.ck_w = lin(p + "cross_attn.k.weight"); blk.ck_b = f32(p + "cross_attn.k.bias");
    blk.cv_w = lin(p + "cross_attn.v.weight"); blk.cv_b = f32(p + "cross_attn.v.bias");
    blk.co_w = lin(p + "cross_attn.o.weight"); blk.co_b = f32(p + "cross_attn.o.bias");
    blk.cnorm_q = f32(p + "cross_attn.norm_q.weight");
    blk.cnorm_k = f32(p + "cross_attn.norm_k.weight");
    blk.ffn0_w = lin(p + "ffn.0.weight"); blk.ffn0_b = f32(p + "ffn.0.bias");
    blk.ffn2_w = lin(p + "ffn.2.weight"); blk.ffn2_b = f32(p + "ffn.2.bias");
    if (m->has_sla2_) {
      blk.proj_q = f32(p + "self_attn.sla2.proj_q.weight");
      blk.proj_k = f32(p + "self_attn.sla2.proj_k.weight");
      const std::vector<float> logit = w.GetF32(p + "self_attn.sla2.alpha_logit").ToVector();
      for (float l : logit) blk.alpha.push_back(1.0f / (1.0f + std::exp(-l)));
    }
    m->blocks_.push_back(std::move(blk));
  }
  return m;
}

Tensor WanDit::Linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  Tensor y = b_.Empty({x.dim(0), w.dim(0)});
  b_.Linear(x, w, bias.defined() ? &bias : nullptr, y);
  return y;
}

const Tensor& WanDit::AlphaFor(size_t layer, int64_t t_m) {
  if (alpha_t_m_ != t_m) {
    alpha_dev_.assign(blocks_.size(), Tensor());
    alpha_t_m_ = t_m;
  }
  if (alpha_dev_[layer].defined()) return alpha_dev_[layer];
  const Block& blk = blocks_[layer];
  const int64_t H = cfg_.num_heads;
  const int64_t t_a = static_cast<int64_t>(blk.alpha.size()) / H;
  std::vector<float> a(H * t_m);
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < t_m; ++i) {
      int64_t src = i;
      if (t_a != t_m) {
        const double pos = (static_cast<double>(i) + 0.5) / static_cast<double>(t_m);
        src = std::min<int64_t>(t_a - 1, static_cast<int64_t>(std::floor(pos * t_a)));
      }
      a[h * t_m + i] = blk.alpha[h * t_a + src];
    }
  }
  return alpha_dev_[layer] = b_.ToDevice(Tensor::FromVector(a, {H, t_m}));
}

std::vector<float> TimestepSinusoid(int64_t timestep, int64_t freq_dim) {
  const int64_t half = freq_dim / 2;
  std::vector<float> s(freq_dim);
  for (int64_t k = 0; k < half; ++k) {
    const double omega = std::pow(10000.0, -static_cast<double>(k) / static_cast<double>(half));
    const double arg = static_cast<double>(timestep) * omega;
    s[k] = static_cast<float>(std::cos(arg));
    s[half + k] = static_cast<float>(std::sin(arg));
  }
  return s;
}

Tensor Patchify(const Tensor& latent, const std::array<int64_t, 3>& p) {
  const int64_t C = latent.dim(0), T = latent.dim(1), H = latent.dim(2), W = latent.dim(3);
  const int64_t F = T / p[0], Hp = H / p[1], Wp = W / p[2];
  const int64_t K = C * p[0] * p[1] * p[2];
  Tensor out = Tensor::Empty({F * Hp * Wp, K});
  const float* x = latent.f32();
  float* y = out.f32();
  for (int64_t f = 0; f < F; ++f)
    for (int64_t h = 0; h < Hp; ++h)
      for (int64_t w = 0; w < Wp; ++w) {
        float* row = y + ((f * Hp + h) * Wp + w) * K;
        int64_t k = 0;  // patch vector order (c, dt, dh, dw)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t dt = 0; dt < p[0]; ++dt)
            for (int64_t dh = 0; dh < p[1]; ++dh)
              for (int64_t dw = 0; dw < p[2]; ++dw)
                row[k++] = x[((c * T + f * p[0] + dt) * H + h * p[1] + dh) * W + w * p[2] + dw];
      }
  return out;
}

Tensor Unpatchify(const Tensor& tokens, int64_t C, const kernels::TokenGrid& g,
                  const std::array<int64_t, 3>& p) {
  const int64_t T = g.frames * p[0], H = g.height * p[1], W = g.width * p[2];
  const int64_t K = tokens.dim(1);
  Tensor out = Tensor::Empty({C, T, H, W});
  const float* x = tokens.f32();
  float* y = out.f32();
  for (int64_t f = 0; f < g.frames; ++f)
    for (int64_t h = 0; h < g.height; ++h)
      for (int64_t w = 0; w < g.width; ++w) {
        const float* row = x + ((f * g.height + h) * g.width + w) * K;
        int64_t k = 0;  // token output order (dt, dh, dw, c), c fastest
        for (int64_t dt = 0; dt < p[0]; ++dt)
          for (int64_t dh = 0; dh < p[1]; ++dh)
            for (int64_t dw = 0; dw < p[2]; ++dw)
              for (int64_t c = 0; c < C; ++c)
                y[((c * T + f * p[0] + dt) * H + h * p[1] + dh) * W + w * p[2] + dw] = row[k++];
      }
  return out;
}

DitTextContext WanDit::PrepareText(const Tensor& text) {
  const int64_t D = cfg_.dim, H = cfg_.num_heads, d = cfg_.head_dim();
  const int64_t Lc = cfg_.text_len;
  SV_CHECK(text.ndim() == 2 && text.dim(1) == cfg_.text_dim && text.dim(0) <= Lc,
           "DiT text context %s", kernels::ShapeString(text.shape()).c_str());
  Tensor padded = b_.Zeros({Lc, cfg_.text_dim});
  if (text.dim(0) > 0) {
    Tensor head = padded.Narrow0(0, text.dim(0));
    b_.Copy(text, head);
  }
  Tensor h = Linear(padded, text0_w_, text0_b_);
  b_.GeluTanh(h, h);
  Tensor c = Linear(h, text2_w_, text2_b_);
  DitTextContext ctx;
  for (const Block& blk : blocks_) {
    Tensor k = Linear(c, blk.ck_w, blk.ck_b);
    b_.RmsNorm(k, &blk.cnorm_k, static_cast<float>(cfg_.eps), k);
    Tensor v = Linear(c, blk.cv_w, blk.cv_b);
    ctx.k.push_back(k.Reshape({Lc, H, d}));
    ctx.v.push_back(v.Reshape({Lc, H, d}));
  }
  (void)D;
  return ctx;
}

Tensor WanDit::Forward(const Tensor& latent, int64_t timestep, const DitTextContext& text,
                       const DitAttentionSettings& attention, DitForwardStats* stats) {
  const auto& p = cfg_.patch_size;
  const int64_t D = cfg_.dim, H = cfg_.num_heads, d = cfg_.head_dim();
  const float eps = static_cast<float>(cfg_.eps);
  SV_CHECK(latent.ndim() == 4 && latent.dim(0) == cfg_.in_dim && latent.dim(1) % p[0] == 0 &&
               latent.dim(2) % p[1] == 0 && latent.dim(3) % p[2] == 0,
           "DiT latent %s", kernels::ShapeString(latent.shape()).c_str());
  kernels::TokenGrid grid{latent.dim(1) / p[0], latent.dim(2) / p[1], latent.dim(3) / p[2]};
  const int64_t L = grid.tokens();

  // Embeddings.
  Tensor x = Linear(b_.ToDevice(Patchify(latent, p)), patch_w_, patch_b_);  // [L, D]
  Tensor s = b_.ToDevice(Tensor::FromVector(TimestepSinusoid(timestep, cfg_.freq_dim),
                                            {1, cfg_.freq_dim}));
  Tensor e = Linear(s, time0_w_, time0_b_);
  b_.Silu(e, e);
  e = Linear(e, time2_w_, time2_b_);  // [1, D], used by the head
  Tensor e_act = b_.Empty({1, D});
  b_.Silu(e, e_act);
  Tensor e0 = Linear(e_act, proj_w_, proj_b_).Reshape({6, D});

  const bool sparse = attention.mode != DitAttention::kDense;
  const int64_t t_m = (L + attn_.block_q - 1) / attn_.block_q;
  if (stats) {
    stats->attention_seconds = 0;
    stats->layer_density.assign(blocks_.size(), 1.0);
    stats->alpha_mean = 0;
  }

  // Per-layer SLA2 statistics, complete once the queue drains (the final
  // ToHost below); timing spans likewise.
  std::vector<kernels::Sla2Stats> layer_stats(blocks_.size());
  if (stats && !attention_timer_) attention_timer_ = b_.NewSpanTimer();

  Tensor mod = b_.Empty({6, D});
  Tensor h = b_.Empty({L, D});
  Tensor attn_out = b_.Empty({L, H, d});
  for (size_t li = 0; li < blocks_.size(); ++li) {
    const Block& blk = blocks_[li];
    b_.Add(blk.modulation, e0, mod);
    const Tensor sh1 = Row(mod, 0), sc1 = Row(mod, 1), g1 = Row(mod, 2);
    const Tensor sh2 = Row(mod, 3), sc2 = Row(mod, 4), g2 = Row(mod, 5);

    // 1. Self-attention.
    b_.LayerNorm(x, nullptr, nullptr, eps, h);
    b_.Modulate(h, sh1, sc1, h);
    Tensor q = Linear(h, blk.sq_w, blk.sq_b);
    b_.RmsNorm(q, &blk.snorm_q, eps, q);
    Tensor k = Linear(h, blk.sk_w, blk.sk_b);
    b_.RmsNorm(k, &blk.snorm_k, eps, k);
    Tensor v = Linear(h, blk.sv_w, blk.sv_b);
    Tensor q3 = q.Reshape({L, H, d}), k3 = k.Reshape({L, H, d}), v3 = v.Reshape({L, H, d});
    b_.Rope3d(q3, grid);
    b_.Rope3d(k3, grid);
    if (stats) attention_timer_->Begin();
    if (sparse) {
      kernels::Sla2Params sp;
      sp.block_q = static_cast<int>(attn_.block_q);
      sp.block_k = static_cast<int>(attn_.block_k);
      sp.keep_ratio = attention.keep_ratio;
      sp.low_bit = attention.mode == DitAttention::kSla2LowBit;
      if (has_sla2_) {
        sp.proj_q = &blk.proj_q;
        sp.proj_k = &blk.proj_k;
        sp.alpha = &AlphaFor(li, t_m);
      }
      b_.Sla2Attention(q3, k3, v3, sp, attn_out, stats ? &layer_stats[li] : nullptr);
    } else {
      b_.Attention(q3, k3, v3, 1.0f / std::sqrt(static_cast<float>(d)), nullptr, -1, attn_out);
    }
    if (stats) attention_timer_->End();
    Tensor y = Linear(attn_out.Reshape({L, D}), blk.so_w, blk.so_b);
    b_.AddGated(x, y, &g1);

    // 2. Cross-attention (no modulation, no gate, no RoPE).
    b_.LayerNorm(x, &blk.norm3_w, &blk.norm3_b, eps, h);
    Tensor cq = Linear(h, blk.cq_w, blk.cq_b);
    b_.RmsNorm(cq, &blk.cnorm_q, eps, cq);
    b_.Attention(cq.Reshape({L, H, d}), text.k[li], text.v[li],
                 1.0f / std::sqrt(static_cast<float>(d)), nullptr, -1, attn_out);
    y = Linear(attn_out.Reshape({L, D}), blk.co_w, blk.co_b);
    b_.AddGated(x, y, nullptr);

    // 3. FFN.
    b_.LayerNorm(x, nullptr, nullptr, eps, h);
    b_.Modulate(h, sh2, sc2, h);
    Tensor f = Linear(h, blk.ffn0_w, blk.ffn0_b);
    b_.GeluTanh(f, f);
    y = Linear(f, blk.ffn2_w, blk.ffn2_b);
    b_.AddGated(x, y, &g2);
  }

  // Head: (shift, scale) = head.modulation + e.
  Tensor e_row = e.Reshape({D});
  Tensor shift = b_.Empty({D}), scale = b_.Empty({D});
  b_.Add(Row(head_mod_, 0), e_row, shift);
  b_.Add(Row(head_mod_, 1), e_row, scale);
  b_.LayerNorm(x, nullptr, nullptr, eps, h);
  b_.Modulate(h, shift, scale, h);
  Tensor out = Linear(h, head_w_, head_b_);
  Tensor out_host = b_.ToHost(out);  // drains the queue
  if (stats) {
    stats->attention_seconds = attention_timer_->TakeSeconds();
    if (sparse) {
      for (size_t li = 0; li < blocks_.size(); ++li) {
        stats->layer_density[li] = layer_stats[li].kept_fraction();
        stats->alpha_mean += layer_stats[li].alpha_mean / blocks_.size();
      }
    }
  }
  return Unpatchify(out_host, cfg_.out_dim, grid, p);
}

}  // namespace sparsevid::engine
