// CudaBackend::Sla2Attention: the SLA2 CUDA operator (kernels/cuda/sla2_cuda.h)
// on bf16 copies of q/k/v in the engine's [L, H, d] layout; the result is
// converted back to f32. Shapes the operator does not build (head dims other
// than 64/128, blocks other than 128x64, ...) run the CPU implementation on
// host copies, with a one-time note on stderr.
#include <cmath>
#include <cstdio>
#include <mutex>
#include <vector>

#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_backend_ops.h"
#include "kernels/sla2/sla2_attention.h"

namespace sparsevid::kernels::cuda {
namespace {

int64_t Blocks(int64_t L, int64_t b) { return (L + b - 1) / b; }

}  // namespace

void CudaBackend::Sla2Attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Sla2Params& p, Tensor& out, Sla2Stats* stats) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &out}) {
    CheckDevice(*t, "Sla2Attention");
    SV_CHECK(t->dtype() == DType::kF32, "CudaBackend Sla2Attention: f32 only");
  }
  SV_CHECK(q.ndim() == 3 && q.shape() == k.shape() && q.shape() == v.shape() &&
               q.shape() == out.shape(),
           "CudaBackend Sla2Attention: q %s k %s v %s out %s must all be [L, H, d]",
           ShapeString(q.shape()).c_str(), ShapeString(k.shape()).c_str(),
           ShapeString(v.shape()).c_str(), ShapeString(out.shape()).c_str());
  SV_CHECK(p.block_q > 0 && p.block_k > 0, "CudaBackend Sla2Attention: block sizes %d/%d",
           p.block_q, p.block_k);
  SV_CHECK(std::isfinite(p.keep_ratio), "CudaBackend Sla2Attention: keep_ratio %g", p.keep_ratio);
  const int64_t L = q.dim(0), H = q.dim(1), d = q.dim(2);
  const int64_t T_m = Blocks(L, p.block_q), T_n = Blocks(L, p.block_k);
  for (const Tensor* proj : {p.proj_q, p.proj_k}) {
    if (!proj) continue;
    CheckDevice(*proj, "Sla2Attention");
    SV_CHECK((proj->shape() == Shape{d, d}),
             "CudaBackend Sla2Attention: router projection %s, expected [%lld, %lld]",
             ShapeString(proj->shape()).c_str(), static_cast<long long>(d),
             static_cast<long long>(d));
  }
  if (p.alpha) {
    CheckDevice(*p.alpha, "Sla2Attention");
    SV_CHECK(p.alpha->ndim() == 2 && p.alpha->dim(0) == H && p.alpha->dim(1) >= 1,
             "CudaBackend Sla2Attention: alpha %s, expected [%lld, T_m]",
             ShapeString(p.alpha->shape()).c_str(), static_cast<long long>(H));
  }
  if (p.block_mask) {
    CheckDevice(*p.block_mask, "Sla2Attention");
    SV_CHECK(p.block_mask->dtype() == DType::kU8 && (p.block_mask->shape() == Shape{H, T_m, T_n}),
             "CudaBackend Sla2Attention: block_mask %s %s, expected u8 [%lld, %lld, %lld]",
             ShapeString(p.block_mask->shape()).c_str(), DTypeName(p.block_mask->dtype()),
             static_cast<long long>(H), static_cast<long long>(T_m), static_cast<long long>(T_n));
  }
  SV_CHECK(out.raw() != q.raw() && out.raw() != k.raw() && out.raw() != v.raw(),
           "CudaBackend Sla2Attention: out must not alias q, k or v");
  Sla2Stats local;
  local.total_blocks = H * T_m * T_n;
  if (L == 0 || d == 0) {
    if (stats) *stats = local;
    return;
  }

  Sla2Problem pr;
  pr.batch = 1;
  pr.seq_len = L;
  pr.heads = static_cast<int>(H);
  pr.head_dim = static_cast<int>(d);
  pr.stride_b = 0;
  pr.stride_l = H * d;
  pr.stride_h = d;
  pr.block_q = p.block_q;
  pr.block_k = p.block_k;
  pr.keep_ratio = p.keep_ratio;
  pr.low_bit = p.low_bit;
  // Shape checks first (placeholder pointers), so unsupported shapes go to
  // the host path before any device work.
  alignas(16) static char placeholder[32];
  pr.q = pr.k = pr.v = placeholder;
  pr.out = placeholder + 16;
  if (const Sla2Status st = ValidateSla2Problem(pr); !st.ok()) {
    static std::once_flag note;
    std::call_once(note, [&] {
      std::fprintf(stderr,
                   "sparsevid: CudaBackend Sla2Attention: %s; running the CPU implementation on "
                   "host copies for such shapes\n",
                   st.message.c_str());
    });
    Sla2AttentionOnHost(q, k, v, p, out, stats);
    return;
  }

  // bf16 q, k, v (one buffer) and out, [L, H, d] each.
  const int64_t n = L * H * d;
  Tensor qkv16 = Scratch({3, L, H, d}, DType::kBF16, "Sla2Attention");
  Tensor out16 = Scratch({L, H, d}, DType::kBF16, "Sla2Attention");
  char* base = static_cast<char*>(qkv16.raw());
  LaunchF32ToBf16(q.f32(), base, n, stream());
  LaunchF32ToBf16(k.f32(), base + 2 * n, n, stream());
  LaunchF32ToBf16(v.f32(), base + 4 * n, n, stream());
  CheckLaunch("Sla2Attention");
  pr.q = base;
  pr.k = base + 2 * n;
  pr.v = base + 4 * n;
  pr.out = out16.raw();

  Tensor proj_q, proj_k, alpha;
  if (p.proj_q) proj_q = AsF32(*p.proj_q, "Sla2Attention");
  if (p.proj_k) proj_k = AsF32(*p.proj_k, "Sla2Attention");
  pr.proj_q = p.proj_q ? proj_q.f32() : nullptr;
  pr.proj_k = p.proj_k ? proj_k.f32() : nullptr;
  bool alpha_on_host = false;  // local.alpha_mean already holds the mean
  if (p.alpha) {
    alpha = AsF32(*p.alpha, "Sla2Attention");
    const int64_t T_a = alpha.dim(1);
    if (T_a != T_m) {  // resample to T_m query blocks as the CPU does
      const std::vector<float> given = ToHost(alpha).ToVector();
      std::vector<float> a(H * T_m);
      double sum = 0;
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t i = 0; i < T_m; ++i) {
          a[h * T_m + i] = given[h * T_a + sla2::AlphaSourceIndex(i, T_m, T_a)];
          sum += a[h * T_m + i];
        }
      }
      local.alpha_mean = sum / static_cast<double>(H * T_m);
      alpha_on_host = true;
      alpha = ToDevice(Tensor::FromVector(a, {H, T_m}));
    }
    pr.alpha = alpha.f32();
  } else {
    local.alpha_mean = 1.0;
    alpha_on_host = true;
  }
  if (p.block_mask) {
    pr.block_mask = p.block_mask->data<uint8_t>();
    pr.mask_stride_b = 0;
  }
  const Sla2Status st = Sla2Forward(pr, sla2_ws_, stream());
  SV_CHECK(st.ok(), "CudaBackend Sla2Attention: %s", st.message.c_str());
  LaunchBf16ToF32(out16.raw(), out.f32(), n, stream());
  CheckLaunch("Sla2Attention");

  if (stats) {
    // The kept counts and ratios are copied behind the kernels and summed
    // when the stream drains (Synchronize), so the statistics add no wait.
    PendingSla2Stats ps{stats, local, nullptr, H * T_m, nullptr, 0};
    int32_t* counts = staging_.Allocate<int32_t>(ps.n_counts, "Sla2Attention");
    SV_CUDA_CHECK("Sla2Attention",
                  cudaMemcpyAsync(counts, sla2_ws_.counts(), ps.n_counts * sizeof(int32_t),
                                  cudaMemcpyDeviceToHost, stream()));
    ps.counts = counts;
    if (!alpha_on_host) {
      ps.n_alpha = H * T_m;
      float* a = staging_.Allocate<float>(ps.n_alpha, "Sla2Attention");
      SV_CUDA_CHECK("Sla2Attention", cudaMemcpyAsync(a, alpha.f32(), ps.n_alpha * sizeof(float),
                                                     cudaMemcpyDeviceToHost, stream()));
      ps.alpha = a;
    }
    pending_stats_.push_back(ps);
  }
}

