// Stage kPrepare: one pass over Q and K (and V for low-bit) that produces the
// pooled router inputs, the K mean used for smoothing, and the per-channel
// amax of V; then a small pass that finishes the means.
#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kPoolThreads = 256;

// One CTA per (64-token key block, batch), all heads; a thread handles
// channel pairs, so every row read is coalesced across the warp. Key-block
// sums are written directly; query-block sums, the K total (for the mean)
// and the V amax are accumulated with atomics (two key blocks per query block).
__global__ void __launch_bounds__(kPoolThreads) PoolKernel(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, Sla2Dims d, float* __restrict__ qsum,
    float* __restrict__ kbar_sums, float* __restrict__ ktotal, uint32_t* __restrict__ vamax) {
  const int j = blockIdx.x;
  const int b = blockIdx.y;
  const int64_t row0 = static_cast<int64_t>(j) * kBlockK;
  const int n = static_cast<int>(MinI64(kBlockK, d.seq_len - row0));
  const int pairs = d.heads * d.head_dim / 2;
  for (int cp = threadIdx.x; cp < pairs; cp += kPoolThreads) {
    const int h = (2 * cp) / d.head_dim;
    const int c = (2 * cp) % d.head_dim;
    float2 qs = {0.f, 0.f}, ks = {0.f, 0.f}, vm = {0.f, 0.f};
    const int64_t base = d.TokenOffset(b, row0, h) + c;
#pragma unroll 8
    for (int r = 0; r < n; ++r) {
      const int64_t off = base + r * d.stride_l;
      const float2 qv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(q + off));
      const float2 kv = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(k + off));
      qs.x += qv.x;
      qs.y += qv.y;
      ks.x += kv.x;
      ks.y += kv.y;
      if (vamax != nullptr) {
        const float2 vv =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v + off));
        vm.x = fmaxf(vm.x, fabsf(vv.x));
        vm.y = fmaxf(vm.y, fabsf(vv.y));
      }
    }
    const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
    float* qo = qsum + (bh * d.q_blocks + j / 2) * d.head_dim + c;
    atomicAdd(qo, qs.x);
    atomicAdd(qo + 1, qs.y);
    float* ko = kbar_sums + (bh * d.k_blocks + j) * d.head_dim + c;
    ko[0] = ks.x;
    ko[1] = ks.y;
    atomicAdd(ktotal + bh * d.head_dim + c, ks.x);
    atomicAdd(ktotal + bh * d.head_dim + c + 1, ks.y);
    if (vamax != nullptr) {
      // Non-negative floats order like their bit patterns.
      atomicMax(vamax + bh * d.head_dim + c, __float_as_uint(vm.x));
      atomicMax(vamax + bh * d.head_dim + c + 1, __float_as_uint(vm.y));
    }
  }
}

constexpr int kFinishBlocks = 32;  // key blocks per FinishKernel CTA

// Grid (key-block groups, batch*head), one thread per channel: mu = total / L;
// pooled K~_j = sum_j / n_j - mu; pooled Q_i = sum_i / n_i; V scales.
__global__ void FinishKernel(Sla2Dims d, float* __restrict__ qbar, float* __restrict__ kbar,
                             const float* __restrict__ ktotal, float* __restrict__ kmean,
                             const uint32_t* __restrict__ vamax, float* __restrict__ vscale) {
  const int64_t bh = blockIdx.y;
  const int c = threadIdx.x;
  const float mu = ktotal[bh * d.head_dim + c] / static_cast<float>(d.seq_len);
  const int j0 = blockIdx.x * kFinishBlocks;
  const int j1 = min(d.k_blocks, j0 + kFinishBlocks);
  for (int j = j0; j < j1; ++j) {
    const int64_t n = MinI64(kBlockK, d.seq_len - static_cast<int64_t>(j) * kBlockK);
    float& x = kbar[(bh * d.k_blocks + j) * d.head_dim + c];
    x = x / static_cast<float>(n) - mu;
  }
  const int i1 = min(d.q_blocks, (j1 + 1) / 2);
  for (int i = j0 / 2; i < i1; ++i) {
    const int64_t n = MinI64(kBlockQ, d.seq_len - static_cast<int64_t>(i) * kBlockQ);
    qbar[(bh * d.q_blocks + i) * d.head_dim + c] /= static_cast<float>(n);
  }
  if (blockIdx.x == 0) {
    kmean[bh * d.head_dim + c] = mu;
    if (vamax != nullptr) {
      const float amax = __uint_as_float(vamax[bh * d.head_dim + c]);
      vscale[bh * d.head_dim + c] = amax > 0.f ? amax / kFp8Max : 1.f;
    }
  }
}

}  // namespace

cudaError_t LaunchPrepare(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                          cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  const int64_t bhd = bh * d.head_dim;
  cudaError_t e = cudaMemsetAsync(w.ktotal, 0, bhd * sizeof(float), s);
  if (e == cudaSuccess)
    e = cudaMemsetAsync(w.qbar, 0, bh * d.q_blocks * d.head_dim * sizeof(float), s);
  if (e == cudaSuccess && p.low_bit) e = cudaMemsetAsync(w.vamax, 0, bhd * sizeof(uint32_t), s);
  if (e != cudaSuccess) return e;
  PoolKernel<<<dim3(d.k_blocks, d.batch), kPoolThreads, 0, s>>>(
      static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k),
      static_cast<const __nv_bfloat16*>(p.v), d, w.qbar, w.kbar, w.ktotal,
      p.low_bit ? w.vamax : nullptr);
  const dim3 grid((d.k_blocks + kFinishBlocks - 1) / kFinishBlocks, static_cast<unsigned>(bh));
  FinishKernel<<<grid, d.head_dim, 0, s>>>(d, w.qbar, w.kbar, w.ktotal, w.kmean,
                                           p.low_bit ? w.vamax : nullptr, w.vscale);
  return cudaGetLastError();
}

}  // namespace sparsevid::kernels::cuda
