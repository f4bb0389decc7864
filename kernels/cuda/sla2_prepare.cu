// Stage kPrepare: one pass over Q and K (and V for low-bit) that produces the
// pooled router inputs, the K mean used for smoothing, and the per-channel
// amax of V; then a small pass that finishes the means.
#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kPoolThreads = 256;


// One CTA per (64-token key block, batch), all heads; a thread handles 8
// channels with 16-byte loads, so every row read is coalesced and many rows
// are in flight per thread. Key-block sums are written directly; query-block
// sums, the K total (for the mean) and the V amax are accumulated with
// atomics (two key blocks per query block; the K total and V amax into copy
// j % kTotalCopies).
__global__ void __launch_bounds__(kPoolThreads) PoolKernel(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, Sla2Dims d, float* __restrict__ qsum,
    float* __restrict__ kbar_sums, float* __restrict__ ktotal, uint32_t* __restrict__ vamax) {
  const int j = blockIdx.x;
  const int b = blockIdx.y;
  const int64_t row0 = static_cast<int64_t>(j) * kBlockK;
  const int n = static_cast<int>(MinI64(kBlockK, d.seq_len - row0));
  const int octs = d.heads * d.head_dim / 8;
  for (int co = threadIdx.x; co < octs; co += kPoolThreads) {
    const int h = (8 * co) / d.head_dim;
    const int c = (8 * co) % d.head_dim;
    float qs[8] = {}, ks[8] = {}, vm[8] = {};
    const int64_t base = d.TokenOffset(b, row0, h) + c;
    auto add = [](float (&acc)[8], const uint4& raw) {
      const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(p2[e]);
        acc[2 * e] += f.x;
        acc[2 * e + 1] += f.y;
      }
    };
    auto amax = [](float (&acc)[8], const uint4& raw) {
      const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(p2[e]);
        acc[2 * e] = fmaxf(acc[2 * e], fabsf(f.x));
        acc[2 * e + 1] = fmaxf(acc[2 * e + 1], fabsf(f.y));
      }
    };
    // kU rows' loads issued before any of them is used.
    constexpr int kU = 8;
    int r = 0;
    for (; r + kU <= n; r += kU) {
      uint4 qr[kU], kr[kU];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int64_t off = base + (r + u) * d.stride_l;
        qr[u] = detail::LoadStream16(q + off);
        kr[u] = detail::LoadStream16(k + off);
      }
      if (vamax != nullptr) {
        uint4 vr[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u)
          vr[u] = detail::LoadStream16(v + base + (r + u) * d.stride_l);
#pragma unroll
        for (int u = 0; u < kU; ++u) amax(vm, vr[u]);
      }
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        add(qs, qr[u]);
        add(ks, kr[u]);
      }
    }
    for (; r < n; ++r) {
      const int64_t off = base + r * d.stride_l;
      add(qs, *reinterpret_cast<const uint4*>(q + off));
      add(ks, *reinterpret_cast<const uint4*>(k + off));
      if (vamax != nullptr) amax(vm, *reinterpret_cast<const uint4*>(v + off));
    }
    const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
    float* qo = qsum + (bh * d.q_blocks + j / 2) * d.head_dim + c;
    float* ko = kbar_sums + (bh * d.k_blocks + j) * d.head_dim + c;
    const int64_t copy = static_cast<int64_t>(j % kTotalCopies) * d.batch * d.heads;
    float* kt = ktotal + (copy + bh) * d.head_dim + c;
    *reinterpret_cast<float4*>(ko) = make_float4(ks[0], ks[1], ks[2], ks[3]);
    *reinterpret_cast<float4*>(ko + 4) = make_float4(ks[4], ks[5], ks[6], ks[7]);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      atomicAdd(qo + e, qs[e]);
      atomicAdd(kt + e, ks[e]);
      // Non-negative floats order like their bit patterns.
      if (vamax != nullptr)
        atomicMax(vamax + (copy + bh) * d.head_dim + c + e, __float_as_uint(vm[e]));
    }
  }
}

