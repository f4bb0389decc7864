// Stage kSparse (bf16) on Hopper (sm_90a): the same contract as
// sla2_sparse_bf16.cu (online softmax over the kept key blocks, partial last
// block masked, empty row -> O_s = 0, epilogue O = alpha * O_s + out), with
// Hopper's own machinery:
//  - persistent grid (one CTA per SM, or HeadAlignedGrid's), tiles = (query block, head, batch) in
//    query-block-fastest order so the CTAs running together share one head's
//    K/V in L2;
//  - one producer warp issues TMA box loads: Q (128 rows) per tile and the
//    kept K/V blocks (64 rows each, gathered through the block list) into a
//    4-stage ring guarded by mbarriers; it runs ahead across tiles;
//  - two consumer warpgroups own 64 query rows each: S = Q K^T by wgmma with
//    both operands in shared memory, P V by wgmma with P in registers;
//  - within a warpgroup the softmax of block n runs while P V of block n-1 is
//    on the tensor cores (S of n and P V of n-1 are issued back to back);
//  - the producer hands each tile's metadata (indices, count, alpha) and each
//    stage's block index to the consumers through shared memory, so they
//    issue no dependent global loads at a tile's start or end;
//  - epilogue: stmatrix into a per-warpgroup swizzled tile that one thread
//    stores with TMA (a TMA reduce-add where out already holds the linear
//    branch's part) while the warpgroup goes on to the next tile.
// The fused variant (kFused) also computes the linear branch, so the module
// needs no per-tile pass of its own (sla2.md 2.4, pre-aggregation):
//  - a third tile per stage, phi(K~_j) (written once by the linear stage),
//    and one more wgmma per kept block: G -= phi(K~_j)^T V_j, with G started
//    at H_tot, so after the last block G = H_i, this tile's complement state
//    (warpgroup w holds rows 64w.. at D = 128; both hold all rows at D = 64);
//  - epilogue: H_i goes through shared memory to both warpgroups, phi(Q) is
//    computed in place of the Q fragments, O_l = phi(Q) H_i / phi(Q) z_i by
//    wgmma, and O = alpha O_s + (1 - alpha) O_l is stored (out is not read).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/sla2_hopper_bf16_steps.cuh"
#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_persistent_grid.h"
#include "kernels/cuda/sla2_sparse_hopper.cuh"
#include "kernels/cuda/sla2_tile_profile.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

struct HopperArgs {
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // null: alpha = 1 and out holds no linear part
  const float* zi;     // fused: [B,H,T_m,D] z_tot - sum of the kept z_j
  __nv_bfloat16* out;
  Sla2Dims d;
  int64_t num_tiles;
  bool pingpong;  // the two warpgroups take turns issuing their GEMMs
  bool l2_hints;  // TMA loads: K/V evict_last, Q evict_first
};

__device__ __forceinline__ HopperTile DecodeTile(int64_t tile, const HopperArgs& args) {
  return hopper::DecodeTile(tile, args.d, args.counts, args.lut, args.lut_capacity);
}

// Shared-memory map. Every tile is a set of 128-byte-wide column chunks
// (64 bf16 channels), each a TMA box stored with the 128-byte swizzle. A
// stage holds K, V (and phi(K~) when fused) of one kept block.
template <int D, bool kFused>
struct Smem {
  static constexpr int kChunks = D / 64;
  static constexpr int kQChunkBytes = kBlockQ * 128;
  static constexpr int kKvChunkBytes = kBlockK * 128;
  static constexpr int kQBytes = kChunks * kQChunkBytes;
  static constexpr int kKBytes = kChunks * kKvChunkBytes;  // = V bytes = phi(K~) bytes
  static constexpr int kStageBytes = (kFused ? 3 : 2) * kKBytes;
  // Fused at D = 128: three 48 KB stages are what fits beside Q and the
  // output staging (227 KB per CTA). (Five unfused stages fit too and
  // measured the same as four.)
  static constexpr int kStages = kFused && D == 128 ? 3 : 4;
  static constexpr int kStageOff = kQBytes;
  // Output staging; when fused it first carries H_i [D][D] bf16 from both
  // warpgroups to both: warpgroup w's staging holds G rows 64w.. (at D = 64
  // warpgroup 0's holds all of them) in its output tile's layout, D / 64
  // MN-major chunks of 64 rows x 128 bytes, where TMA loads H_tot's rows.
  static constexpr int kOutOff = kStageOff + kStages * kStageBytes;
  static constexpr int kOutBytes = 2 * OutStage<D>::kBytes;
  static constexpr int kInfoOff = kOutOff + kOutBytes;  // two TileInfo slots
  static constexpr int kMetaOff = kInfoOff + 2 * static_cast<int>(sizeof(TileInfo));
  static constexpr int kBarOff = kMetaOff + kStages * static_cast<int>(sizeof(StageMeta));
  static constexpr int kBarBytes = RingBarriers<kStages>::kBytes;
  static constexpr int kZOff = kBarOff + kBarBytes;  // fused: z_i per warpgroup, 2 x D floats
  static constexpr int kPinOff = kZOff + (kFused ? 2 * D * 4 : 0);  // PinAheadOfWait, a slot per consumer warp
  static constexpr int kHBarOff = kPinOff + kConsumerWarps * 4;  // fused: H_tot loaded, per warpgroup
  static constexpr int kBytes = kHBarOff + (kFused ? 2 * 8 : 0) + 1024;  // + alignment slack
  static_assert(kOutOff % 1024 == 0 && kBarOff % 8 == 0 && kHBarOff % 8 == 0, "alignment");
  static_assert(kBytes <= 227 * 1024, "shared memory per CTA");
};

