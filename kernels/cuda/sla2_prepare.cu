// Stage kPrepare: one pass over Q and K (and V for low-bit) that produces the
// pooled router inputs, the K mean used for smoothing, and the per-channel
// amax of V; then a small per-head pass that finishes the means.
#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kPoolThreads = 256;

// One CTA per (128-token query block, batch), all heads: thread handles
// channel pairs, so every row read is coalesced across the warp.
__global__ void __launch_bounds__(kPoolThreads) PoolKernel(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, Sla2Dims d, float* __restrict__ qbar,
    float* __restrict__ kbar_sums, uint32_t* __restrict__ vamax) {
  const int i = blockIdx.x;
  const int b = blockIdx.y;
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int nq = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  const int pairs = d.heads * d.head_dim / 2;
  for (int cp = threadIdx.x; cp < pairs; cp += kPoolThreads) {
    const int h = (2 * cp) / d.head_dim;
    const int c = (2 * cp) % d.head_dim;
    float2 qs = {0.f, 0.f}, k0 = {0.f, 0.f}, k1 = {0.f, 0.f}, vm = {0.f, 0.f};
    const int64_t base = d.TokenOffset(b, row0, h) + c;
#pragma unroll 4
    for (int r = 0; r < nq; ++r) {
      const int64_t off = base + r * d.stride_l;
      const float2 qv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(q + off));
      const float2 kv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(k + off));
      qs.x += qv.x;
      qs.y += qv.y;
      if (r < kBlockK) {
        k0.x += kv.x;
        k0.y += kv.y;
      } else {
        k1.x += kv.x;
        k1.y += kv.y;
      }
      if (vamax != nullptr) {
        const float2 vv =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v + off));
        vm.x = fmaxf(vm.x, fabsf(vv.x));
        vm.y = fmaxf(vm.y, fabsf(vv.y));
      }
    }
    const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
    float* qo = qbar + (bh * d.q_blocks + i) * d.head_dim + c;
    qo[0] = qs.x / nq;
    qo[1] = qs.y / nq;
    float* ko = kbar_sums + (bh * d.k_blocks + 2 * i) * d.head_dim + c;
    ko[0] = k0.x;
    ko[1] = k0.y;
    if (nq > kBlockK) {
      ko[d.head_dim] = k1.x;
      ko[d.head_dim + 1] = k1.y;
    }
    if (vamax != nullptr) {
      // Non-negative floats order like their bit patterns.
      atomicMax(vamax + bh * d.head_dim + c, __float_as_uint(vm.x));
      atomicMax(vamax + bh * d.head_dim + c + 1, __float_as_uint(vm.y));
    }
  }
}

// One CTA per (batch, head), one thread per channel: mu = sum / L, then
// pooled K~_j = sum_j / n_j - mu; V scales from amax.
__global__ void FinishKernel(Sla2Dims d, float* __restrict__ kbar, float* __restrict__ kmean,
                             const uint32_t* __restrict__ vamax, float* __restrict__ vscale) {
  const int64_t bh = blockIdx.x;
  const int c = threadIdx.x;
  float* kb = kbar + bh * d.k_blocks * d.head_dim + c;
  float total = 0.f;
  for (int j = 0; j < d.k_blocks; ++j) total += kb[static_cast<int64_t>(j) * d.head_dim];
  const float mu = total / static_cast<float>(d.seq_len);
  kmean[bh * d.head_dim + c] = mu;
  for (int j = 0; j < d.k_blocks; ++j) {
    const int64_t n = MinI64(kBlockK, d.seq_len - static_cast<int64_t>(j) * kBlockK);
    float& x = kb[static_cast<int64_t>(j) * d.head_dim];
    x = x / static_cast<float>(n) - mu;
  }
  if (vamax != nullptr) {
    const float amax = __uint_as_float(vamax[bh * d.head_dim + c]);
    vscale[bh * d.head_dim + c] = amax > 0.f ? amax / kFp8Max : 1.f;
  }
}

}  // namespace

cudaError_t LaunchPrepare(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                          cudaStream_t s) {
  const int64_t bhd = static_cast<int64_t>(d.batch) * d.heads * d.head_dim;
  if (p.low_bit) {
    cudaError_t e = cudaMemsetAsync(w.vamax, 0, bhd * sizeof(uint32_t), s);
    if (e != cudaSuccess) return e;
  }
  PoolKernel<<<dim3(d.q_blocks, d.batch), kPoolThreads, 0, s>>>(
      static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k),
      static_cast<const __nv_bfloat16*>(p.v), d, w.qbar, w.kbar,
      p.low_bit ? w.vamax : nullptr);
  FinishKernel<<<d.batch * d.heads, d.head_dim, 0, s>>>(d, w.kbar, w.kmean,
                                                        p.low_bit ? w.vamax : nullptr, w.vscale);
  return cudaGetLastError();
}

}  // namespace sparsevid::kernels::cuda
