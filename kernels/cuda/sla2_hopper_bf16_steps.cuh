// What the bf16 Hopper sparse kernels share inside a consumer warpgroup: the
// warp's Q rows as wgmma A fragments and the online-softmax step over one
// (sla2_sparse_hopper.cu) or two (sla2_sparse_hopper_pairs.cu) kept 64-key
// blocks.
#pragma once

#include <cstdint>

#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda::hopper {

// The warp's 16 rows of Q (starting at tile row `row0`) as wgmma A fragments,
// one per 16-channel k-step, read from the swizzled TMA tile with ldmatrix.
// Q in registers leaves shared-memory bandwidth to K and V.
template <int D>
__device__ __forceinline__ void LoadQFrags(uint32_t q_s, int row0, uint32_t (&qf)[D / 16][4]) {
  constexpr int kQChunkBytes = kBlockQ * 128;
  const int l = threadIdx.x & 31;
  const int row = row0 + (l & 7) + ((l >> 3) & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int unit = kk * 2 + (l >> 4);  // 16-byte unit along D
    const uint32_t addr = q_s + (unit / 8) * kQChunkBytes + row * 128 +
                          (((unit % 8) ^ (row & 7)) << 4);
    detail::LdMatrixX4(addr, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
  }
}

// S = Q_wg[64 x D] K^T over NT / 8 kept 64-key blocks (NT = 8: one block,
// m64n64; NT = 16: a pair whose 128 rows are one K-major operand, m64n128),
// issued asynchronously as one commit group. k_desc: K-major descriptor of
// the tile (SmemDesc(tile, 16, 1024)); kChunkStride: bytes from a K row's
// channel chunk c to chunk c + 1.
template <int D, int kChunkStride, int NT>
__device__ __forceinline__ void IssueQK(float (&s)[NT][4], const uint32_t (&qf)[D / 16][4],
                                        uint64_t k_desc) {
  static_assert(NT == 8 || NT == 16, "one block or a pair");
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint64_t b = DescAdvance(k_desc, (kk / 4) * kChunkStride + (kk % 4) * 32);
    if constexpr (NT == 16) {
      WgmmaRS_N128<0>(s, qf[kk], b, kk > 0);
    } else {
      WgmmaRS_N64<0>(s, qf[kk], b, kk > 0);
    }
  }
  WgmmaCommit();
}

// One online-softmax step over kHalves kept 64-key blocks (rows g and g+8 of
// the warp; block h is key block j[h], its scores are s[8h .. 8h+7]): masks
// keys >= seq_len (blocks j >= d.FullKeyBlocks(); a whole block when it lies
// past the end, the padding of an odd count), updates max m and partial sum
// l, turns s into P in place; r = factors that rescale O (exp2 domain, scale
// folded in). Masked scores are assigned, so whatever a padding block's tile
// held cannot leak.
template <int kHalves>
__device__ __forceinline__ void SoftmaxStep(float (&s)[8 * kHalves][4], float (&m)[2],
                                            float (&l)[2], float scale_log2,
                                            const int (&j)[kHalves], int full_blocks,
                                            int64_t seq_len, int t, float (&r)[2]) {
#pragma unroll
  for (int hb = 0; hb < kHalves; ++hb) {
    if (j[hb] >= full_blocks) {
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int64_t key = int64_t{j[hb]} * kBlockK + nt * 8 + 2 * t;
        if (key >= seq_len) s[8 * hb + nt][0] = s[8 * hb + nt][2] = -INFINITY;
        if (key + 1 >= seq_len) s[8 * hb + nt][1] = s[8 * hb + nt][3] = -INFINITY;
      }
    }
  }
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < 8 * kHalves; ++nt) {
    mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    // Every step has a kept block with a valid key, so the new maximum is finite.
    const float mn = fmaxf(m[h], detail::QuadMax(mx[h]) * scale_log2);
    r[h] = exp2f(m[h] - mn);
    m[h] = mn;
    l[h] *= r[h];
  }
#pragma unroll
  for (int nt = 0; nt < 8 * kHalves; ++nt) {
    s[nt][0] = detail::Exp2Ftz(fmaf(s[nt][0], scale_log2, -m[0]));
    s[nt][1] = detail::Exp2Ftz(fmaf(s[nt][1], scale_log2, -m[0]));
    s[nt][2] = detail::Exp2Ftz(fmaf(s[nt][2], scale_log2, -m[1]));
    s[nt][3] = detail::Exp2Ftz(fmaf(s[nt][3], scale_log2, -m[1]));
    l[0] += s[nt][0] + s[nt][1];
    l[1] += s[nt][2] + s[nt][3];
  }
}

// Keeps a softmax step ahead of the wait for the P V (and G) it is meant to
// overlap. The wait has no register dependences, so ptxas schedules it first
// and sinks the step's exponentials below it: the step then runs after the
// warpgroup's own P V instead of under it. A shared-memory store of the
// row sums (which need every exponential) cannot pass the wait, so the
// step stays in front. One store per warp, to the warp's own 4-byte slot.
// SLA2_NO_SOFTMAX_PIN leaves it out: tests/cuda/check_softmax_overlap.py
// compiles that as its negative control.
__device__ __forceinline__ void PinAheadOfWait(uint32_t warp_slot, const float (&l)[2]) {
#if !defined(SLA2_NO_SOFTMAX_PIN)
  asm volatile(
      "{\n"
      ".reg .pred lead;\n"
      "setp.eq.u32 lead, %2, 0;\n"
      "@lead st.shared.f32 [%0], %1;\n"
      "}\n" ::"r"(warp_slot),
      "f"(l[0] + l[1]), "r"(threadIdx.x & 31)
      : "memory");
#endif
}

// O *= r per row half after a softmax step. The row maxima rarely move late
// in a row: the rescale is skipped when no row of the warp changed (r is
// exactly 1 then).
template <int D>
__device__ __forceinline__ void RescaleIfMoved(float (&o)[D / 8][4], const float (&r)[2]) {
  if (__any_sync(0xffffffffu, r[0] != 1.f || r[1] != 1.f)) {
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      o[nt][0] *= r[0];
      o[nt][1] *= r[0];
      o[nt][2] *= r[1];
      o[nt][3] *= r[1];
    }
  }
}

}  // namespace sparsevid::kernels::cuda::hopper