constexpr int kKvChunkBytes = kBlockK * 128;

// G -= phi(K~_j)^T V_j for this warpgroup's G rows (phi(K~) chunk wg at
// D = 128), issued into the caller's commit group. v_desc / phik_desc:
// MN-major descriptors of the stage's V and phi(K~) tiles.
template <int D>
__device__ __forceinline__ void IssueG(float (&g)[D / 8][4], uint64_t v_desc, uint64_t phik_desc,
                                       int wg) {
  const uint64_t a_base = DescAdvance(phik_desc, (D == 128 ? wg : 0) * kKvChunkBytes);
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t a = DescAdvance(a_base, kk * 16 * 128);
    const uint64_t b = DescAdvance(v_desc, kk * 16 * 128);
    if constexpr (D == 128) {
      WgmmaSSTT_N128<-1>(g, a, b);
    } else {
      WgmmaSSTT_N64<-1>(g, a, b);
    }
  }
}

// O[64 x D] += P[64 x 64] V[64 x D], and when fused G -= phi(K~_j)^T V, one
// commit group.
template <int D, bool kFused>
__device__ __forceinline__ void IssuePV(float (&o)[D / 8][4], const uint32_t (&p)[4][4],
                                        uint64_t v_desc, float (&g)[D / 8][4], uint64_t phik_desc,
                                        int wg) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t b = DescAdvance(v_desc, kk * 16 * 128);
    if constexpr (D == 128) {
      WgmmaRS_N128(o, p[kk], b);
    } else {
      WgmmaRS_N64<1>(o, p[kk], b, 1);
    }
  }
  if constexpr (kFused) IssueG<D>(g, v_desc, phik_desc, wg);
  WgmmaCommit();
}

// 2^y for y <= 0 on the FMA pipe: 2^j p(f) with j = rint(y) (the 1.5 * 2^23
// rounding trick), |f| <= 1/2 and p the cubic Taylor polynomial (relative
// error below 8e-4, under bf16's 3.9e-3, which is where phi(Q) goes);
// y below -125 returns 2^-125, negligible beside the row's largest value, 1.
__device__ __forceinline__ float Exp2Fma(float y) {
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23
  const float yc = fmaxf(y, -125.f);
  const float r = yc + kRound;  // j in the low mantissa bits
  const float f = yc - (r - kRound);
  const float p = fmaf(fmaf(fmaf(0.0555041087f, f, 0.240226507f), f, 0.693147181f), f, 1.f);
  return __int_as_float(__float_as_int(p) + ((__float_as_int(r) - 0x4B400000) << 23));
}

