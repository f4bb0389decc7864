// Epilogue of the mma.sync sparse kernels: the CTA's 128 x D output rows go
// through a shared bf16 tile so that global memory sees 16-byte coalesced
// accesses, and the read of the linear branch's value
// (blend) is issued for all of a thread's chunks before any store, instead
// of one dependent read-modify-write per 4 bytes.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace sparsevid::kernels::cuda::detail {

constexpr int kOutRows = 128;

// Row stride of the staging tile in bytes: D + 8 bf16 keeps fragment writes
// free of bank conflicts and rows 16-byte aligned.
template <int D>
__host__ __device__ constexpr int OutStageStride() {
  return (D + 8) * 2;
}

// Stores two values of row `row`, columns col, col+1 into the staging tile.
template <int D>
__device__ __forceinline__ void StageOut(uint8_t* stage, int row, int col, float x, float y) {
  *reinterpret_cast<__nv_bfloat162*>(stage + row * OutStageStride<D>() + col * 2) =
      __floats2bfloat162_rn(x, y);
}

// out[r, :] = stage[r, :] (+ out[r, :] when accumulate) for r < valid_rows
// of the kOutRows-row tile, by the CTA's kThreads threads. out points at row
// 0 of the tile; rows are stride_l elements apart.
template <int D, int kThreads>
__device__ __forceinline__ void StoreOutRows(const uint8_t* stage, __nv_bfloat16* out,
                                             int64_t stride_l, int valid_rows, bool accumulate) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  constexpr int kPer = kOutRows * kChunks / kThreads;
  static_assert(kOutRows * kChunks % kThreads == 0, "threads must divide the tile");
  const int tid = threadIdx.x;
  uint4 prev[kPer];
  if (accumulate) {
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int idx = tid + e * kThreads;
      const int r = idx / kChunks, c = idx % kChunks;
      prev[e] = r < valid_rows ? *reinterpret_cast<const uint4*>(out + r * stride_l + c * 8)
                               : make_uint4(0, 0, 0, 0);
    }
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int idx = tid + e * kThreads;
    const int r = idx / kChunks, c = idx % kChunks;
    if (r >= valid_rows) continue;
    uint4 v = *reinterpret_cast<const uint4*>(stage + r * OutStageStride<D>() + c * 16);
    if (accumulate) {
      uint32_t* vw = reinterpret_cast<uint32_t*>(&v);
      const uint32_t* pw = reinterpret_cast<const uint32_t*>(&prev[e]);
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&vw[w]));
        const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&pw[w]));
        const __nv_bfloat162 s = __floats2bfloat162_rn(a.x + b.x, a.y + b.y);
        vw[w] = *reinterpret_cast<const uint32_t*>(&s);
      }
    }
    *reinterpret_cast<uint4*>(out + r * stride_l + c * 8) = v;
  }
}

}  // namespace sparsevid::kernels::cuda::detail
