// The backend interface: every numeric op the models use. Model code is
// written once against Backend; CpuBackend (OpenBLAS + threads) and
// CudaBackend implement it. Shapes are validated by the model at load time,
// so a shape mismatch inside an op is a bug and stops the process with a
// message (SV_CHECK), never silent garbage.
//
// Layout conventions:
//   token activations      [L, D]      (row-major, D fastest)
//   attention q/k/v/out    [L, H, d]   (the Linear output viewed per head)
//   video feature maps     [C, T, H, W]
//   Linear weights         [N, K]      (PyTorch layout: y = x W^T + b)
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "kernels/check.h"
#include "kernels/tensor.h"

namespace sparsevid::kernels {

// The 3-D token grid of a video latent after patching: L = frames*height*width,
// token index n = (f*height + h)*width + w.
struct TokenGrid {
  int64_t frames = 0;
  int64_t height = 0;
  int64_t width = 0;
  int64_t tokens() const { return frames * height * width; }
};

// SLA2 attention (docs/sla2.md in the repository has the exact math).
struct Sla2Params {
  int block_q = 128;         // query rows pooled per router block (b_q)
  int block_k = 64;          // key rows pooled per router block (b_k)
  float keep_ratio = 0.03f;  // kept key blocks per query block = max(1, floor(keep*T_n))
  const Tensor* proj_q = nullptr;  // [d, d] router projection (y = x W^T); null = identity
  const Tensor* proj_k = nullptr;  // [d, d]
  const Tensor* alpha = nullptr;   // [H, T_m] blend ratio in [0,1]; null = 1 (sparse only)
  bool low_bit = false;      // INT8 Q K^T, FP8-E4M3 P V (QAT numerics)
  // Optional block mask given from outside, [H, T_m, T_n] u8 (1 = kept);
  // when set the router is skipped (tests, SLA-v1-compatible mode).
  const Tensor* block_mask = nullptr;
};

// What an Sla2Attention call did. A backend with a queue may fill it when the
// queue drains: read it after Synchronize() (or an op that waits, such as
// ToHost), and keep it alive until then.
struct Sla2Stats {
  int64_t kept_blocks = 0;    // summed over heads and query blocks
  int64_t total_blocks = 0;   // H * T_m * T_n
  double alpha_mean = 0.0;    // mean blend ratio used
  double kept_fraction() const {
    return total_blocks ? static_cast<double>(kept_blocks) / total_blocks : 0.0;
  }
};

// Adds up the device time of spans of queued work (a span: the ops submitted
// between Begin() and End()) without draining the queue at either end.
class SpanTimer {
 public:
  virtual ~SpanTimer() = default;
  virtual void Begin() = 0;
  virtual void End() = 0;
  // Seconds spent in the spans ended since the last call; waits for them.
  virtual double TakeSeconds() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual DeviceKind device() const = 0;
  virtual std::string name() const = 0;  // "cpu (2 threads, OpenBLAS)", "cuda:0 (H100)"

  // Memory.
  virtual Tensor Empty(const Shape& shape, DType dtype = DType::kF32) = 0;
  Tensor Zeros(const Shape& shape, DType dtype = DType::kF32);
  virtual Tensor ToDevice(const Tensor& host) = 0;   // copy (or share on CPU)
  virtual Tensor ToHost(const Tensor& t) = 0;        // host f32/as-is copy
  virtual void Copy(const Tensor& src, Tensor& dst) = 0;  // same numel and dtype
  virtual void Fill(Tensor& dst, float value) = 0;
  // Converts to f32 (bf16/f16/f32 in).
  virtual Tensor ToF32(const Tensor& t) = 0;
  virtual void Synchronize() {}
  // Default: wall clock with the queue drained at each end of a span (exact
  // where ops run before they return, as on the CPU).
  virtual std::unique_ptr<SpanTimer> NewSpanTimer();
  // Peak bytes allocated through this backend since creation / last reset.
  virtual int64_t PeakBytes() const = 0;
  virtual void ResetPeakBytes() = 0;

  // y[M,N] = x[M,K] w[N,K]^T (+ bias[N]). x, w, y f32 (w may be bf16/f16).
  virtual void Linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) = 0;