// phi(Q) (softmax over the D channels of each row) in place of the warp's Q
// fragments (rows g: registers 0, 2; rows g + 8: 1, 3; a row's channels are
// spread over the quad), and den[half] = phi(Q)[row] . z for both rows, from
// the fp32 values. Left unnormalised (exp(q - max q)): O_l = phi(Q) H / phi(Q) z
// divides the row's sum out again, and bf16 rounds it the same relatively.
// (The sum, its reciprocal and the 64 multiplies were ~700 cycles a tile.)
template <int D>
__device__ __forceinline__ void PhiQFrags(uint32_t (&qf)[D / 16][4], const float* z, int t,
                                          float (&den)[2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    float x[D / 16][4];
    float mx = -INFINITY;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qf[kk][half]));
      const float2 hi =
          __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qf[kk][half + 2]));
      x[kk][0] = lo.x;
      x[kk][1] = lo.y;
      x[kk][2] = hi.x;
      x[kk][3] = hi.y;
      mx = fmaxf(mx, fmaxf(fmaxf(lo.x, lo.y), fmaxf(hi.x, hi.y)));
    }
    mx = detail::QuadMax(mx);
    // Both warpgroups compute phi(Q) at once, on one MUFU pipe: half of the
    // exponentials go to the FMA pipe (Exp2Fma; the fused kernel measured
    // 1 % faster at both shapes, docs/cuda-kernels.md).
    const float ml = mx * 1.4426950408889634f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float y = fmaf(x[kk][e], 1.4426950408889634f, -ml);  // log2 domain, <= 0
        x[kk][e] = e < 2 ? detail::Exp2Ftz(y) : Exp2Fma(y);
      }
    float dn = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c = kk * 16 + 2 * t;
      dn += x[kk][0] * z[c] + x[kk][1] * z[c + 1] + x[kk][2] * z[c + 8] + x[kk][3] * z[c + 9];
      qf[kk][half] = detail::PackBf16(x[kk][0], x[kk][1]);
      qf[kk][half + 2] = detail::PackBf16(x[kk][2], x[kk][3]);
    }
    den[half] = detail::QuadSum(dn);
  }
}

