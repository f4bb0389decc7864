// The CudaBackend class (kernels/cuda/cuda_backend.h has the factory). A thin
// dispatcher: shape checks here, kernels in cuda_*.cu, GEMM-based ops in
// cuda_backend_gemm.cc, SLA2 in cuda_backend_sla2.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend_context.h"
#include "kernels/cuda/cuda_host_staging.h"
#include "kernels/cuda/sla2_cuda.h"

namespace sparsevid::kernels::cuda {

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::shared_ptr<CudaDevice> dev, std::string device_name);
  ~CudaBackend() override;

  DeviceKind device() const override { return DeviceKind::kCuda; }
  std::string name() const override { return name_; }

  Tensor Empty(const Shape& shape, DType dtype) override;
  Tensor ToDevice(const Tensor& host) override;
  Tensor ToHost(const Tensor& t) override;
  void Copy(const Tensor& src, Tensor& dst) override;
  void Fill(Tensor& dst, float value) override;
  Tensor ToF32(const Tensor& t) override;
  void Synchronize() override;  // also completes the pending Sla2Stats
  std::unique_ptr<SpanTimer> NewSpanTimer() override;  // CUDA events (cuda_span_timer.cc)
  int64_t PeakBytes() const override { return dev_->peak_bytes.load(); }
  void ResetPeakBytes() override { dev_->peak_bytes.store(dev_->bytes_in_use.load()); }

  void Linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void LayerNorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                 Tensor& y) override;
  void RmsNorm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) override;
  void ChannelRmsNorm(const Tensor& x, const Tensor& gamma, Tensor& y) override;
  void GeluTanh(const Tensor& x, Tensor& y) override;
  void Silu(const Tensor& x, Tensor& y) override;
  void Add(const Tensor& a, const Tensor& b, Tensor& y) override;
  void Mul(const Tensor& a, const Tensor& b, Tensor& y) override;
  void Scale(const Tensor& x, float s, Tensor& y) override;
  void Clamp(const Tensor& x, float lo, float hi, Tensor& y) override;
  void Modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) override;
  void AddGated(Tensor& x, const Tensor& y, const Tensor* gate) override;
  void Softmax(const Tensor& x, Tensor& y) override;
  void Permute(const Tensor& x, const std::vector<int>& perm, Tensor& y) override;
  void Concat(const std::vector<Tensor>& xs, int dim, Tensor& y) override;
  void Embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) override;
  void Rope3d(Tensor& x, const TokenGrid& grid) override;
  void Conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, int pad_h, int pad_w,
              Tensor& y) override;
  void UpsampleNearest2x(const Tensor& x, Tensor& y) override;
  void Attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                 const Tensor* bias, int64_t key_valid, Tensor& out) override;
  void Sla2Attention(const Tensor& q, const Tensor& k, const Tensor& v, const Sla2Params& params,
                     Tensor& out, Sla2Stats* stats) override;

 private:
  cudaStream_t stream() const { return dev_->stream; }
  Tensor Scratch(const Shape& shape, DType dtype, const char* op) {
    return DeviceTensor(dev_, shape, dtype, op);
  }
  // A device f32 view of t: t itself when it already is one, else a converted copy.
  Tensor AsF32(const Tensor& t, const char* op);
  // y[M,N] = x[M,K] w[N,K]^T (+ beta * y), row-major, f32 w on device.
  void Gemm(const char* op, int64_t m, int64_t n, int64_t k, float alpha, const float* x,
            int64_t ldx, const float* w, int64_t ldw, float beta, float* y, int64_t ldy);
  // SLA2 on host copies through the CPU implementation (shapes the CUDA
  // operator does not build).
  void Sla2AttentionOnHost(const Tensor& q, const Tensor& k, const Tensor& v,
                           const Sla2Params& params, Tensor& out, Sla2Stats* stats);

  // Sla2Stats whose device parts (kept counts, blend ratios) are being
  // copied into staging_; Synchronize() completes them.
  struct PendingSla2Stats {
    Sla2Stats* out;
    Sla2Stats value;  // total_blocks, and alpha_mean where known on the host
    const int32_t* counts;
    int64_t n_counts;
    const float* alpha;  // null: value.alpha_mean holds the mean
    int64_t n_alpha;
  };
  void CompleteSla2Stats();  // the stream has drained

  std::shared_ptr<CudaDevice> dev_;
  std::string name_;
  Sla2Workspace sla2_ws_;
  HostStaging staging_;
  std::vector<PendingSla2Stats> pending_stats_;
  std::unique_ptr<Backend> host_;  // CpuBackend for Sla2AttentionOnHost, made on first use
};

}  // namespace sparsevid::kernels::cuda
