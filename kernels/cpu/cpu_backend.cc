#include "kernels/cpu/cpu_backend.h"

#include <cstring>
#include <thread>

#include "kernels/check.h"
#include "kernels/cpu/attention_dense.h"
#include "kernels/cpu/conv3d.h"
#include "kernels/cpu/convert.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/layout.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/sla2/sla2_attention.h"

namespace sparsevid::kernels {

Tensor Backend::Zeros(const Shape& shape, DType dtype) {
  Tensor t = Empty(shape, dtype);
  Fill(t, 0.f);
  return t;
}

std::unique_ptr<Backend> CreateCpuBackend(int threads) {
  return std::make_unique<cpu::CpuBackend>(threads);
}

namespace cpu {
namespace {

void CheckHost(const Tensor& t, const char* op) {
  SV_CHECK(t.defined() && t.device() == DeviceKind::kCpu, "%s: host tensor expected", op);
}

}  // namespace

CpuBackend::CpuBackend(int threads) {
  ctx_.threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ctx_.account = std::make_shared<HostMemoryAccount>();
  // OpenMP is the only thread pool: OpenBLAS runs on the calling thread and
  // big GEMMs are split over OpenMP threads (cpu/gemm.h), so the two pools
  // never spin against each other on the same cores.
  openblas_set_num_threads(1);
}

std::string CpuBackend::name() const {
  return "cpu (" + std::to_string(ctx_.threads) + " threads, OpenBLAS)";
}

Tensor CpuBackend::Empty(const Shape& shape, DType dtype) {
  const size_t bytes = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  return Tensor(AllocateHost(bytes, ctx_.account), 0, shape, dtype);
}

Tensor CpuBackend::ToDevice(const Tensor& host) {
  CheckHost(host, "ToDevice");
  return host;  // host memory is device memory: share
}

Tensor CpuBackend::ToHost(const Tensor& t) {
  CheckHost(t, "ToHost");
  Tensor copy = Empty(t.shape(), t.dtype());
  if (t.nbytes()) std::memcpy(copy.raw(), t.raw(), t.nbytes());
  return copy;
}

void CpuBackend::Copy(const Tensor& src, Tensor& dst) { CopyTensor(ctx_, src, dst); }
void CpuBackend::Fill(Tensor& dst, float value) { FillTensor(ctx_, dst, value); }

Tensor CpuBackend::ToF32(const Tensor& t) {
  CheckHost(t, "ToF32");
  Tensor out = Empty(t.shape(), DType::kF32);
  ConvertToF32(ctx_, t, out.f32());
  return out;
}

void CpuBackend::Linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  cpu::Linear(ctx_, x, w, bias, y);
}
void CpuBackend::LayerNorm(const Tensor& x, const Tensor* gamma, const Tensor* beta, float eps,
                           Tensor& y) {
  cpu::LayerNorm(ctx_, x, gamma, beta, eps, y);
}
void CpuBackend::RmsNorm(const Tensor& x, const Tensor* gamma, float eps, Tensor& y) {
  cpu::RmsNorm(ctx_, x, gamma, eps, y);
}
void CpuBackend::ChannelRmsNorm(const Tensor& x, const Tensor& gamma, Tensor& y) {
  cpu::ChannelRmsNorm(ctx_, x, gamma, y);
}
void CpuBackend::GeluTanh(const Tensor& x, Tensor& y) { cpu::GeluTanh(ctx_, x, y); }
void CpuBackend::Silu(const Tensor& x, Tensor& y) { cpu::Silu(ctx_, x, y); }
void CpuBackend::Add(const Tensor& a, const Tensor& b, Tensor& y) { cpu::Add(ctx_, a, b, y); }
void CpuBackend::Mul(const Tensor& a, const Tensor& b, Tensor& y) { cpu::Mul(ctx_, a, b, y); }
void CpuBackend::Scale(const Tensor& x, float s, Tensor& y) { cpu::Scale(ctx_, x, s, y); }
void CpuBackend::Clamp(const Tensor& x, float lo, float hi, Tensor& y) {
  cpu::Clamp(ctx_, x, lo, hi, y);
}
void CpuBackend::Modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, Tensor& y) {
  cpu::Modulate(ctx_, x, shift, scale, y);
}
void CpuBackend::AddGated(Tensor& x, const Tensor& y, const Tensor* gate) {
  cpu::AddGated(ctx_, x, y, gate);
}
void CpuBackend::Softmax(const Tensor& x, Tensor& y) { cpu::Softmax(ctx_, x, y); }
void CpuBackend::Permute(const Tensor& x, const std::vector<int>& perm, Tensor& y) {
  cpu::Permute(ctx_, x, perm, y);
}
void CpuBackend::Concat(const std::vector<Tensor>& xs, int dim, Tensor& y) {
  cpu::Concat(ctx_, xs, dim, y);
}
void CpuBackend::Embedding(const Tensor& table, const std::vector<int32_t>& ids, Tensor& y) {
  cpu::Embedding(ctx_, table, ids, y);
}
void CpuBackend::Rope3d(Tensor& x, const TokenGrid& grid) { cpu::Rope3d(ctx_, x, grid); }
void CpuBackend::Conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, int pad_h,
                        int pad_w, Tensor& y) {
  cpu::Conv3d(ctx_, x, w, bias, pad_h, pad_w, y);
}
void CpuBackend::UpsampleNearest2x(const Tensor& x, Tensor& y) {
  cpu::UpsampleNearest2x(ctx_, x, y);
}
void CpuBackend::Attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                           const Tensor* bias, int64_t key_valid, Tensor& out) {
  cpu::Attention(ctx_, q, k, v, scale, bias, key_valid, out);
}
void CpuBackend::Sla2Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Sla2Params& params, Tensor& out, Sla2Stats* stats) {
  sla2::Sla2AttentionCpu(ctx_, q, k, v, params, out, stats);
}

}  // namespace cpu
}  // namespace sparsevid::kernels
