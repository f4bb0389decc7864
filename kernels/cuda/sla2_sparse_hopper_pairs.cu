// Stage kSparse (bf16, linear branch not fused) on Hopper (sm_90a) in steps
// of two kept blocks (128 keys), the step FlashAttention-3 takes: the same
// contract and machinery as SparseBf16HopperKernel (sla2_sparse_hopper.cu:
// persistent query-block-fastest grid, one TMA producer thread, two consumer
// warpgroups of 64 query rows, S of step n and P V of step n-1 issued back to
// back, ping-pong, tile metadata from the producer, TMA-stored epilogue),
// with what a 128-key step needs:
//  - S of a pair is one m64n128 wgmma chain: the K ring is laid out chunk by
//    chunk with slots 2p and 2p+1 adjacent, so a pair's 128 key rows are one
//    K-major operand;
//  - separate K and V rings with their own barriers: a pair's K slots are
//    released as soon as its Q K^T is done, its V slots after its P V, so the
//    producer is never held by a step that only needs V any more;
//  - one row maximum, one rescale decision and one pair of barrier waits per
//    128 keys instead of per 64;
//  - an odd count pads one pair with block index T_n, whose rows lie past
//    the sequence, so TMA fills its K and V tiles with zeros (no memory is
//    read) and P is 0 there: nothing stale reaches O, and the loop issues the
//    same wgmmas every step. At D = 128 the padding goes with the first
//    block, whose Q K^T (in the tile's prologue, which retires its wgmma
//    before the loop) then covers that block alone.
#include <cuda.h>
#include <cudaTypedefs.h>

#include "kernels/cuda/sla2_hopper_bf16_steps.cuh"
#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_sparse_hopper.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

struct PairsArgs {
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // null: alpha = 1 and out holds no linear part
  Sla2Dims d;
  int64_t num_tiles;
  bool pingpong;
  bool l2_hints;
};

// Shared-memory map: Q, the K ring (chunk-major: chunk c of slot s at
// kKOff + c * kKChunkStride + s * kChunkBytes), the V ring (slot-major, as
// a V tile), the output staging, two tile slots, each K slot's block index,
// and the barriers.
template <int D>
struct PairsSmem {
  static constexpr int kChunks = D / 64;
  static constexpr int kChunkBytes = kBlockK * 128;  // 64 rows x 64 channels
  static constexpr int kBlockBytes = kChunks * kChunkBytes;
  static constexpr int kQBytes = kChunks * kBlockQ * 128;
  // Two pairs in each ring: a step holds one pair of K (until its Q K^T is
  // done) and one of V, and the producer fills the other. Three K pairs were
  // slower, three V pairs the same (h100-v23-ab-pairs-rings.log); a third
  // pair of both does not fit beside Q and the output staging.
  static constexpr int kKPairs = 2;
  static constexpr int kVPairs = 2;
  static constexpr int kKSlots = 2 * kKPairs;
  static constexpr int kVSlots = 2 * kVPairs;
  static constexpr int kKOff = kQBytes;
  static constexpr int kKChunkStride = kKSlots * kChunkBytes;
  static constexpr int kVOff = kKOff + kKSlots * kBlockBytes;
  static constexpr int kOutOff = kVOff + kVSlots * kBlockBytes;
  static constexpr int kInfoOff = kOutOff + 2 * OutStage<D>::kBytes;
  static constexpr int kMetaOff = kInfoOff + 2 * static_cast<int>(sizeof(TileInfo));
  static constexpr int kBarOff = kMetaOff + kKSlots * static_cast<int>(sizeof(StageMeta));
  // full/empty per K pair and per V pair, then Q full/empty.
  static constexpr int kBarBytes = (2 * kKPairs + 2 * kVPairs + 2) * 8;
  static constexpr int kBytes = kBarOff + kBarBytes + 1024;  // + alignment slack
  static_assert(kOutOff % 1024 == 0 && kBarOff % 8 == 0, "alignment");
  static_assert(kBytes <= 227 * 1024, "shared memory per CTA");
};

// Where an odd count's padding goes: with the first block (D = 128; its
// step's Q K^T then skips the padding), or with the last (D = 64, where the
// extra m64n64 step made ptxas serialise the kernel's wgmma: C7511).
template <int D>
constexpr bool kOddFirst = D == 128;