// kLinearOnly (with kFused): the linear branch alone, for the low-bit
// module: no Q K^T, softmax or P V, only G and the epilogue, which then
// writes (1 - alpha) O_l for the low-bit sparse kernel to add alpha O_s to.
template <int D, bool kFused, bool kLinearOnly = false>
__global__ void __launch_bounds__(kThreads, 1)
    SparseBf16HopperKernel(const __grid_constant__ CUtensorMap tmap_q,
                           const __grid_constant__ CUtensorMap tmap_k,
                           const __grid_constant__ CUtensorMap tmap_v,
                           const __grid_constant__ CUtensorMap tmap_phik,
                           const __grid_constant__ CUtensorMap tmap_htot,
                           const __grid_constant__ CUtensorMap tmap_out, HopperArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = Smem<D, kFused>;
  constexpr int kStages = S::kStages;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // 128-byte swizzle atoms are 1 KB
  uint8_t* const smem = smem_raw + (base - raw);
  const uint32_t q_s = base;
  auto k_tile = [&](int st) { return base + S::kStageOff + st * S::kStageBytes; };
  auto v_tile = [&](int st) { return k_tile(st) + S::kKBytes; };
  auto phik_tile = [&](int st) { return v_tile(st) + S::kKBytes; };  // fused only
  TileInfo* const info = reinterpret_cast<TileInfo*>(smem + S::kInfoOff);
  StageMeta* const meta = reinterpret_cast<StageMeta*>(smem + S::kMetaOff);
  const RingBarriers<kStages> bar{base + S::kBarOff};  // full_v also covers phi(K~)
  const Sla2Dims& d = args.d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  auto htot_full = [&](int w) { return base + S::kHBarOff + 8 * w; };  // fused only
  if (kFused && threadIdx.x == 0) {
    MbarInit(htot_full(0), 1);
    MbarInit(htot_full(1), 1);
  }
  bar.Init();  // (its fence and __syncthreads cover the two above)
  // Launched programmatically (fused): the kernel before it (KeptZKernel)
  // may still run; everything below reads its outputs or what came before.
  detail::WaitForPriorGrids();

  if (warp >= kProducerWarp) {
    SetMaxRegs<kProducerRegs, false>();
    if (warp != kProducerWarp || lane != 0) return;
    // K/V blocks are re-read by the other CTAs of the head: keep them in L2;
    // Q is read once.
    const uint64_t keep = L2EvictLast(), once = L2EvictFirst();
    auto load = [&](uint32_t dst, const CUtensorMap* map, uint32_t full, int c0, int row, int h,
                    int b, uint64_t policy) {
      TmaLoad4dPolicy(args.l2_hints, dst, map, full, c0, row, h, b, policy);
    };
    RingPos<kStages> pos;  // K/V blocks loaded so far, over all tiles of this CTA
    int k = 0;             // tiles so far
    for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
      const HopperTile ht = DecodeTile(tile, args);
      const auto [i, h, b, cnt, lut_row] = ht;
      if (k > 0) MbarWait(bar.q_empty(), (k - 1) & 1);  // consumers' last Q K^T of the previous tile
      WriteTileInfo(info + (k & 1), ht, args.alpha, d.q_blocks, 0.f);
      MbarArriveExpectTx(bar.q_full(), S::kQBytes);
#pragma unroll
      for (int c = 0; c < S::kChunks; ++c)
        load(q_s + c * S::kQChunkBytes, &tmap_q, bar.q_full(), c * 64, i * kBlockQ, h, b, once);
      for (int n = 0; n < cnt; ++n, pos.Next()) {
        const int st = pos.st;
        MbarWait(bar.empty(st), pos.ph ^ 1);
        const int j = lut_row[n];
        meta[st].j = j;  // read by the consumers once the stage's loads complete
        const int key0 = j * kBlockK;
        if constexpr (!kLinearOnly) {
          MbarArriveExpectTx(bar.full_k(st), S::kKBytes);
#pragma unroll
          for (int c = 0; c < S::kChunks; ++c)
            load(k_tile(st) + c * S::kKvChunkBytes, &tmap_k, bar.full_k(st), c * 64, key0, h, b,
                 keep);
        }
        MbarArriveExpectTx(bar.full_v(st), (kFused ? 2 : 1) * S::kKBytes);
#pragma unroll
        for (int c = 0; c < S::kChunks; ++c)
          load(v_tile(st) + c * S::kKvChunkBytes, &tmap_v, bar.full_v(st), c * 64, key0, h, b, keep);
        if constexpr (kFused) {
#pragma unroll
          for (int c = 0; c < S::kChunks; ++c)
            load(phik_tile(st) + c * S::kKvChunkBytes, &tmap_phik, bar.full_v(st), c * 64, key0, h, b,
                 keep);
        }
      }
    }
    return;
  }

  // Consumer warpgroups.
  SetMaxRegs<kConsumerRegs, true>();
  const int wg = warp / 4;
  const int t = lane & 3;
  const int wrow = (warp % 4) * 16;  // first row of this warp inside the warpgroup
  const int wtid = threadIdx.x % 128;
  const OutStage<D> out_stage{smem + S::kOutOff + wg * OutStage<D>::kBytes};
  // Scores in the log2 domain: exp(x/sqrt(D)) = exp2(x * log2(e)/sqrt(D)).
  const float scale_log2 = 1.4426950408889634f * rsqrtf(static_cast<float>(D));
  const PingPong turns{args.pingpong, wg};
  turns.Start();
  const int full_blocks = d.FullKeyBlocks();
  // Stage st's tiles are the first stage's moved by st stages.
  const uint64_t k_desc0 = SmemDesc(k_tile(0), 16, 1024);
  const uint64_t v_desc0 = SmemDesc(v_tile(0), kKvChunkBytes, 1024);
  const uint64_t phik_desc0 = SmemDesc(phik_tile(0), kKvChunkBytes, 1024);
  auto k_desc = [&](int st) { return DescStep<S::kStageBytes>(k_desc0, st); };
  auto v_desc = [&](int st) { return DescStep<S::kStageBytes>(v_desc0, st); };
  auto phik_desc = [&](int st) { return DescStep<S::kStageBytes>(phik_desc0, st); };
  RingPos<kStages> pos;  // blocks consumed so far, over all tiles of this CTA
  int k = 0;
  SLA2_PROFILE_START();
  for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
    MbarWait(bar.q_full(), k & 1);
    SLA2_STAMP(kProfQWait);
    const TileInfo ti = info[k & 1];
    const int i = ti.i, h = ti.h, b = ti.b, cnt = ti.cnt;
    const int64_t bh = static_cast<int64_t>(b) * d.heads + h;

    float o[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    // Fused: G = -(sum of the kept phi(K~_j)^T V_j), from 0; H_tot is added
    // in the epilogue from the bf16 rows that TMA brings into the staging.
    // (Loading fp32 H_tot into G here held the warps ~2500 cycles a tile.)
    float ga[D / 8][4];
    if constexpr (kFused) {
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) ga[nt][0] = ga[nt][1] = ga[nt][2] = ga[nt][3] = 0.f;
    }
    // One thread of the warpgroup that owns the staging: once its last store
    // has read the staging, H_tot's rows of this warpgroup go there.
    auto load_htot = [&] {
      if (kFused && wtid == 0 && (D == 128 || wg == 0)) {
        BulkWaitRead();
        const uint32_t dst = detail::SmemAddr(smem + S::kOutOff) + wg * OutStage<D>::kBytes;
        MbarArriveExpectTx(htot_full(wg), D / 64 * kKvChunkBytes);
#pragma unroll
        for (int c = 0; c < D / 64; ++c)
          TmaLoad2d(dst + c * kKvChunkBytes, &tmap_htot, htot_full(wg), c * 64,
                    static_cast<int>(bh * D + (D == 128 ? 64 * wg : 0)));
      }
    };

    uint32_t qf[D / 16][4];
    if (kFused || cnt > 0) LoadQFrags<D>(q_s, wg * 64 + wrow, qf);
    WarpArrive(bar.q_empty());  // Q is in registers: the producer may load the next tile's
    float zi = 0.f;
    if (kFused && wtid < D) zi = args.zi[(bh * d.q_blocks + i) * D + wtid];
    if (kLinearOnly) load_htot();
    SLA2_STAMP(kProfTileStart);
    if constexpr (kLinearOnly) {
      for (int n = 0; n < cnt; ++n, pos.Next()) {
        const int st = pos.st;
        MbarWait(bar.full_v(st), pos.ph);
        WgmmaFence();
        IssueG<D>(ga, v_desc(st), phik_desc(st), wg);
        WgmmaCommit();
        WgmmaWait<0>();
        RegFence(ga);
        WarpArrive(bar.empty(st));
      }
    } else if (cnt > 0) {
      float s[8][4], r[2];
      uint32_t p[4][4];
      turns.MyTurn();
      MbarWait(bar.full_k(pos.st), pos.ph);
      IssueQK<D, kKvChunkBytes>(s, qf, k_desc(pos.st));
      int j = meta[pos.st].j;
      turns.PassTurn();
      WgmmaWait<0>();
      RegFence(s);
      SoftmaxStep<1>(s, m, l, scale_log2, {j}, full_blocks, d.seq_len, t, r);  // O = 0: r unused
      detail::AccToAFrags(s, 1.f, p);
      load_htot();  // a block into the tile: the previous tile's store has drained
      SLA2_STAMP(kProfFirstBlock);
      for (int n = 1; n < cnt; ++n) {
        const RingPos<kStages> prev = pos;
        pos.Next();
        turns.MyTurn();
        MbarWait(bar.full_k(pos.st), pos.ph);
        IssueQK<D, kKvChunkBytes>(s, qf, k_desc(pos.st));  // S of block n ...
        j = meta[pos.st].j;
        MbarWait(bar.full_v(prev.st), prev.ph);
        IssuePV<D, kFused>(o, p, v_desc(prev.st), ga, phik_desc(prev.st), wg);  // ... P V of n-1
        turns.PassTurn();
        WgmmaWait<1>();  // S done; P V still running
        RegFence(s);
        SoftmaxStep<1>(s, m, l, scale_log2, {j}, full_blocks, d.seq_len, t, r);
        PinAheadOfWait(base + S::kPinOff + 4 * warp, l);
        WgmmaWait<0>();
        RegFence(o);
        RegFence(p);
        if constexpr (kFused) RegFence(ga);
        WarpArrive(bar.empty(prev.st));
        RescaleIfMoved<D>(o, r);
        detail::AccToAFrags(s, 1.f, p);
      }
      SLA2_STAMP(kProfLoop);
      turns.MyTurn();
      MbarWait(bar.full_v(pos.st), pos.ph);
      IssuePV<D, kFused>(o, p, v_desc(pos.st), ga, phik_desc(pos.st), wg);
      turns.PassTurn();
      WgmmaWait<0>();
      RegFence(o);
      RegFence(p);
      if constexpr (kFused) RegFence(ga);
      WarpArrive(bar.empty(pos.st));
      pos.Next();
      SLA2_STAMP(kProfLastPV);
      SLA2_PROFILE_ADD(kProfBlocks, cnt);
    }

    const float alpha = ti.alpha;
    float f[2];  // alpha / l per row half (the quad sums ahead of the barriers)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float lsum = detail::QuadSum(l[half]);
      f[half] = lsum > 0.f ? alpha / lsum : 0.f;  // no kept block: O_s = 0
    }
    float fl[2] = {0.f, 0.f};  // fused: (1 - alpha) / phi(Q) z_i per row half
    if constexpr (kFused) {
      if (!kLinearOnly && cnt == 0) load_htot();
      // Linear branch: H_i = H_tot + G in place of H_tot's rows in the
      // staging (MN-major chunks, 128-byte swizzle), then O_l numerator =
      // phi(Q) H_i by wgmma into ga.
      uint8_t* const hi_s = smem + S::kOutOff;
      float* const zloc = reinterpret_cast<float*>(smem + S::kZOff) + wg * D;
      SLA2_STAMP(kProfToEpilogue);
      MbarWait(htot_full(D == 128 ? wg : 0), k & 1);
      SLA2_STAMP(kProfHtotWait);
      if (D == 128 || (warp % 4) / 2 == wg) {  // D = 64: both hold all rows, each writes half
        // The rows lie as an output tile's (row = G row - 64 wg), so a warp's
        // 16 x 16 blocks go in and out with one ldmatrix and one stmatrix.
        const OutStage<D> hi_rows{hi_s + (D == 128 ? wg : 0) * OutStage<D>::kBytes};
        auto plus_g = [&](uint32_t h, int nt, int half) {
          const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&h));
          return detail::PackBf16(x.x + ga[nt][2 * half], x.y + ga[nt][2 * half + 1]);
        };
