// Warp-level bf16 tile products shared by the sparse and linear kernels.
// A warp owns 16 query rows; key tiles are 64 rows; shared tiles are bf16
// [rows][D] with SwizzledOffset<2*D> addressing.
//
// Fragment layouts follow PTX mma.m16n8k16: lane = 4*g + t holds accumulator
// elements (row g, cols 2t, 2t+1) and (row g+8, cols 2t, 2t+1) of each n8 tile.
#pragma once

#include "kernels/cuda/mma_sm80.cuh"

namespace sparsevid::kernels::cuda::detail {

// A fragments (16 rows x 16 cols, k-step kk) of a row-major shared tile.
template <int D>
__device__ __forceinline__ void LoadAFrag(uint32_t tile, int row0, int kk, uint32_t (&a)[4]) {
  const int l = threadIdx.x & 31;
  LdMatrixX4(tile + SwizzledOffset<2 * D>(row0 + (l & 7) + ((l >> 3) & 1) * 8, kk * 2 + (l >> 4)),
             a[0], a[1], a[2], a[3]);
}

// s[16 x 64] = A(rows row0.., D) * B(64 x D)^T, both shared tiles.
template <int D>
__device__ __forceinline__ void WarpABt(uint32_t a_tile, int row0, uint32_t b_tile,
                                        float (&s)[8][4]) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
    LoadAFrag<D>(a_tile, row0, kk, a);
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b0, b1, b2, b3;
      LdMatrixX4(b_tile + SwizzledOffset<2 * D>(np * 16 + (l & 7) + (l >> 4) * 8,
                                                kk * 2 + ((l >> 3) & 1)),
                 b0, b1, b2, b3);
      MmaBf16(s[2 * np], a, b0, b1);
      MmaBf16(s[2 * np + 1], a, b2, b3);
    }
  }
}

// Accumulator tile [16 x 16 KS] -> bf16 A fragments for the KS k-steps of
// P V (KS = 4: one 64-key block, 8: a pair of blocks).
template <int KS>
__device__ __forceinline__ void AccToAFrags(const float (&s)[2 * KS][4], float sign,
                                            uint32_t (&p)[KS][4]) {
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    p[kk][0] = PackBf16(sign * s[2 * kk][0], sign * s[2 * kk][1]);
    p[kk][1] = PackBf16(sign * s[2 * kk][2], sign * s[2 * kk][3]);
    p[kk][2] = PackBf16(sign * s[2 * kk + 1][0], sign * s[2 * kk + 1][1]);
    p[kk][3] = PackBf16(sign * s[2 * kk + 1][2], sign * s[2 * kk + 1][3]);
  }
}

// o[16 x D] += A(k-step kk fragments) * V(rows 16*kk + key_row0 .., D).
template <int D>
__device__ __forceinline__ void WarpAccumulatePV(const uint32_t (&a)[4], uint32_t v_tile,
                                                 int key_row0, float (&o)[D / 8][4]) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int dp = 0; dp < D / 16; ++dp) {
    uint32_t b0, b1, b2, b3;
    LdMatrixX4Trans(v_tile + SwizzledOffset<2 * D>(key_row0 + (l & 7) + ((l >> 3) & 1) * 8,
                                                   dp * 2 + (l >> 4)),
                    b0, b1, b2, b3);
    MmaBf16(o[2 * dp], a, b0, b1);
    MmaBf16(o[2 * dp + 1], a, b2, b3);
  }
}

// o[16 x D] += P[16 x 64] * V(64 x D).
template <int D>
__device__ __forceinline__ void WarpPV(const uint32_t (&p)[4][4], uint32_t v_tile,
                                       float (&o)[D / 8][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) WarpAccumulatePV<D>(p[kk], v_tile, kk * 16, o);
}

// Two-m-tile versions (a warp owns 32 rows): each B fragment read from
// shared memory feeds two MMAs, halving K/V shared-memory traffic per FLOP.
template <int D, int MT>
__device__ __forceinline__ void WarpABtMulti(uint32_t a_tile, int row0, uint32_t b_tile,
                                             float (&s)[MT][8][4]) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) LoadAFrag<D>(a_tile, row0 + 16 * mt, kk, a[mt]);
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b0, b1, b2, b3;
      LdMatrixX4(b_tile + SwizzledOffset<2 * D>(np * 16 + (l & 7) + (l >> 4) * 8,
                                                kk * 2 + ((l >> 3) & 1)),
                 b0, b1, b2, b3);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        MmaBf16(s[mt][2 * np], a[mt], b0, b1);
        MmaBf16(s[mt][2 * np + 1], a[mt], b2, b3);
      }
    }
  }
}

template <int D, int MT>
__device__ __forceinline__ void WarpPVMulti(const uint32_t (&p)[MT][4][4], uint32_t v_tile,
                                            float (&o)[MT][D / 8][4]) {
  const int l = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b0, b1, b2, b3;
      LdMatrixX4Trans(v_tile + SwizzledOffset<2 * D>(kk * 16 + (l & 7) + ((l >> 3) & 1) * 8,
                                                     dp * 2 + (l >> 4)),
                      b0, b1, b2, b3);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        MmaBf16(o[mt][2 * dp], p[mt][kk], b0, b1);
        MmaBf16(o[mt][2 * dp + 1], p[mt][kk], b2, b3);
      }
    }
  }
}

}  // namespace sparsevid::kernels::cuda::detail