template <class S>
struct PairBarriers {
  uint32_t base;
  __device__ uint32_t full_k(int p) const { return base + p * 8; }
  __device__ uint32_t empty_k(int p) const { return base + (S::kKPairs + p) * 8; }
  __device__ uint32_t full_v(int p) const { return base + (2 * S::kKPairs + p) * 8; }
  __device__ uint32_t empty_v(int p) const {
    return base + (2 * S::kKPairs + S::kVPairs + p) * 8;
  }
  __device__ uint32_t q_full() const { return base + (2 * S::kKPairs + 2 * S::kVPairs) * 8; }
  __device__ uint32_t q_empty() const { return q_full() + 8; }
  __device__ void Init() const {
    if (threadIdx.x == 0) {
      for (int p = 0; p < S::kKPairs; ++p) {
        MbarInit(full_k(p), 1);
        MbarInit(empty_k(p), kConsumerWarps);
      }
      for (int p = 0; p < S::kVPairs; ++p) {
        MbarInit(full_v(p), 1);
        MbarInit(empty_v(p), kConsumerWarps);
      }
      MbarInit(q_full(), 1);
      MbarInit(q_empty(), kConsumerWarps);
      FenceBarrierInit();
    }
    __syncthreads();
  }
};

// O[64 x D] += P[64 x 128] V_pair[128 x D] (v_pair: MN-major descriptor of
// the first block's V tile, the second follows it), one commit group.
template <int D>
__device__ __forceinline__ void IssuePVPair(float (&o)[D / 8][4], const uint32_t (&p)[8][4],
                                            uint64_t v_pair) {
  constexpr int kBlockBytes = D / 64 * kBlockK * 128;
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    const uint64_t b = DescAdvance(v_pair, (kk / 4) * kBlockBytes + (kk % 4) * 16 * 128);
    if constexpr (D == 128) {
      WgmmaRS_N128(o, p[kk], b);
    } else {
      WgmmaRS_N64<1>(o, p[kk], b, 1);
    }
  }
  WgmmaCommit();
}

