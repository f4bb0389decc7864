// CpuBackend: the Backend interface on host memory, OpenMP threads and
// OpenBLAS. A thin dispatcher; each op lives in its own file under cpu/ or
// sla2/.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);

  DeviceKind device() const override { return DeviceKind::kCpu; }
  std::string name() const override;

  Tensor Empty(const Shape& shape, DType dtype) override;
  Tensor ToDevice(const Tensor& host) override;
  Tensor ToHost(const Tensor& t) override;
  void Copy(const Tensor& src, Tensor& dst) override;
  void Fill(Tensor& dst, float value) override;
  Tensor ToF32(const Tensor& t) override;
  int64_t PeakBytes() const override { return ctx_.account->peak_bytes(); }
  void ResetPeakBytes() override { ctx_.account->ResetPeak(); }

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
  CpuContext ctx_;
};

}  // namespace sparsevid::kernels::cpu