void CudaBackend::CompleteSla2Stats() {
  for (const PendingSla2Stats& ps : pending_stats_) {
    Sla2Stats s = ps.value;
    for (int64_t i = 0; i < ps.n_counts; ++i) s.kept_blocks += ps.counts[i];
    if (ps.alpha) {
      double sum = 0;
      for (int64_t i = 0; i < ps.n_alpha; ++i) sum += ps.alpha[i];
      s.alpha_mean = sum / static_cast<double>(ps.n_alpha);
    }
    *ps.out = s;
  }
  pending_stats_.clear();
  staging_.Reset();
}

void CudaBackend::Sla2AttentionOnHost(const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Sla2Params& p, Tensor& out, Sla2Stats* stats) {
  if (!host_) host_ = CreateCpuBackend(0);
  Tensor proj_q, proj_k, alpha, mask;
  Sla2Params hp = p;
  if (p.proj_q) hp.proj_q = &(proj_q = ToHost(*p.proj_q));
  if (p.proj_k) hp.proj_k = &(proj_k = ToHost(*p.proj_k));
  if (p.alpha) hp.alpha = &(alpha = ToHost(*p.alpha));
  if (p.block_mask) hp.block_mask = &(mask = ToHost(*p.block_mask));
  Tensor out_host = Tensor::Empty(out.shape(), DType::kF32);
  host_->Sla2Attention(ToHost(q), ToHost(k), ToHost(v), hp, out_host, stats);
  Copy(out_host, out);
}

}  // namespace sparsevid::kernels::cuda
