// What the two pooling passes of stage kPrepare share (PoolKernel in
// sla2_prepare.cu, PoolHopperKernel in sla2_prepare_hopper.cu): a thread's
// sums over its rows of one 16-byte channel octet, the partial sums of a
// query block in shared memory, and their reduction into the pass's outputs.
// Both passes give every thread the same octet and rows and go through these
// in the same order, so they write the same numbers.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda::pool {

constexpr int kThreads = 256;  // threads that add up a query block

template <int D>
struct Shape {
  static constexpr int kOcts = D / 8;                 // octets per row
  static constexpr int kPhases = kThreads / kOcts;    // 16 at D = 128, 32 at D = 64
  static constexpr int kRows = kBlockQ / kPhases;     // rows per thread: 8 or 4
  static constexpr int kRowsPerKeyBlock = kRows / 2;  // rows m < this lie in key block 2i
};

// acc[0..8) += the 8 bf16 channels of one octet.
__device__ __forceinline__ void AddOctet(float (&acc)[8], const uint4& raw) {
  const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 f = __bfloat1622float2(p2[e]);
    acc[2 * e] += f.x;
    acc[2 * e + 1] += f.y;
  }
}

// vm = max(vm, |octet|) in bf16 pairs (exact: no rounding in abs and max).
__device__ __forceinline__ void AbsMaxOctet(__nv_bfloat162 (&vm)[4], const uint4& raw) {
  const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int e = 0; e < 4; ++e) vm[e] = __hmax2(vm[e], __habs2(p2[e]));
}

// One query block's partial sums, a row of D per phase: Q, key block 2i,
// key block 2i + 1, and (kV) |V| max as float bits.
template <int D, bool kV>
struct Partials {
  static constexpr int kPhases = Shape<D>::kPhases;
  float sum[3][kPhases][D];
  uint32_t vmax[kV ? kPhases : 1][D];

  __device__ void Put(int ph, int oct, const float (&qs)[8], const float (&k0)[8],
                      const float (&k1)[8]) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      sum[0][ph][oct * 8 + e] = qs[e];
      sum[1][ph][oct * 8 + e] = k0[e];
      sum[2][ph][oct * 8 + e] = k1[e];
    }
  }
  __device__ void PutVmax(int ph, int oct, const __nv_bfloat162 (&vm)[4]) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 f = __bfloat1622float2(vm[e]);
      vmax[ph][oct * 8 + 2 * e] = __float_as_uint(f.x);
      vmax[ph][oct * 8 + 2 * e + 1] = __float_as_uint(f.y);
    }
  }

  // After a barrier over the kThreads threads that Put: the pooled Q row
  // (mean over the block's n rows), the two key blocks' sums, and the K
  // total and (kV) V amax by one atomic per channel into copy i %
  // kTotalCopies. tid in [0, kThreads).
  __device__ void Store(int tid, int i, int64_t bh, int n, const Sla2Dims& d,
                        float* __restrict__ qbar, float* __restrict__ kbar_sums,
                        float* __restrict__ ktotal, uint32_t* __restrict__ vamax) const {
    const int64_t copy = static_cast<int64_t>(i % kTotalCopies) * d.batch * d.heads;
    const int j0 = 2 * i;
    for (int o = tid; o < 3 * D; o += kThreads) {
      const int which = o / D, c = o % D;
      float s = 0.f;
#pragma unroll 8
      for (int x = 0; x < kPhases; ++x) s += sum[which][x][c];
      if (which == 0) {
        qbar[(bh * d.q_blocks + i) * D + c] = s / static_cast<float>(n);
      } else {
        const int j = j0 + which - 1;
        if (j < d.k_blocks) kbar_sums[(bh * d.k_blocks + j) * D + c] = s;
      }
    }
    if (tid < D) {
      const int c = tid;
      float kt = 0.f;
      for (int x = 0; x < kPhases; ++x) kt += sum[1][x][c] + sum[2][x][c];
      atomicAdd(ktotal + (copy + bh) * D + c, kt);
      if constexpr (kV) {
        uint32_t bits = 0;  // non-negative floats order like their bit patterns
        for (int x = 0; x < kPhases; ++x) bits = max(bits, vmax[x][c]);
        atomicMax(vamax + (copy + bh) * D + c, bits);
      }
    }
  }
};

}  // namespace sparsevid::kernels::cuda::pool