constexpr int kFinishRows = 8;  // pooled rows per FinishKernel CTA

// Grid (row groups over [T_n key blocks, then T_m query blocks], batch*head),
// one thread per channel: mu = total / L (the total summed over its copies);
// pooled K~_j = sum_j / n_j - mu; pooled Q_i = sum_i / n_i; kmean and the V
// scales (amax over the copies) from the first CTA.
__global__ void FinishKernel(Sla2Dims d, float* __restrict__ qbar, float* __restrict__ kbar,
                             const float* __restrict__ ktotal, float* __restrict__ kmean,
                             const uint32_t* __restrict__ vamax, float* __restrict__ vscale) {
  const int64_t bh = blockIdx.y;
  const int c = threadIdx.x;
  const int64_t copy_stride = static_cast<int64_t>(d.batch) * d.heads * d.head_dim;
  float total = 0.f;
  if (blockIdx.x * kFinishRows < d.k_blocks) {  // CTAs with key rows need the mean
#pragma unroll 8
    for (int x = 0; x < kTotalCopies; ++x) total += ktotal[x * copy_stride + bh * d.head_dim + c];
  }
  const float mu = total / static_cast<float>(d.seq_len);
#pragma unroll
  for (int e = 0; e < kFinishRows; ++e) {
    const int row = blockIdx.x * kFinishRows + e;
    if (row < d.k_blocks) {
      const int64_t n = MinI64(kBlockK, d.seq_len - static_cast<int64_t>(row) * kBlockK);
      float& x = kbar[(bh * d.k_blocks + row) * d.head_dim + c];
      x = x / static_cast<float>(n) - mu;
    } else if (row < d.k_blocks + d.q_blocks) {
      const int i = row - d.k_blocks;
      const int64_t n = MinI64(kBlockQ, d.seq_len - static_cast<int64_t>(i) * kBlockQ);
      qbar[(bh * d.q_blocks + i) * d.head_dim + c] /= static_cast<float>(n);
    }
  }
  if (blockIdx.x == 0) {
    kmean[bh * d.head_dim + c] = mu;
    if (vamax != nullptr) {
      uint32_t bits = 0;  // non-negative floats order like their bit patterns
      for (int x = 0; x < kTotalCopies; ++x) bits = max(bits, vamax[x * copy_stride + bh * d.head_dim + c]);
      const float amax = __uint_as_float(bits);
      vscale[bh * d.head_dim + c] = amax > 0.f ? amax / kFp8Max : 1.f;
    }
  }
}

}  // namespace

cudaError_t LaunchPrepare(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                          cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  const int64_t bhd = bh * d.head_dim;
  cudaError_t e = cudaMemsetAsync(w.ktotal, 0, kTotalCopies * bhd * sizeof(float), s);
  if (e == cudaSuccess)
    e = cudaMemsetAsync(w.qbar, 0, bh * d.q_blocks * d.head_dim * sizeof(float), s);
  if (e == cudaSuccess && p.low_bit)
    e = cudaMemsetAsync(w.vamax, 0, kTotalCopies * bhd * sizeof(uint32_t), s);
  if (e != cudaSuccess) return e;
  PoolKernel<<<dim3(d.k_blocks, d.batch), kPoolThreads, 0, s>>>(
      static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k),
      static_cast<const __nv_bfloat16*>(p.v), d, w.qbar, w.kbar, w.ktotal,
      p.low_bit ? w.vamax : nullptr);
  const dim3 grid((d.k_blocks + d.q_blocks + kFinishRows - 1) / kFinishRows,
                  static_cast<unsigned>(bh));
  FinishKernel<<<grid, d.head_dim, 0, s>>>(d, w.qbar, w.kbar, w.ktotal, w.kmean,
                                           p.low_bit ? w.vamax : nullptr, w.vscale);
  return cudaGetLastError();
}

}  // namespace sparsevid::kernels::cuda
