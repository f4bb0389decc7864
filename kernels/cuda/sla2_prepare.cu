// Stage kPrepare: one pass over Q and K (and V for low-bit) that produces the
// pooled router inputs, the K mean used for smoothing, and the per-channel
// amax of V; then a small pass that finishes the key means.
#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_pool.cuh"

namespace sparsevid::kernels::cuda {
namespace {

// One CTA per (query block i, head, batch): its 128 rows of Q and K, which
// are also key blocks 2i and 2i + 1 (and of V for low-bit). A thread owns
// one 16-byte octet of channels and every kPhases-th row, and issues all of
// its rows' loads before it adds any (8 rows of Q and K at D = 128: 16
// loads, 256 bytes in flight per thread); the partial sums meet in shared
// memory. Outputs: the pooled Q row (mean), the two key blocks' sums, and
// the K total and V amax by one atomic per channel into copy i %
// kTotalCopies. The CTA is short and reads 64 KB, so the grid of B*H*T_m
// CTAs streams at the rate of the loads in flight, not of a CTA's loop.
// The previous kernel (a CTA per key block and all heads, 8 rows in flight
// per thread in a loop of 64 rows, a quarter of the threads idle at 12
// heads, query sums by atomics into a zeroed buffer): the prepare stage took
// 0.084 ms at the 1.3B shape on an H200, 0.072 now (low-bit 0.120 -> 0.113;
// h200-v33-ab-prepare-per-query-block.log).
template <int D, bool kV>
__global__ void __launch_bounds__(pool::kThreads) PoolKernel(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, Sla2Dims d, float* __restrict__ qbar,
    float* __restrict__ kbar_sums, float* __restrict__ ktotal, uint32_t* __restrict__ vamax) {
  using Sh = pool::Shape<D>;
  constexpr int kOcts = Sh::kOcts, kPhases = Sh::kPhases, kRows = Sh::kRows;
  __shared__ pool::Partials<D, kV> part;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int oct = threadIdx.x % kOcts, ph = threadIdx.x / kOcts;
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int n = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  const int64_t base = d.TokenOffset(b, row0, h) + oct * 8;
  uint4 qr[kRows], kr[kRows];
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    const int r = ph + m * kPhases;
    if (r < n) {
      const int64_t off = base + r * d.stride_l;
      qr[m] = detail::LoadStream16(q + off);
      kr[m] = detail::LoadStream16(k + off);
    } else {
      qr[m] = kr[m] = make_uint4(0, 0, 0, 0);  // bf16 zeros: add nothing
    }
  }
  float qs[8] = {}, k0[8] = {}, k1[8] = {};
#pragma unroll
  for (int m = 0; m < kRows; ++m) {
    pool::AddOctet(qs, qr[m]);
    pool::AddOctet(m < Sh::kRowsPerKeyBlock ? k0 : k1, kr[m]);
  }
  if constexpr (kV) {
    // V's rows as a second batch: with all three tensors' loads in flight at
    // once a thread needs 170 registers, one CTA fits an SM, and the stage
    // took 0.177 ms instead of 0.113 at the 1.3B shape (H200).
    uint4 vr[kRows];
#pragma unroll
    for (int m = 0; m < kRows; ++m) {
      const int r = ph + m * kPhases;
      vr[m] = r < n ? detail::LoadStream16(v + base + r * d.stride_l) : make_uint4(0, 0, 0, 0);
    }
    __nv_bfloat162 vm[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) vm[e] = __float2bfloat162_rn(0.f);
#pragma unroll
    for (int m = 0; m < kRows; ++m) pool::AbsMaxOctet(vm, vr[m]);
    part.PutVmax(ph, oct, vm);
  }
  part.Put(ph, oct, qs, k0, k1);
  __syncthreads();
  part.Store(threadIdx.x, i, static_cast<int64_t>(b) * d.heads + h, n, d, qbar, kbar_sums, ktotal,
             vamax);
}

constexpr int kFinishRows = 8;  // pooled key rows per FinishKernel CTA

// Grid (key-block groups, batch*head), one thread per channel: mu = total / L
// (the total summed over its copies); pooled K~_j = sum_j / n_j - mu; kmean
// and the V scales (amax over the copies) from the first CTA.
__global__ void FinishKernel(Sla2Dims d, float* __restrict__ kbar, const float* __restrict__ ktotal,
                             float* __restrict__ kmean, const uint32_t* __restrict__ vamax,
                             float* __restrict__ vscale) {
  const int64_t bh = blockIdx.y;
  const int c = threadIdx.x;
  const int64_t copy_stride = static_cast<int64_t>(d.batch) * d.heads * d.head_dim;
  const float mu = KeyMean(ktotal, d, bh, c);
#pragma unroll
  for (int e = 0; e < kFinishRows; ++e) {
    const int row = blockIdx.x * kFinishRows + e;
    if (row < d.k_blocks) {
      const int64_t n = MinI64(kBlockK, d.seq_len - static_cast<int64_t>(row) * kBlockK);
      float& x = kbar[(bh * d.k_blocks + row) * d.head_dim + c];
      x = x / static_cast<float>(n) - mu;
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

template <int D>
cudaError_t LaunchPoolD(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                        cudaStream_t s) {
  const dim3 grid(d.q_blocks, d.heads, d.batch);
  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const auto* v = static_cast<const __nv_bfloat16*>(p.v);
  if (p.low_bit) {
    PoolKernel<D, true><<<grid, pool::kThreads, 0, s>>>(q, k, v, d, w.qbar, w.kbar, w.ktotal, w.vamax);
  } else {
    PoolKernel<D, false><<<grid, pool::kThreads, 0, s>>>(q, k, v, d, w.qbar, w.kbar, w.ktotal, nullptr);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPool(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                       cudaStream_t s, bool zeroed) {
  const int64_t bhd = static_cast<int64_t>(d.batch) * d.heads * d.head_dim;
  cudaError_t e = cudaSuccess;
  if (!zeroed) {
    e = cudaMemsetAsync(w.ktotal, 0, kTotalCopies * bhd * sizeof(float), s);
    if (e == cudaSuccess && p.low_bit)
      e = cudaMemsetAsync(w.vamax, 0, kTotalCopies * bhd * sizeof(uint32_t), s);
  }
  if (e != cudaSuccess) return e;
  // Low-bit on Hopper: the TMA pass (sla2_prepare_hopper.cu); else PoolKernel.
  e = LaunchPoolHopper(p, d, w, s);
  if (e != cudaErrorNotSupported) return e;
  return d.head_dim == 64 ? LaunchPoolD<64>(p, d, w, s) : LaunchPoolD<128>(p, d, w, s);
}

cudaError_t LaunchFinish(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                         cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  const dim3 grid((d.k_blocks + kFinishRows - 1) / kFinishRows, static_cast<unsigned>(bh));
  FinishKernel<<<grid, d.head_dim, 0, s>>>(d, w.kbar, w.ktotal, w.kmean,
                                           p.low_bit ? w.vamax : nullptr, w.vscale);
  return cudaGetLastError();
}

cudaError_t LaunchPrepare(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                          cudaStream_t s) {
  const cudaError_t e = LaunchPool(p, d, w, s);
  return e != cudaSuccess ? e : LaunchFinish(p, d, w, s);
}

}  // namespace sparsevid::kernels::cuda
