// What the low-bit Hopper sparse kernels share inside a consumer warpgroup:
// P^ V^ into a fresh accumulator, the online-softmax step from int32 scores
// and the two-level accumulation, over one (sla2_sparse_lowbit_hopper.cu)
// or two (sla2_sparse_lowbit_hopper_pairs.cu) kept 64-key blocks; and the
// per-tile slot with the head's V scales. Numerics: conventions.md "Low-bit"
// (S exact in int32, fp32 softmax, P^ = fp8_e4m3(448 P), l over the
// unquantised P).
#pragma once

#include <climits>
#include <cstdint>

#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda::hopper {

// Per tile slot: the producer's TileInfo and the head's V scales (a bulk
// copy counted on the Q barrier).
template <int D>
struct LowBitTileInfo {
  TileInfo t;
  float sv[D];
};

// t[64 x D] = P^[64 x 64 kBlocks] V^[64 kBlocks x D] (fresh accumulator),
// V^T K-major: v_desc = SmemDesc(tile, 16, 8 * kBlockK, kBlockK) of the
// first block's [D][64] tile, the second block's (pairs) right after it.
template <int D, int kBlocks>
__device__ __forceinline__ void IssuePV8(float (&t)[D / 8][4], const uint32_t (&p)[2 * kBlocks][4],
                                         uint64_t v_desc) {
  constexpr int kVBytes = D * kBlockK;
  WgmmaFence();
#pragma unroll
  for (int kc = 0; kc < 2 * kBlocks; ++kc) {
    const uint64_t b = DescAdvance(v_desc, (kc / 2) * kVBytes + (kc % 2) * 32);
    if constexpr (D == 128) {
      WgmmaE4m3RS_N128(t, p[kc], b, kc);
    } else {
      WgmmaE4m3RS_N64(t, p[kc], b, kc);
    }
  }
  WgmmaCommit();
}

constexpr int kMagicBits = 0x4B400000;      // 1.5 * 2^23: float(x + this) = 1.5 * 2^23 + x
constexpr float kMagic = 12582912.0f;       // for |x| < 2^22 (|S| <= 127^2 * 128 < 2^21)
constexpr float kLog2Fp8Max = 8.807354922057604f;  // log2(448)
// A masked score: with the magic added its bits are -inf, so x f - c = -inf
// (f > 0: positive scales) and P = exp2(-inf) = 0, whatever the tile held.
// Masked before the exponentials, the row sums need not wait for the
// zeroing pass after them.
constexpr int kMaskedBits = static_cast<int>(0xFF800000u - static_cast<uint32_t>(kMagicBits));

// One online-softmax step over kHalves kept key blocks j[h] from the int32
// scores (rows g and g + 8 of the warp; block h's scores are s[8h .. 8h+7]).
// f[h] = s_q s_k(j[h]) log2(e) / sqrt(D) turns them into the log2 domain.
// Leaves 448 P (as float bits) in s, keys >= seq_len at 0 (only blocks
// j >= full_blocks have any: the partial last block, or a padding block past
// the end whose keys are all masked), and updates the row max m, the row
// sum l (of 448 P) and the factors r that rescale O. The first half always
// holds a key of the sequence, so the new maximum is finite.
template <int kHalves>
__device__ __forceinline__ void SoftmaxStep8(int (&s)[8 * kHalves][4], float (&m)[2],
                                             float (&l)[2], const float (&f)[kHalves],
                                             const int (&j)[kHalves], int full_blocks,
                                             int64_t seq_len, int t, float (&r)[2]) {
  // Row maxima per block on the integers (the scales are positive). One
  // branch for the step: the common case has no masked key at all.
  bool partial = false;
#pragma unroll
  for (int hb = 0; hb < kHalves; ++hb) partial |= j[hb] >= full_blocks;
  int mx[kHalves][2];
#pragma unroll
  for (int hb = 0; hb < kHalves; ++hb) mx[hb][0] = mx[hb][1] = INT_MIN;
  if (!partial) {
#pragma unroll
    for (int hb = 0; hb < kHalves; ++hb)
#pragma unroll
      for (int nt = 8 * hb; nt < 8 * hb + 8; ++nt) {
        mx[hb][0] = max(mx[hb][0], max(s[nt][0], s[nt][1]));
        mx[hb][1] = max(mx[hb][1], max(s[nt][2], s[nt][3]));
      }
  } else {  // only keys < seq_len; masked scores become the -inf sentinel
#pragma unroll
    for (int hb = 0; hb < kHalves; ++hb) {
      const int valid = static_cast<int>(seq_len - int64_t{j[hb]} * kBlockK);  // < 64: masked
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int key = nt * 8 + 2 * t;
        const int n = 8 * hb + nt;
        if (key < valid) mx[hb][0] = max(mx[hb][0], s[n][0]), mx[hb][1] = max(mx[hb][1], s[n][2]);
        if (key + 1 < valid) mx[hb][0] = max(mx[hb][0], s[n][1]), mx[hb][1] = max(mx[hb][1], s[n][3]);
      }
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int key = nt * 8 + 2 * t;
        const int n = 8 * hb + nt;
        if (key >= valid) s[n][0] = s[n][2] = kMaskedBits;
        if (key + 1 >= valid) s[n][1] = s[n][3] = kMaskedBits;
      }
    }
  }
  float c[kHalves][2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mt;  // the step's row maximum in the log2 domain
    if constexpr (kHalves == 1) {
      int q = max(mx[0][h], __shfl_xor_sync(0xffffffffu, mx[0][h], 1));
      q = max(q, __shfl_xor_sync(0xffffffffu, q, 2));
      mt = static_cast<float>(q) * f[0];
    } else {  // the blocks' scales differ: compare in float, then over the quad
      mt = fmaxf(static_cast<float>(mx[0][h]) * f[0], static_cast<float>(mx[1][h]) * f[1]);
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
      mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 2));
    }
    const float mn = fmaxf(m[h], mt);
    r[h] = detail::Exp2Ftz(m[h] - mn);  // 0 for the first step (m = -inf)
    m[h] = mn;
    l[h] *= r[h];
    // exp2(x f - mn + log2 448) with x = float(bits + magic) - magic: the
    // magic term is folded into the constant. Its rounding shifts a row's
    // exponents by at most half an int32 unit of S, far below INT8 noise.
