// What the two Hopper (sm_90a) sparse kernels share: the CTA shape (a TMA
// producer warp beside two consumer warpgroups of 64 query rows), the
// persistent tile order, the warpgroup's output store, and the host checks
// that decide whether a Hopper kernel runs (sla2_sparse_hopper.cu defines
// them; sla2_sparse_lowbit_hopper.cu is the other user).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kernels/cuda/sla2_epilogue.cuh"
#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_sparse_hopper_ptx.cuh"

namespace sparsevid::kernels::cuda::hopper {

constexpr int kConsumerThreads = 256;             // 2 warpgroups x 64 query rows
constexpr int kThreads = kConsumerThreads + 128;  // + the producer warpgroup
constexpr int kProducerWarp = kConsumerThreads / 32;
// Registers per thread after setmaxnreg. Each SM sub-partition holds 16K
// registers and gets one producer and two consumer warps: 24 + 2 * 240 = 504
// per lane fits (32 * 504 <= 16384), and the 168 every warp starts with
// (launch bounds 384 threads, 1 CTA) are what the producer hands over.
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
constexpr int kConsumerWarps = kConsumerThreads / 32;  // arrivals per release

// One tile of the persistent grid: query block i of (batch b, head h), in
// query-block-fastest order (the CTAs running together share one head's K/V
// in L2), with its kept key-block list. The producer and the consumers walk
// the same tiles, so both decode them here.
struct HopperTile {
  int i, h, b, cnt;
  const int32_t* lut_row;
};

__device__ __forceinline__ HopperTile DecodeTile(int64_t tile, const Sla2Dims& d,
                                                 const int32_t* counts, const int32_t* lut,
                                                 int64_t lut_capacity) {
  const int i = static_cast<int>(tile % d.q_blocks);
  const int64_t bh = tile / d.q_blocks;
  return {i, static_cast<int>(bh % d.heads), static_cast<int>(bh / d.heads),
          counts[bh * d.q_blocks + i], lut + (bh * d.q_blocks + i) * lut_capacity};
}

// One arrival per warp on an mbarrier counting kConsumerWarps.
__device__ __forceinline__ void WarpArrive(uint32_t bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) MbarArrive(bar);
}

// out[r, :] = stage[r, :] (+ out[r, :]) for the warpgroup's 64 rows.
template <int D>
__device__ __forceinline__ void StoreRows64(const uint8_t* stage, __nv_bfloat16* out,
                                            int64_t stride_l, int valid_rows, bool accumulate,
                                            int tid) {
  constexpr int kChunks = D / 8;
  constexpr int kPer = 64 * kChunks / 128;
  uint4 prev[kPer];
  if (accumulate) {
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int idx = tid + e * 128;
      const int r = idx / kChunks, c = idx % kChunks;
      prev[e] = r < valid_rows ? *reinterpret_cast<const uint4*>(out + r * stride_l + c * 8)
                               : make_uint4(0, 0, 0, 0);
    }
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int idx = tid + e * 128;
    const int r = idx / kChunks, c = idx % kChunks;
    if (r >= valid_rows) continue;
    uint4 v = *reinterpret_cast<const uint4*>(stage + r * detail::OutStageStride<D>() + c * 16);
    if (accumulate) {
      uint32_t* vw = reinterpret_cast<uint32_t*>(&v);
      const uint32_t* pw = reinterpret_cast<const uint32_t*>(&prev[e]);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&vw[q]));
        const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&pw[q]));
        const __nv_bfloat162 sum = __floats2bfloat162_rn(a.x + b.x, a.y + b.y);
        vw[q] = *reinterpret_cast<const uint32_t*>(&sum);
      }
    }
    *reinterpret_cast<uint4*>(out + r * stride_l + c * 8) = v;
  }
}

// ----------------------------------------------------------- host side

// Number of SMs when the current device is the sm_90 these kernels are built
// for, else 0.
int HopperSms();
// CTAs of a persistent grid: one per SM, or SLA2_HOPPER_MAX_CTAS (tests use
// it to give each CTA many tiles), at most one per tile.
int64_t PersistentCtas(int sms, int64_t tiles);
// SLA2_SPARSE_KERNEL unset, empty or "hopper" (the default is the Hopper kernels).
bool HopperKernelSelected();
// The environment variable is set to "0".
bool EnvIsZero(const char* name);
// cuTensorMapEncodeTiled through the runtime's driver entry point: a map of
// `rank` dimensions (dims[0] innermost, strides in bytes for dims 1..),
// boxes of `box` elements, zeros past the end. False where the driver
// rejects it (the caller then uses a kernel without TMA).
bool EncodeTensorMap(CUtensorMap* map, CUtensorMapDataType type, int rank, const void* base,
                     const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                     CUtensorMapSwizzle swizzle);

}  // namespace sparsevid::kernels::cuda::hopper