#pragma unroll
        for (int nt = 0; nt < D / 8; nt += 2) {
          uint32_t h0, h1, h2, h3;
          hi_rows.Get16x16(wrow, nt * 8, h0, h1, h2, h3);
          hi_rows.Put16x16(wrow, nt * 8, plus_g(h0, nt, 0), plus_g(h1, nt, 1),
                           plus_g(h2, nt + 1, 0), plus_g(h3, nt + 1, 1));
        }
      }
      if (wtid < D) zloc[wtid] = zi;
      // D = 64: warpgroup 1's staging, written below, has been read by its last store.
      if (wtid == 0) BulkWaitRead();
      FenceProxyAsyncShared();  // H_i is read by wgmma (async proxy)
      SLA2_STAMP(kProfHiUpdate);
      NamedBarrier(5, 256);
      SLA2_STAMP(kProfHiBarrier);
      float den[2];
      PhiQFrags<D>(qf, zloc, t, den);
      SLA2_STAMP(kProfPhiQ);
      WgmmaFence();
      // k-step kk: G rows 16 kk.., in warpgroup kk / 4's staging at D = 128.
      const uint64_t hi_desc = SmemDesc(detail::SmemAddr(hi_s), kKvChunkBytes, 1024);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint64_t bd = DescAdvance(hi_desc, (kk / 4) * OutStage<D>::kBytes + (kk % 4) * 2048);
        if constexpr (D == 128) {
          WgmmaRS_N128(ga, qf[kk], bd, kk > 0);
        } else {
          WgmmaRS_N64<1>(ga, qf[kk], bd, kk > 0);
        }
      }
      WgmmaCommit();
      WgmmaWait<0>();
      RegFence(ga);
      SLA2_STAMP(kProfPhiQH);
      // All blocks kept: no complement, O_l = 0; a non-positive denominator too.
      const bool all_kept = cnt >= d.k_blocks;