template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    SparseBf16HopperPairsKernel(const __grid_constant__ CUtensorMap tmap_q,
                                const __grid_constant__ CUtensorMap tmap_k,
                                const __grid_constant__ CUtensorMap tmap_v,
                                const __grid_constant__ CUtensorMap tmap_out, PairsArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = PairsSmem<D>;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // 128-byte swizzle atoms are 1 KB
  uint8_t* const smem = smem_raw + (base - raw);
  const uint32_t q_s = base;
  auto k_slot = [&](int slot) { return base + S::kKOff + slot * S::kChunkBytes; };
  auto v_slot = [&](int slot) { return base + S::kVOff + slot * S::kBlockBytes; };
  TileInfo* const info = reinterpret_cast<TileInfo*>(smem + S::kInfoOff);
  StageMeta* const meta = reinterpret_cast<StageMeta*>(smem + S::kMetaOff);
  const PairBarriers<S> bar{base + S::kBarOff};
  const Sla2Dims& d = args.d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  bar.Init();

  if (warp >= kProducerWarp) {
    SetMaxRegs<kProducerRegs, false>();
    if (warp != kProducerWarp || lane != 0) return;
    const uint64_t keep = L2EvictLast(), once = L2EvictFirst();
    auto load = [&](uint32_t dst, const CUtensorMap* map, uint32_t full, int c0, int row, int h,
                    int b, uint64_t policy) {
      TmaLoad4dPolicy(args.l2_hints, dst, map, full, c0, row, h, b, policy);
    };
    RingPos<S::kKPairs> kpos;  // pairs loaded so far, over all tiles of this CTA
    RingPos<S::kVPairs> vpos;
    int k = 0;  // tiles so far
    for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
      const HopperTile ht = DecodeTile(tile, d, args.counts, args.lut, args.lut_capacity);
      const auto [i, h, b, cnt, lut_row] = ht;
      if (k > 0) MbarWait(bar.q_empty(), (k - 1) & 1);  // consumers hold the previous tile's Q
      WriteTileInfo(info + (k & 1), ht, args.alpha, d.q_blocks, 0.f);
      MbarArriveExpectTx(bar.q_full(), S::kQBytes);
#pragma unroll
      for (int c = 0; c < S::kChunks; ++c)
        load(q_s + c * kBlockQ * 128, &tmap_q, bar.q_full(), c * 64, i * kBlockQ, h, b, once);
      for (int pp = 0; pp < (cnt + 1) / 2; ++pp, kpos.Next(), vpos.Next()) {
        // An odd count's padding, block T_n (rows past the sequence), goes
        // after block 0 (kOddFirst) or after the last block.
        const int first = 2 * pp - (kOddFirst<D> ? (cnt & 1) : 0);
        const int j[2] = {lut_row[first < 0 ? 0 : first],
                          first < 0 || first + 1 >= cnt ? d.k_blocks : lut_row[first + 1]};
        const int kp = kpos.st;
        MbarWait(bar.empty_k(kp), kpos.ph ^ 1);
        meta[2 * kp].j = j[0];  // read by the consumers once full_k completes
        meta[2 * kp + 1].j = j[1];
        MbarArriveExpectTx(bar.full_k(kp), 2 * S::kBlockBytes);
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
          for (int c = 0; c < S::kChunks; ++c)
            load(k_slot(2 * kp + e) + c * S::kKChunkStride, &tmap_k, bar.full_k(kp), c * 64,
                 j[e] * kBlockK, h, b, keep);
        const int vp = vpos.st;
        MbarWait(bar.empty_v(vp), vpos.ph ^ 1);
        MbarArriveExpectTx(bar.full_v(vp), 2 * S::kBlockBytes);
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
          for (int c = 0; c < S::kChunks; ++c)
            load(v_slot(2 * vp + e) + c * S::kChunkBytes, &tmap_v, bar.full_v(vp), c * 64,
                 j[e] * kBlockK, h, b, keep);
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
  const float scale_log2 = 1.4426950408889634f * rsqrtf(static_cast<float>(D));
  const PingPong turns{args.pingpong, wg};
  turns.Start();
  const int full_blocks = d.FullKeyBlocks();
  // Descriptors of the first K pair and V pair; the others are offsets.
  const uint64_t k_desc0 = SmemDesc(k_slot(0), 16, 1024);
  const uint64_t v_desc0 = SmemDesc(v_slot(0), S::kChunkBytes, 1024);
  auto k_desc = [&](int kp) { return DescStep<2 * S::kChunkBytes>(k_desc0, kp); };
  auto v_desc = [&](int vp) { return DescStep<2 * S::kBlockBytes>(v_desc0, vp); };
  RingPos<S::kKPairs> kpos;  // pairs consumed so far, over all tiles of this CTA
  RingPos<S::kVPairs> vpos;
  int k = 0;
  for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
    MbarWait(bar.q_full(), k & 1);
    const TileInfo ti = info[k & 1];
    const int i = ti.i, h = ti.h, b = ti.b, cnt = ti.cnt;

    float o[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    uint32_t qf[D / 16][4];
    if (cnt > 0) LoadQFrags<D>(q_s, wg * 64 + wrow, qf);
    WarpArrive(bar.q_empty());  // Q is in registers: the producer may load the next tile's
    if (cnt > 0) {
      const int pairs = (cnt + 1) / 2;
      float s[16][4], r[2];
      uint32_t p[8][4];
      int kp = kpos.st;
      turns.MyTurn();
      MbarWait(bar.full_k(kp), kpos.ph);
      int j[2];
      if (kOddFirst<D> && (cnt & 1)) {
        // (block, padding): S of the block alone, P = 0 over the padding.
        float(&s_lo)[8][4] = *reinterpret_cast<float(*)[8][4]>(&s[0]);
        IssueQK<D, S::kKChunkStride>(s_lo, qf, k_desc(kp));
        j[0] = meta[2 * kp].j;
        turns.PassTurn();
        WgmmaWait<0>();
        RegFence(s_lo);
        WarpArrive(bar.empty_k(kp));
        SoftmaxStep<1>(s_lo, m, l, scale_log2, {j[0]}, full_blocks, d.seq_len, t, r);  // r unused
#pragma unroll
        for (int nt = 8; nt < 16; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      } else {
        IssueQK<D, S::kKChunkStride>(s, qf, k_desc(kp));
        j[0] = meta[2 * kp].j;
        j[1] = meta[2 * kp + 1].j;
        turns.PassTurn();
        WgmmaWait<0>();
        RegFence(s);
        WarpArrive(bar.empty_k(kp));
        SoftmaxStep<2>(s, m, l, scale_log2, j, full_blocks, d.seq_len, t, r);  // O = 0: r unused
      }
      kpos.Next();
      detail::AccToAFrags(s, 1.f, p);
      for (int n = 1; n < pairs; ++n, kpos.Next(), vpos.Next()) {
        // kpos: pair n's K; vpos: pair n-1's V.
        kp = kpos.st;
        turns.MyTurn();
        MbarWait(bar.full_k(kp), kpos.ph);
        IssueQK<D, S::kKChunkStride>(s, qf, k_desc(kp));  // S of pair n ...
        j[0] = meta[2 * kp].j;
        j[1] = meta[2 * kp + 1].j;
        MbarWait(bar.full_v(vpos.st), vpos.ph);
        IssuePVPair<D>(o, p, v_desc(vpos.st));  // ... P V of pair n-1
        turns.PassTurn();
        WgmmaWait<1>();  // S done; P V still running
        RegFence(s);
        WarpArrive(bar.empty_k(kp));
        SoftmaxStep<2>(s, m, l, scale_log2, j, full_blocks, d.seq_len, t, r);
        // No PinAheadOfWait here: ptxas sinks this step below the wait, and
        // pinning it measured 1.5 % slower (the fused kernel gains 2 %).
        WgmmaWait<0>();
        RegFence(o);
        RegFence(p);
        WarpArrive(bar.empty_v(vpos.st));
        RescaleIfMoved<D>(o, r);
        detail::AccToAFrags(s, 1.f, p);
      }
      turns.MyTurn();
      MbarWait(bar.full_v(vpos.st), vpos.ph);
      IssuePVPair<D>(o, p, v_desc(vpos.st));
      turns.PassTurn();
      WgmmaWait<0>();
      RegFence(o);
      RegFence(p);
      WarpArrive(bar.empty_v(vpos.st));
      vpos.Next();
    }

    float f[2];  // alpha / l per row half
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float lsum = detail::QuadSum(l[half]);
      f[half] = lsum > 0.f ? ti.alpha / lsum : 0.f;  // no kept block: O_s = 0
    }
    OutStageAcquire(wg, wtid);
    auto scaled = [&](int nt, int half) {
      return detail::PackBf16(o[nt][2 * half] * f[half], o[nt][2 * half + 1] * f[half]);
    };
#pragma unroll
    for (int nt = 0; nt < D / 8; nt += 2)
      out_stage.Put16x16(wrow, nt * 8, scaled(nt, 0), scaled(nt, 1), scaled(nt + 1, 0),
                         scaled(nt + 1, 1));
    // With alpha, out holds the linear branch's part: add to it.
    OutStageStore<D>(out_stage, &tmap_out, args.alpha != nullptr, i * kBlockQ + wg * 64,
                     d.seq_len, h, b, wg, wtid);
  }
  OutStageDrain(wtid);
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

template <int D>
cudaError_t LaunchPairs(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                        Sla2Workspace::Buffers& w, cudaStream_t s, int sms) {
  CUtensorMap tq, tk, tv, tout;
  if (!MakeQkvMap(&tq, p.q, d, kBlockQ) || !MakeQkvMap(&tk, p.k, d, kBlockK) ||
      !MakeQkvMap(&tv, p.v, d, kBlockK) || !MakeQkvMap(&tout, p.out, d, 64))
    return cudaErrorNotSupported;
  using S = PairsSmem<D>;
  cudaError_t e = cudaFuncSetAttribute(SparseBf16HopperPairsKernel<D>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, S::kBytes);
  if (e != cudaSuccess) return e;
  PairsArgs a{w.lut,
              w.counts,
              cap,
              p.alpha,
              d,
              int64_t{d.q_blocks} * d.heads * d.batch,
              !EnvIsZero("SLA2_HOPPER_PINGPONG"),
              !EnvIsZero("SLA2_HOPPER_L2_HINTS")};
  const int64_t ctas = HeadAlignedCtas(sms, a.num_tiles, d.q_blocks);
  SparseBf16HopperPairsKernel<D>
      <<<static_cast<unsigned>(ctas), kThreads, S::kBytes, s>>>(tq, tk, tv, tout, a);
  return cudaGetLastError();
}

}  // namespace

bool HopperPairsSelected() { return !hopper::EnvIsZero("SLA2_HOPPER_PAIRS"); }

cudaError_t LaunchSparseBf16HopperPairs(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                        Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (!hopper::HopperKernelSelected()) return cudaErrorNotSupported;
  const int sms = hopper::HopperSms();
  if (sms == 0) return cudaErrorNotSupported;
  return d.head_dim == 64 ? LaunchPairs<64>(p, d, cap, w, s, sms)
                          : LaunchPairs<128>(p, d, cap, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