  // Normalisation over the last dimension.
  // LayerNorm: gamma/beta optional ([D] or null).
  virtual void LayerNorm(const Tensor& x, const Tensor* gamma, const Tensor* beta,
                         float eps, Tensor& y) = 0;
  // RMSNorm: y = x / sqrt(mean(x^2) + eps) * gamma (gamma optional).
  virtual void RmsNorm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) = 0;
  // Wan-VAE RMS_norm over channels of x [C, ...]:
  // y = x / max(||x||_2 over C, 1e-12) * sqrt(C) * gamma[C].
  virtual void ChannelRmsNorm(const Tensor& x, const Tensor& gamma, Tensor& y) = 0;

  // Elementwise (y may alias x).
  virtual void GeluTanh(const Tensor& x, Tensor& y) = 0;
  virtual void Silu(const Tensor& x, Tensor& y) = 0;
  virtual void Add(const Tensor& a, const Tensor& b, Tensor& y) = 0;  // same shape
  virtual void Mul(const Tensor& a, const Tensor& b, Tensor& y) = 0;  // same shape
  virtual void Scale(const Tensor& x, float s, Tensor& y) = 0;
  virtual void Clamp(const Tensor& x, float lo, float hi, Tensor& y) = 0;
  // Modulation: y[L,D] = x * (1 + scale[D]) + shift[D].
  virtual void Modulate(const Tensor& x, const Tensor& shift, const Tensor& scale,
                        Tensor& y) = 0;
  // Gated residual: x[L,D] += y[L,D] * gate[D] (gate null = 1).
  virtual void AddGated(Tensor& x, const Tensor& y, const Tensor* gate) = 0;
  // softmax over the last dimension.
  virtual void Softmax(const Tensor& x, Tensor& y) = 0;

  // Layout.
  virtual void Permute(const Tensor& x, const std::vector<int>& perm, Tensor& y) = 0;
  virtual void Concat(const std::vector<Tensor>& xs, int dim, Tensor& y) = 0;
  // y[i,:] = table[ids[i],:]; ids outside the table are a bug (validate first).
  virtual void Embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) = 0;

  // Wan 3-D RoPE on x [L, H, d] in place (interleaved pairs; the d/2 pairs are
  // split t: d/2 - 2*(d/6), h: d/6, w: d/6; theta 10000; see docs/wan2.1.md).
  virtual void Rope3d(Tensor& x, const TokenGrid& grid) = 0;

  // 3-D convolution, stride 1, no temporal padding (callers prepend causal
  // frames), symmetric zero padding pad_h/pad_w.
  // x [C, T, H, W], w [O, C, kt, kh, kw], bias [O] or null -> y [O, T-kt+1, H', W'].
  virtual void Conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, int pad_h,
                      int pad_w, Tensor& y) = 0;
  // Nearest x2 in height and width: [C, T, H, W] -> [C, T, 2H, 2W].
  virtual void UpsampleNearest2x(const Tensor& x, Tensor& y) = 0;

  // Dense softmax attention. q [Lq, H, d], k/v [Lk, H, d], out [Lq, H, d].
  // bias: optional additive logits [H, Lq, Lk]; key_valid: keys >= key_valid
  // are masked out (-1 = all valid).
  virtual void Attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         const Tensor* bias, int64_t key_valid, Tensor& out) = 0;

  // SLA2 self-attention. q, k, v, out [L, H, d]; softmax scale 1/sqrt(d).
  virtual void Sla2Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                             const Sla2Params& params, Tensor& out, Sla2Stats* stats) = 0;
};

class WallSpanTimer final : public SpanTimer {
 public:
  explicit WallSpanTimer(Backend& backend) : backend_(backend) {}
  void Begin() override {
    backend_.Synchronize();
    begin_ = std::chrono::steady_clock::now();
  }
  void End() override {
    backend_.Synchronize();
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
  }
  double TakeSeconds() override {
    const double s = seconds_;
    seconds_ = 0;
    return s;
  }

 private:
  Backend& backend_;
  std::chrono::steady_clock::time_point begin_;
  double seconds_ = 0;
};

inline std::unique_ptr<SpanTimer> Backend::NewSpanTimer() {
  return std::make_unique<WallSpanTimer>(*this);
}

// threads <= 0: use all hardware threads.
std::unique_ptr<Backend> CreateCpuBackend(int threads = 0);

}  // namespace sparsevid::kernels
