// Stage kSparse (low-bit) on Hopper (sm_90a) in steps of two kept blocks
// (128 keys): the numerics and machinery of SparseLowBitHopperKernel
// (sla2_sparse_lowbit_hopper.cu: INT8 S exact in int32, fp32 online softmax,
// P^ = fp8_e4m3(448 P), FP8 P^ V^ into a fresh fp32 accumulator added to O on
// the CUDA cores, l over the unquantised P; persistent query-block-fastest
// grid, one TMA producer thread, two ping-pong consumer warpgroups, S of step
// n and P V of step n-1 issued back to back, TMA-stored epilogue), with what
// a 128-key step changes:
//  - the loop is issue-bound on the CUDA cores, and a step's fixed work (the
//    barrier waits and turns, the wgmma descriptors, the row-maximum
//    shuffles and rescale factors, the O += T pass) is paid once per 128
//    keys instead of per 64;
//  - S of a pair is one m64n128 int8 wgmma chain with both operands in
//    shared memory: a stage holds the pair's K blocks adjacent (one K-major
//    operand of 128 rows), and Q stays in shared memory for the whole tile
//    (two Q buffers, released after the tile's epilogue), which leaves the
//    registers for S (64), the fresh accumulator (64), O (64) and P^ (16);
//  - the fresh accumulator spans the pair's 128 keys (four k32 e4m3 steps),
//    the length DeepSeek-V3 promotes FP8 sums to fp32 after;
//  - an odd count pads its first pair with a block whose K and V^T lie just
//    past the buffers, so TMA fills them with zeros without reading memory
//    (index T_n: every key past the sequence, masked, P = 0); that pair's
//    Q K^T and softmax, in the tile's prologue, cover the first block alone.
#include <climits>

#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_hopper_lowbit_steps.cuh"
#include "kernels/cuda/sla2_sparse_hopper.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

// Shared-memory map: two Q buffers (128 rows of D bytes), a ring of stages
// each holding a pair's K8 (2 x 64 rows of D bytes, adjacent) and V^T (2 x
// D rows of 64 bytes), the output staging tiles, two tile slots, each
// stage's two blocks' metadata and the mbarriers.
template <int D>
struct LowBitPairsSmem {
  static constexpr int kQBytes = kBlockQ * D;
  static constexpr int kKBytes = kBlockK * D;  // one block
  static constexpr int kVBytes = D * kBlockK;  // one block
  static constexpr int kStageBytes = 2 * (kKBytes + kVBytes);
  // Four pair stages at D = 128 are what fits beside the two Q buffers and
  // the output staging with room to spare; five measured the same.
  static constexpr int kStages = D == 128 ? 4 : 8;
  static constexpr int kStageOff = 2 * kQBytes;
  static constexpr int kOutOff = kStageOff + kStages * kStageBytes;
  static constexpr int kInfoOff = kOutOff + 2 * OutStage<D>::kBytes;
  static constexpr int kMetaOff = kInfoOff + 2 * static_cast<int>(sizeof(LowBitTileInfo<D>));
  static constexpr int kBarOff = kMetaOff + 2 * kStages * static_cast<int>(sizeof(StageMeta));
  static constexpr int kBarBytes = RingBarriers<kStages, 2>::kBytes;
  static constexpr int kBytes = kBarOff + kBarBytes + 1024;  // + alignment slack
  static_assert(kQBytes % 1024 == 0 && kKBytes % 1024 == 0 && kStageBytes % 1024 == 0,
                "swizzle atoms stay aligned");
  static_assert(kOutOff % 1024 == 0, "the output boxes use the 128-byte swizzle");
  static_assert(kInfoOff % 16 == 0 && sizeof(LowBitTileInfo<D>) % 16 == 0, "bulk copy alignment");
  static_assert(kBarOff % 8 == 0, "mbarrier alignment");
  static_assert(kBytes <= 227 * 1024, "shared memory per CTA");
};

