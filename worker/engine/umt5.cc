#include "worker/engine/umt5.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "worker/engine/weight_upload.h"

namespace sparsevid::engine {

using kernels::Tensor;

int T5RelativeBucket(int64_t n, int64_t num_buckets, int64_t max_distance) {
  const int64_t half = num_buckets / 2;
  int64_t bucket = n > 0 ? half : 0;
  const int64_t a = n < 0 ? -n : n;
  const int64_t max_exact = half / 2;
  if (a < max_exact) return static_cast<int>(bucket + a);
  // The reference takes the log in float32 and truncates.
  const float ratio = std::log(static_cast<float>(a) / static_cast<float>(max_exact)) /
                      static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact));
  int64_t large = max_exact + static_cast<int64_t>(ratio * static_cast<float>(half - max_exact));
  if (large > half - 1) large = half - 1;
  return static_cast<int>(bucket + large);
}

TensorSpecs Umt5Encoder::DeclareTensors(const T5Config& c) {
  const int64_t D = c.d_model, I = c.num_heads * c.d_kv;
  TensorSpecs s = {{"token_embedding.weight", {c.vocab_size, D}}};
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("blocks.", i, ".");
    s.push_back({b + "norm1.weight", {D}});
    s.push_back({b + "attn.q.weight", {I, D}});
    s.push_back({b + "attn.k.weight", {I, D}});
    s.push_back({b + "attn.v.weight", {I, D}});
    s.push_back({b + "attn.o.weight", {D, I}});
    s.push_back({b + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads}});
    s.push_back({b + "norm2.weight", {D}});
    s.push_back({b + "ffn.gate.0.weight", {c.d_ff, D}});
    s.push_back({b + "ffn.fc1.weight", {c.d_ff, D}});
    s.push_back({b + "ffn.fc2.weight", {D, c.d_ff}});
  }
  s.push_back({"norm.weight", {D}});
  return s;
}

absl::StatusOr<std::unique_ptr<Umt5Encoder>> Umt5Encoder::Create(const T5Config& cfg,
                                                                 const WeightStore& w,
                                                                 kernels::Backend& b) {
  std::unique_ptr<Umt5Encoder> m(new Umt5Encoder(cfg, b));
  m->embedding_ = w.Get("token_embedding.weight");
  m->final_norm_ = UploadF32(b, w, "norm.weight");
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = absl::StrCat("blocks.", i, ".");
    Block blk;
    blk.norm1 = UploadF32(b, w, p + "norm1.weight");
    blk.q = UploadLinear(b, w, p + "attn.q.weight");
    blk.k = UploadLinear(b, w, p + "attn.k.weight");
    blk.v = UploadLinear(b, w, p + "attn.v.weight");
    blk.o = UploadLinear(b, w, p + "attn.o.weight");
    blk.norm2 = UploadF32(b, w, p + "norm2.weight");
    blk.gate = UploadLinear(b, w, p + "ffn.gate.0.weight");
    blk.fc1 = UploadLinear(b, w, p + "ffn.fc1.weight");
    blk.fc2 = UploadLinear(b, w, p + "ffn.fc2.weight");
    blk.rel_bias = w.GetF32(p + "pos_embedding.embedding.weight").ToVector();
    m->blocks_.push_back(std::move(blk));
  }
  return m;
}

Tensor Umt5Encoder::Linear(const Tensor& x, const Tensor& w) {
  Tensor y = b_.Empty({x.dim(0), w.dim(0)});
  b_.Linear(x, w, nullptr, y);
  return y;
}

absl::StatusOr<Tensor> Umt5Encoder::Encode(const std::vector<int>& ids) {
  const int64_t L = static_cast<int64_t>(ids.size()), D = cfg_.d_model;
  const int64_t H = cfg_.num_heads, dk = cfg_.d_kv;
  const float eps = static_cast<float>(cfg_.eps);
  if (L == 0) return absl::InvalidArgumentError("T5: no tokens to encode");
  for (int id : ids) {
    if (id < 0 || id >= cfg_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("T5: token id ", id,
                                                     " outside the vocabulary of ",
                                                     cfg_.vocab_size));
    }
  }
  // Embedding rows gathered on the host from the (mapped) table.
  Tensor x_host = Tensor::Empty({L, D});
  for (int64_t i = 0; i < L; ++i) {
    Tensor row = embedding_.Narrow0(ids[i], 1);
    if (row.dtype() == kernels::DType::kF32) {
      std::memcpy(x_host.f32() + i * D, row.f32(), D * sizeof(float));
    } else {
      const std::vector<float> v = row.ToVector();
      std::memcpy(x_host.f32() + i * D, v.data(), D * sizeof(float));
    }
  }
  Tensor x = b_.ToDevice(x_host);
  if (x.storage() == x_host.storage()) x = x.Clone();  // written in place below

  std::vector<int> bucket(L * L);
  for (int64_t i = 0; i < L; ++i)
    for (int64_t j = 0; j < L; ++j)
      bucket[i * L + j] = T5RelativeBucket(j - i, cfg_.num_buckets, cfg_.max_distance);

  Tensor h = b_.Empty({L, D});
  Tensor attn = b_.Empty({L, H, dk});
  std::vector<float> bias(H * L * L);
  for (const Block& blk : blocks_) {
    for (int64_t hd = 0; hd < H; ++hd)
      for (int64_t n = 0; n < L * L; ++n) bias[hd * L * L + n] = blk.rel_bias[bucket[n] * H + hd];
    Tensor bias_dev = b_.ToDevice(Tensor::FromVector(bias, {H, L, L}));

    b_.RmsNorm(x, &blk.norm1, eps, h);
    Tensor q = Linear(h, blk.q).Reshape({L, H, dk});
    Tensor k = Linear(h, blk.k).Reshape({L, H, dk});
    Tensor v = Linear(h, blk.v).Reshape({L, H, dk});
    b_.Attention(q, k, v, 1.0f, &bias_dev, -1, attn);  // T5: no 1/sqrt(d)
    Tensor y = Linear(attn.Reshape({L, H * dk}), blk.o);
    b_.AddGated(x, y, nullptr);

    b_.RmsNorm(x, &blk.norm2, eps, h);
    Tensor g = Linear(h, blk.gate);
    b_.GeluTanh(g, g);
    Tensor f = Linear(h, blk.fc1);
    b_.Mul(g, f, g);
    y = Linear(g, blk.fc2);
    b_.AddGated(x, y, nullptr);
  }
  Tensor out = b_.Empty({L, D});
  b_.RmsNorm(x, &final_norm_, eps, out);
  return out;
}

}  // namespace sparsevid::engine