#pragma unroll
      for (int half = 0; half < 2; ++half)
        fl[half] = (!all_kept && den[half] > 0.f) ? (1.f - alpha) / den[half] : 0.f;
      NamedBarrier(5, 256);  // both warpgroups have read H_i: the staging area is free
      SLA2_STAMP(kProfHiRead);
    } else {
      OutStageAcquire(wg, wtid);
      SLA2_STAMP(kProfToEpilogue);
    }
    // alpha * O_s / l (+ (1 - alpha) O_l) through the warpgroup's staging tile.
    auto blended = [&](int nt, int half) {
      float x = o[nt][2 * half] * f[half], y = o[nt][2 * half + 1] * f[half];
      if constexpr (kFused) {
        x = fmaf(ga[nt][2 * half], fl[half], x);
        y = fmaf(ga[nt][2 * half + 1], fl[half], y);
      }
      return detail::PackBf16(x, y);
    };
#pragma unroll
    for (int nt = 0; nt < D / 8; nt += 2)
      out_stage.Put16x16(wrow, nt * 8, blended(nt, 0), blended(nt, 1), blended(nt + 1, 0),
                         blended(nt + 1, 1));
    // Unfused with alpha, out holds the linear branch's part: add to it.
    OutStageStore<D>(out_stage, &tmap_out, !kFused && args.alpha != nullptr,
                     i * kBlockQ + wg * 64, d.seq_len, h, b, wg, wtid);
    SLA2_STAMP(kProfStore);
    SLA2_PROFILE_ADD(kProfTiles, 1);
  }
  OutStageDrain(wtid);
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