#pragma unroll
    for (int hb = 0; hb < kHalves; ++hb) c[hb][h] = fmaf(kMagic, f[hb], mn - kLog2Fp8Max);
  }
#pragma unroll
  for (int nt = 0; nt < 8 * kHalves; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float x = __int_as_float(s[nt][e] + kMagicBits);
      const float p = detail::Exp2Ftz(fmaf(x, f[nt / 8], -c[nt / 8][e >> 1]));
      s[nt][e] = __float_as_int(p);
    }
  }
  auto row_sums = [&] {
#pragma unroll
    for (int nt = 0; nt < 8 * kHalves; ++nt) {
      l[0] += __int_as_float(s[nt][0]) + __int_as_float(s[nt][1]);
      l[1] += __int_as_float(s[nt][2]) + __int_as_float(s[nt][3]);
    }
  };
  // Pairs: the row sums go beside the exponentials (the MUFU queue has
  // room for them), measured 1.5-3 % faster at the 14B shape. The masked
  // P are already 0 there, but the zeroing pass stays: its branch keeps
  // ptxas from hoisting P V's wait above the exponentials, which lost 1.5 %
  // (the wait then stalls the softmax until P V is done). Single blocks
  // keep the order they measured fastest in (sums after the branch; the
  // pair order costs them 5 %).
  if constexpr (kHalves == 2) row_sums();
  if (partial) {
#pragma unroll
    for (int hb = 0; hb < kHalves; ++hb) {
      const int valid = static_cast<int>(seq_len - int64_t{j[hb]} * kBlockK);
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        const int key = nt * 8 + 2 * t;
        const int n = 8 * hb + nt;
        if (key >= valid) s[n][0] = s[n][2] = 0;
        if (key + 1 >= valid) s[n][1] = s[n][3] = 0;
      }
    }
  }
  if constexpr (kHalves == 1) row_sums();
}

// 448 P (float bits) -> e4m3 A fragments of P V's k32 steps: register kc
// holds the accumulator columns 32 kc.. in Fp8KeyOfPosition order.
template <int kHalves>
__device__ __forceinline__ void PackP8(const int (&s)[8 * kHalves][4],
                                       uint32_t (&p)[2 * kHalves][4]) {
  auto x = [&](int nt, int e) { return __int_as_float(s[nt][e]); };
#pragma unroll
  for (int kc = 0; kc < 2 * kHalves; ++kc) {
    const int n0 = 4 * kc;
    p[kc][0] = detail::PackE4m3x4(x(n0, 0), x(n0, 1), x(n0 + 1, 0), x(n0 + 1, 1));
    p[kc][1] = detail::PackE4m3x4(x(n0, 2), x(n0, 3), x(n0 + 1, 2), x(n0 + 1, 3));
    p[kc][2] = detail::PackE4m3x4(x(n0 + 2, 0), x(n0 + 2, 1), x(n0 + 3, 0), x(n0 + 3, 1));
    p[kc][3] = detail::PackE4m3x4(x(n0 + 2, 2), x(n0 + 2, 3), x(n0 + 3, 2), x(n0 + 3, 3));
  }
}