// S[64 x 64 NB] = Q8_wg K8^T over NB = 2 (a pair) or 1 (its first block)
// blocks in int32, both operands K-major in shared memory, issued
// asynchronously.
template <int D, int NB>
__device__ __forceinline__ void IssueQK8(int (&s)[8 * NB][4], uint64_t q_desc, uint64_t k_desc) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < D / 32; ++kk) {
    if constexpr (NB == 2) {
      WgmmaS8SS_N128(s, DescAdvance(q_desc, kk * 32), DescAdvance(k_desc, kk * 32), kk > 0);
    } else {
      WgmmaS8SS_N64(s, DescAdvance(q_desc, kk * 32), DescAdvance(k_desc, kk * 32), kk > 0);
    }
  }
  WgmmaCommit();
}

// Where an odd count's padding goes: into the tile's first pair, whose
// Q K^T and softmax (in the tile's prologue, which retires its wgmma before
// the loop) then cover the first block alone; false: after the last block,
// a whole pair's work. (The bf16 pair kernel needs false at D = 64, where
// the extra wgmma shape made ptxas serialise its wgmmas; this one compiles
// clean at both head sizes, cuda_wgmma_pipelines checks it.)
template <int D>
constexpr bool kLowBitOddFirst = true;

template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    SparseLowBitHopperPairsKernel(const __grid_constant__ CUtensorMap tmap_q,
                                  const __grid_constant__ CUtensorMap tmap_k,
                                  const __grid_constant__ CUtensorMap tmap_v,
                                  const __grid_constant__ CUtensorMap tmap_out,
                                  LowBitHopperArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = LowBitPairsSmem<D>;
  constexpr int kStages = S::kStages;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  uint8_t* const smem = smem_raw + (base - raw);
  auto q_buf = [&](int qb) { return base + qb * S::kQBytes; };
  auto k_tile = [&](int st) { return base + S::kStageOff + st * S::kStageBytes; };
  auto v_tile = [&](int st) { return k_tile(st) + 2 * S::kKBytes; };
  LowBitTileInfo<D>* const info = reinterpret_cast<LowBitTileInfo<D>*>(smem + S::kInfoOff);
  StageMeta* const meta = reinterpret_cast<StageMeta*>(smem + S::kMetaOff);  // 2 per stage
  const RingBarriers<kStages, 2> bar{base + S::kBarOff};
  const Sla2Dims& d = args.d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  bar.Init();
  const float score_log2 = 1.4426950408889634f * rsqrtf(static_cast<float>(D));

  if (warp >= kProducerWarp) {
    SetMaxRegs<kProducerRegs, false>();
    if (warp != kProducerWarp || lane != 0) return;
    // Rows just past the K8 and V^T buffers: an all-zero box, no memory read.
    const int64_t bh_all = int64_t{d.batch} * d.heads;
    const int k_past = static_cast<int>(bh_all * d.k_blocks * kBlockK);
    const int v_past = static_cast<int>(bh_all * d.k_blocks * D);
    RingPos<kStages> pos;  // pairs loaded so far, over all tiles of this CTA
    int k = 0;             // tiles so far
    for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
      const HopperTile ht = DecodeTile(tile, d, args.counts, args.lut, args.lut_capacity);
      const auto [i, h, b, cnt, lut_row] = ht;
      const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
      const float* kscale = args.kscale + bh * d.k_blocks;
      const float qscale = args.qscale[bh * d.q_blocks + i] * score_log2;
      const int qb = k & 1;
      // Q buffer and slot qb were tile k-2's until its epilogue.
      if (k >= 2) MbarWait(bar.q_empty(qb), ((k >> 1) - 1) & 1);
      LowBitTileInfo<D>* const slot = info + qb;
      WriteTileInfo(&slot->t, ht, args.alpha, d.q_blocks, qscale);
      MbarArriveExpectTx(bar.q_full(qb), S::kQBytes + D * 4);
      TmaLoad2d(q_buf(qb), &tmap_q, bar.q_full(qb), 0,
                static_cast<int>((bh * d.q_blocks + i) * kBlockQ));
      BulkLoad(detail::SmemAddr(slot->sv), args.vscale + bh * D, D * 4, bar.q_full(qb));
      const int odd_first = kLowBitOddFirst<D> ? (cnt & 1) : 0;
      for (int n = -odd_first; n < cnt; n += 2, pos.Next()) {
        const int st = pos.st;
        // (block 0, padding) first when odd_first, else (last block, padding).
        const bool pad = n < 0 || n + 1 == cnt;
        const int ja = lut_row[n < 0 ? 0 : n], jb = pad ? d.k_blocks : lut_row[n + 1];
        const float ksa = kscale[ja], ksb = pad ? 1.f : kscale[jb];
        MbarWait(bar.empty(st), pos.ph ^ 1);
        meta[2 * st] = StageMeta{ja, ksa};  // read by the consumers once full-K completes
        meta[2 * st + 1] = StageMeta{jb, ksb};
        const int64_t ra = bh * d.k_blocks + ja, rb = bh * d.k_blocks + jb;
        MbarArriveExpectTx(bar.full_k(st), 2 * S::kKBytes);
        TmaLoad2d(k_tile(st), &tmap_k, bar.full_k(st), 0, static_cast<int>(ra * kBlockK));
        TmaLoad2d(k_tile(st) + S::kKBytes, &tmap_k, bar.full_k(st), 0,
                  pad ? k_past : static_cast<int>(rb * kBlockK));
        MbarArriveExpectTx(bar.full_v(st), 2 * S::kVBytes);
        TmaLoad2d(v_tile(st), &tmap_v, bar.full_v(st), 0, static_cast<int>(ra * D));
        TmaLoad2d(v_tile(st) + S::kVBytes, &tmap_v, bar.full_v(st), 0,
                  pad ? v_past : static_cast<int>(rb * D));
      }
    }
    return;
  }

  // Consumer warpgroups.
  SetMaxRegs<kConsumerRegs, true>();
  const int wg = warp / 4;
  const int t = lane & 3;
  const int wrow = (warp % 4) * 16;
  const int wtid = threadIdx.x % 128;
  const OutStage<D> out_stage{smem + S::kOutOff + wg * OutStage<D>::kBytes};
  const PingPong turns{args.pingpong, wg};
  turns.Start();
  const int full_blocks = d.FullKeyBlocks();
  // This warpgroup's 64 rows of Q buffer 0, and stage 0's K pair and V^T;
  // the other buffers and stages are offsets.
  const uint64_t q_desc0 = SmemDesc(q_buf(0) + wg * 64 * D, 16, 8 * D, D);
  const uint64_t k_desc0 = SmemDesc(k_tile(0), 16, 8 * D, D);
  const uint64_t v_desc0 = SmemDesc(v_tile(0), 16, 8 * kBlockK, kBlockK);
  auto k_desc = [&](int st) { return DescStep<S::kStageBytes>(k_desc0, st); };
  auto v_desc = [&](int st) { return DescStep<S::kStageBytes>(v_desc0, st); };
  RingPos<kStages> pos;  // pairs consumed so far, over all tiles of this CTA
  int k = 0;
  for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
    const int qb = k & 1;
    MbarWait(bar.q_full(qb), (k >> 1) & 1);
    const LowBitTileInfo<D>* const slot = info + qb;
    const TileInfo ti = slot->t;
    const int cnt = ti.cnt;

    float o[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    if (cnt > 0) {
      const uint64_t q_desc = DescStep<S::kQBytes>(q_desc0, qb);
      const int pairs = (cnt + 1) / 2;
      int s[16][4];
      float r[2], ta[D / 8][4];
      uint32_t p[4][4];
      float f[2];
      int j[2];
      auto read_meta = [&](int st) {
        const StageMeta a = meta[2 * st], b = meta[2 * st + 1];
        f[0] = ti.qscale * a.kscale;
        f[1] = ti.qscale * b.kscale;
        j[0] = a.j;
        j[1] = b.j;
      };
      turns.MyTurn();
      MbarWait(bar.full_k(pos.st), pos.ph);
      if (kLowBitOddFirst<D> && (cnt & 1)) {
        // (block 0, padding): S of block 0 alone, P = 0 over the padding.
        int(&s_lo)[8][4] = *reinterpret_cast<int(*)[8][4]>(&s[0]);
        IssueQK8<D, 1>(s_lo, q_desc, k_desc(pos.st));
        turns.PassTurn();
        read_meta(pos.st);
        WgmmaWait<0>();
        RegFence(s_lo);
        SoftmaxStep8<1>(s_lo, m, l, {f[0]}, {j[0]}, full_blocks, d.seq_len, t, r);  // r unused
#pragma unroll
        for (int nt = 8; nt < 16; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0;
      } else {
        IssueQK8<D, 2>(s, q_desc, k_desc(pos.st));
        turns.PassTurn();
        read_meta(pos.st);
        WgmmaWait<0>();
        RegFence(s);
        SoftmaxStep8<2>(s, m, l, f, j, full_blocks, d.seq_len, t, r);  // r = 0: O is 0
      }
      PackP8<2>(s, p);
      for (int n = 1; n < pairs; ++n) {
        const RingPos<kStages> prev = pos;
        pos.Next();
        turns.MyTurn();
        MbarWait(bar.full_k(pos.st), pos.ph);
        IssueQK8<D, 2>(s, q_desc, k_desc(pos.st));  // S of pair n ...
        read_meta(pos.st);
        MbarWait(bar.full_v(prev.st), prev.ph);
        IssuePV8<D, 2>(ta, p, v_desc(prev.st));  // ... P V of pair n-1
        turns.PassTurn();
        const float r_prev[2] = {r[0], r[1]};  // pair n-1's maxima over n-2's
        WgmmaWait<1>();
        RegFence(s);
        SoftmaxStep8<2>(s, m, l, f, j, full_blocks, d.seq_len, t, r);
        WgmmaWait<0>();
        RegFence(ta);
        RegFence(p);
        WarpArrive(bar.empty(prev.st));
        // O (pairs < n-1, at pair n-2's maxima) moves to pair n-1's and
        // takes P^V^ of pair n-1: one FFMA per element per 128 keys.
        AccumulateBlock<D>(o, r_prev, ta);
        PackP8<2>(s, p);
      }
      turns.MyTurn();
      MbarWait(bar.full_v(pos.st), pos.ph);
      IssuePV8<D, 2>(ta, p, v_desc(pos.st));
      turns.PassTurn();
      WgmmaWait<0>();
      RegFence(ta);
      RegFence(p);
      WarpArrive(bar.empty(pos.st));
      AccumulateBlock<D>(o, r, ta);
      pos.Next();
    }
    // With alpha, out holds (1 - alpha) O_l from the linear stage: add to it.
    LowBitEpilogue<D>(o, l, slot, args.alpha != nullptr, out_stage, &tmap_out, d.seq_len, wg, wrow,
                      wtid, t);
    WarpArrive(bar.q_empty(qb));  // the tile's Q K^T and slot reads are done
  }
  OutStageDrain(wtid);
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

}  // namespace

cudaError_t LaunchSparseLowBitHopperPairs(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                          Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (!HopperKernelSelected()) return cudaErrorNotSupported;
  const int sms = HopperSms();
  if (sms == 0) return cudaErrorNotSupported;
  return d.head_dim == 64
             ? LaunchLowBitKernel(SparseLowBitHopperPairsKernel<64>, LowBitPairsSmem<64>::kBytes, p,
                                  d, cap, w, s, sms)
             : LaunchLowBitKernel(SparseLowBitHopperPairsKernel<128>, LowBitPairsSmem<128>::kBytes,
                                  p, d, cap, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