// 4-D map (channels, tokens, heads, batch) over one of q/k/v; boxes of
// 64 channels x box_rows tokens, 128-byte swizzle, zeros past the end.
bool MakeTensorMap(CUtensorMap* map, const void* base, uint64_t rows, const cuuint64_t (&strides)[3],
                   const Sla2Dims& d, int box_rows) {
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(d.head_dim), rows,
                              static_cast<cuuint64_t>(d.heads), static_cast<cuuint64_t>(d.batch)};
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(box_rows), 1, 1};
  return EncodeTensorMap(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, base, dims, strides, box,
                         CU_TENSOR_MAP_SWIZZLE_128B);
}

template <int D, bool kFused, bool kLinearOnly = false>
cudaError_t Launch(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                   Sla2Workspace::Buffers& w, cudaStream_t s, int sms) {
  CUtensorMap tq, tk, tv, tphik, thtot, tout;
  if (!MakeQkvMap(&tq, p.q, d, kBlockQ) || !MakeQkvMap(&tk, p.k, d, kBlockK) ||
      !MakeQkvMap(&tv, p.v, d, kBlockK) || !MakeQkvMap(&tout, p.out, d, 64))
    return cudaErrorNotSupported;
  if constexpr (kFused) {
    if (!MakePhiKMap(&tphik, w.phik, d) || !MakeHtotMap(&thtot, w.htot16, d))
      return cudaErrorNotSupported;
  } else {
    tphik = thtot = tk;  // not read
  }
  using S = Smem<D, kFused>;
  cudaError_t e = cudaFuncSetAttribute(SparseBf16HopperKernel<D, kFused, kLinearOnly>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, S::kBytes);
  if (e != cudaSuccess) return e;
  HopperArgs a{w.lut,
               w.counts,
               cap,
               p.alpha,
               kFused ? w.zi : nullptr,
               static_cast<__nv_bfloat16*>(p.out),
               d,
               int64_t{d.q_blocks} * d.heads * d.batch,
               !kLinearOnly && !EnvIsZero("SLA2_HOPPER_PINGPONG"),
               !EnvIsZero("SLA2_HOPPER_L2_HINTS")};
  // The low-bit module's linear tiles measured 2-3 % slower on the head-aligned grid.
  const int64_t ctas = kLinearOnly ? PersistentCtas(sms, a.num_tiles)
                                   : HeadAlignedCtas(sms, a.num_tiles, d.q_blocks);
  if constexpr (kFused && !kLinearOnly) {
    // Sla2Forward queues it right after KeptZKernel on the same stream.
    return LaunchProgrammatic(SparseBf16HopperKernel<D, kFused, kLinearOnly>,
                              dim3(static_cast<unsigned>(ctas)), dim3(kThreads), S::kBytes, s, tq,
                              tk, tv, tphik, thtot, tout, a);
  }
  SparseBf16HopperKernel<D, kFused, kLinearOnly>
      <<<static_cast<unsigned>(ctas), kThreads, S::kBytes, s>>>(tq, tk, tv, tphik, thtot, tout, a);
  return cudaGetLastError();
}

}  // namespace


namespace hopper {

namespace {
PFN_cuTensorMapEncodeTiled_v12000 TensorMapEncoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault,
                                         &found) != cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// Unset SLA2_SPARSE_KERNEL: the Hopper kernels where they apply iff this.
constexpr bool kHopperByDefault = true;
}  // namespace

// q/k/v/out layout: element strides of the problem (stride_b may be 0 for
// batch 1; that dimension is never stepped then).
bool MakeQkvMap(CUtensorMap* map, const void* base, const Sla2Dims& d, int box_rows) {
  const cuuint64_t strides[3] = {
      static_cast<cuuint64_t>(d.stride_l) * 2, static_cast<cuuint64_t>(d.stride_h) * 2,
      static_cast<cuuint64_t>(d.batch > 1 ? d.stride_b : d.stride_l) * 2};
  return MakeTensorMap(map, base, static_cast<uint64_t>(d.seq_len), strides, d, box_rows);
}

// phi(K~) written by the linear stage: dense [B, H, T_n * 64, D].
bool MakePhiKMap(CUtensorMap* map, const void* base, const Sla2Dims& d) {
  const uint64_t rows = static_cast<uint64_t>(d.k_blocks) * kBlockK;
  const cuuint64_t row_bytes = static_cast<cuuint64_t>(d.head_dim) * 2;
  const cuuint64_t strides[3] = {row_bytes, rows * row_bytes, rows * row_bytes * d.heads};
  return MakeTensorMap(map, base, rows, strides, d, kBlockK);
}