// Two-level accumulation: O = O r + T, with T the fresh fp32 P^V^ of one
// step and r the factors that move O to that step's row maxima.
template <int D>
__device__ __forceinline__ void AccumulateBlock(float (&o)[D / 8][4], const float (&r)[2],
                                                const float (&ta)[D / 8][4]) {
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    o[nt][0] = fmaf(o[nt][0], r[0], ta[nt][0]);
    o[nt][1] = fmaf(o[nt][1], r[0], ta[nt][1]);
    o[nt][2] = fmaf(o[nt][2], r[1], ta[nt][2]);
    o[nt][3] = fmaf(o[nt][3], r[1], ta[nt][3]);
  }
}

// alpha * O_s = alpha * O s_v / l (l carries the 448 of P^) through the
// warpgroup's staging tile, added to the linear branch's value in out (TMA
// reduce-add) when alpha is given. The head's V scales and the row sums
// first: their latency then hides under the wait for the staging tile.
template <int D>
__device__ __forceinline__ void LowBitEpilogue(const float (&o)[D / 8][4], const float (&l)[2],
                                               const LowBitTileInfo<D>* slot, bool add,
                                               const OutStage<D>& out_stage,
                                               const CUtensorMap* tmap_out, int64_t seq_len,
                                               int wg, int wrow, int wtid, int t) {
  const TileInfo& ti = slot->t;
  float2 sv[D / 8];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt)
    sv[nt] = *reinterpret_cast<const float2*>(slot->sv + nt * 8 + 2 * t);
  float fo[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const float lsum = detail::QuadSum(l[half]);
    fo[half] = lsum > 0.f ? ti.alpha / lsum : 0.f;  // no kept block: O_s = 0
  }
  const int i = ti.i, h = ti.h, b = ti.b;
  OutStageAcquire(wg, wtid);
  auto scaled = [&](int nt, int half) {
    return detail::PackBf16(o[nt][2 * half] * sv[nt].x * fo[half],
                            o[nt][2 * half + 1] * sv[nt].y * fo[half]);
  };
#pragma unroll
  for (int nt = 0; nt < D / 8; nt += 2)
    out_stage.Put16x16(wrow, nt * 8, scaled(nt, 0), scaled(nt, 1), scaled(nt + 1, 0),
                       scaled(nt + 1, 1));
  OutStageStore<D>(out_stage, tmap_out, add, i * kBlockQ + wg * 64, seq_len, h, b, wg, wtid);
}

// ----------------------------------------------------------- host side

struct LowBitHopperArgs {
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* qscale;  // [B,H,T_m]
  const float* kscale;  // [B,H,T_n]
  const float* vscale;  // [B,H,D], 16-byte aligned rows
  const float* alpha;   // null: alpha = 1 and out holds no linear part
  __nv_bfloat16* out;
  Sla2Dims d;
  int64_t num_tiles;
  bool pingpong;
};
LowBitHopperArgs MakeLowBitArgs(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                                const Sla2Workspace::Buffers& w);

// Tensor maps of kQuantize's dense buffers (2-D byte maps: Q8 boxes of 128
// rows x D bytes, K8 boxes of 64 rows x D bytes, V^T boxes of D rows x 64
// bytes; the swizzle of the row length) and of out; false where TMA cannot
// address them (the caller then uses the mma.sync kernel).
bool MakeLowBitMaps(const Sla2Problem& p, const Sla2Dims& d, const Sla2Workspace::Buffers& w,
                    CUtensorMap* q8, CUtensorMap* k8, CUtensorMap* vt8, CUtensorMap* out);

// Launches a low-bit Hopper kernel (maps, arguments, `smem_bytes` of dynamic
// shared memory, the persistent grid); cudaErrorNotSupported, nothing
// launched, where TMA cannot address the buffers.
template <class Kernel>
cudaError_t LaunchLowBitKernel(Kernel kernel, int smem_bytes, const Sla2Problem& p,
                               const Sla2Dims& d, int64_t lut_capacity,
                               const Sla2Workspace::Buffers& w, cudaStream_t s, int sms) {
  CUtensorMap tq, tk, tv, tout;
  if (!MakeLowBitMaps(p, d, w, &tq, &tk, &tv, &tout)) return cudaErrorNotSupported;
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (e != cudaSuccess) return e;
  const LowBitHopperArgs a = MakeLowBitArgs(p, d, lut_capacity, w);
  kernel<<<static_cast<unsigned>(PersistentCtas(sms, a.num_tiles)), kThreads, smem_bytes, s>>>(
      tq, tk, tv, tout, a);
  return cudaGetLastError();
}

}  // namespace sparsevid::kernels::cuda::hopper