// H_tot in bf16 from KeptZKernel: [B * H * D rows, D], boxes of 64 x 64.
bool MakeHtotMap(CUtensorMap* map, const void* base, const Sla2Dims& d) {
  const int D = d.head_dim;
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(D),
                              static_cast<cuuint64_t>(d.batch) * d.heads * D};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(D) * 2};
  const cuuint32_t box[2] = {64, 64};
  return EncodeTensorMap(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, dims, strides, box,
                         CU_TENSOR_MAP_SWIZZLE_128B);
}

bool EncodeTensorMap(CUtensorMap* map, CUtensorMapDataType type, int rank, const void* base,
                     const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                     CUtensorMapSwizzle swizzle) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = TensorMapEncoder();
  if (encode == nullptr) return false;
  const cuuint32_t elem_strides[5] = {1, 1, 1, 1, 1};
  return encode(map, type, rank, const_cast<void*>(base), dims, strides, box, elem_strides,
                CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

bool HopperKernelSelected() {
  const char* env = std::getenv("SLA2_SPARSE_KERNEL");
  if (env == nullptr || *env == '\0') return kHopperByDefault;
  return std::strcmp(env, "hopper") == 0;
}

bool EnvIsZero(const char* name) {
  const char* env = std::getenv(name);
  return env != nullptr && std::strcmp(env, "0") == 0;
}

int64_t HeadAlignedCtas(int sms, int64_t tiles, int q_blocks) {
  return PersistentCtas(HeadAlignedGrid(sms, q_blocks), tiles);
}

int64_t PersistentCtas(int sms, int64_t tiles) {
  int64_t ctas = sms;
  if (const char* cap_env = std::getenv("SLA2_HOPPER_MAX_CTAS"); cap_env && std::atoi(cap_env) > 0)
    ctas = std::atoi(cap_env);
  return MinI64(ctas, tiles);
}

int HopperSms() {
  int dev = 0, major = 0, minor = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return major == 9 && minor == 0 ? sms : 0;  // built for sm_90a only
}

}  // namespace hopper

bool ProgrammaticLaunchEnabled() { return !EnvIsZero("SLA2_PDL"); }

bool SparseHopperRequired() {
  const char* env = std::getenv("SLA2_SPARSE_KERNEL");
  return env != nullptr && std::strcmp(env, "hopper") == 0;
}

cudaError_t LaunchSparseBf16Hopper(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                   Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (!HopperKernelSelected()) return cudaErrorNotSupported;
  const int sms = HopperSms();
  if (sms == 0) return cudaErrorNotSupported;
  return d.head_dim == 64 ? Launch<64, false>(p, d, cap, w, s, sms)
                          : Launch<128, false>(p, d, cap, w, s, sms);
}

bool HopperLinearApplies(const Sla2Problem& p) {
  if (p.alpha == nullptr || !HopperKernelSelected() || EnvIsZero("SLA2_FUSED_LINEAR"))
    return false;
  if (HopperSms() == 0) return false;
  // The q/k/v tensor maps must be expressible (same test as the launch).
  const Sla2Dims d = MakeDims(p);
  CUtensorMap probe;
  return MakeQkvMap(&probe, p.q, d, kBlockQ) && MakeQkvMap(&probe, p.k, d, kBlockK) &&
         MakeQkvMap(&probe, p.v, d, kBlockK) && MakeQkvMap(&probe, p.out, d, 64);
}

bool FusedLinearApplies(const Sla2Problem& p) { return !p.low_bit && HopperLinearApplies(p); }

bool LinearTilesHopperApplies(const Sla2Problem& p) {
  return p.low_bit && HopperLinearApplies(p);
}

cudaError_t LaunchLinearTilesHopper(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                    Sla2Workspace::Buffers& w, cudaStream_t s) {
  const int sms = HopperSms();
  if (sms == 0 || w.phik == nullptr) return cudaErrorNotSupported;
  return d.head_dim == 64 ? Launch<64, true, true>(p, d, cap, w, s, sms)
                          : Launch<128, true, true>(p, d, cap, w, s, sms);
}

cudaError_t LaunchSparseBf16HopperFused(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                        Sla2Workspace::Buffers& w, cudaStream_t s) {
  const int sms = HopperSms();
  if (sms == 0 || w.phik == nullptr) return cudaErrorNotSupported;
  return d.head_dim == 64 ? Launch<64, true>(p, d, cap, w, s, sms)
                          : Launch<128, true>(p, d, cap, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
