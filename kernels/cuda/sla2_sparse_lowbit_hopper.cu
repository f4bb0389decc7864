// Stage kSparse (low-bit) on Hopper (sm_90a): the numerics of
// sla2_sparse_lowbit.cu (conventions.md "Low-bit": INT8 Q K~^T with
// per-block scales, exact in int32; fp32 online softmax; P^ = fp8_e4m3(448 P);
// FP8 P^ V^ of each key block into a fresh fp32 accumulator that is added to
// O on the CUDA cores; the row sum l over the unquantised P) on the
// machinery of the bf16 Hopper kernel (sla2_sparse_hopper.cu): a persistent
// grid in query-block-fastest order, one TMA producer warp running a ring
// of K/V stages ahead across tiles, two consumer warpgroups of 64 query rows
// that issue S of block n and P V of block n-1 back to back and take turns
// (ping-pong), tile metadata (with the q / k scales and the head's V scales)
// from the producer through shared memory, and the TMA-stored epilogue.
// Operands come from kQuantize (sla2_quantize.cu): q8 / k8 rows of D bytes
// (K-major for S = Q K^T) and V^T per key block, [D][64] bytes with the keys
// of each 32-key chunk in Fp8KeyOfPosition order, K-major for P V. That order
// makes the S accumulator registers P's wgmma A fragments as they are.
// Per score the softmax spends an IADD (int32 -> float exactly through the
// 1.5 * 2^23 magic number), one FFMA (scales, row max and the log2(448)
// offset of P^ folded in), one EX2, one FADD for l and half a CVT to e4m3;
// the row max is taken on the integers (the scale is positive).
#include <climits>

#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_hopper_lowbit_steps.cuh"
#include "kernels/cuda/sla2_sparse_hopper.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

// Shared-memory map: Q (128 rows of D bytes), a ring of stages each holding
// one kept block's K (64 rows of D bytes) and V^T (D rows of 64 bytes), the
// output staging tiles, two tile slots, the stages' metadata and the
// mbarriers. Rows of 128 bytes use the 128-byte
// swizzle (1 KB atoms), rows of 64 bytes the 64-byte one (512-byte atoms).
template <int D>
struct LowBitSmem {
  static constexpr int kQBytes = kBlockQ * D;
  static constexpr int kKBytes = kBlockK * D;
  static constexpr int kVBytes = D * kBlockK;
  static constexpr int kStageBytes = kKBytes + kVBytes;
  static constexpr int kStages = 8;
  static constexpr int kStageOff = kQBytes;
  static constexpr int kOutOff = kStageOff + kStages * kStageBytes;
  static constexpr int kInfoOff = kOutOff + 2 * OutStage<D>::kBytes;
  static constexpr int kMetaOff = kInfoOff + 2 * static_cast<int>(sizeof(LowBitTileInfo<D>));
  static constexpr int kBarOff = kMetaOff + kStages * static_cast<int>(sizeof(StageMeta));
  static constexpr int kBarBytes = RingBarriers<kStages>::kBytes;
  static constexpr int kBytes = kBarOff + kBarBytes + 1024;  // + alignment slack
  static_assert(kStageOff % 1024 == 0 && kKBytes % 1024 == 0 && kStageBytes % 1024 == 0,
                "swizzle atoms stay aligned");
  static_assert(kOutOff % 1024 == 0, "the output boxes use the 128-byte swizzle");
  static_assert(kInfoOff % 16 == 0 && sizeof(LowBitTileInfo<D>) % 16 == 0, "bulk copy alignment");
  static_assert(kBarOff % 8 == 0, "mbarrier alignment");
  static_assert(kBytes <= 227 * 1024, "shared memory per CTA");
};

// The warp's 16 rows of int8 Q (from tile row `row0`) as wgmma A fragments,
// one per 32-channel k-step: ldmatrix moves 16-byte rows, which for 8-bit
// data is exactly the m16n8k32 A layout (4 consecutive k per register).
template <int D>
__device__ __forceinline__ void LoadQ8Frags(uint32_t q_s, int row0, uint32_t (&qf)[D / 32][4]) {
  const int l = threadIdx.x & 31;
  const int row = row0 + (l & 7) + ((l >> 3) & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 32; ++kk)
    detail::LdMatrixX4(q_s + detail::SwizzledOffset<D>(row, kk * 2 + (l >> 4)), qf[kk][0],
                       qf[kk][1], qf[kk][2], qf[kk][3]);
}

// S[64 x 64] = Q8_wg K8^T in int32, issued asynchronously (k_desc: the K
// tile, SmemDesc(tile, 16, 8 * D, D)).
template <int D>
__device__ __forceinline__ void IssueQK8(int (&s)[8][4], const uint32_t (&qf)[D / 32][4],
                                         uint64_t k_desc) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < D / 32; ++kk)
    WgmmaS8RS_N64(s, qf[kk], DescAdvance(k_desc, kk * 32), kk > 0);
  WgmmaCommit();
}

template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    SparseLowBitHopperKernel(const __grid_constant__ CUtensorMap tmap_q,
                             const __grid_constant__ CUtensorMap tmap_k,
                             const __grid_constant__ CUtensorMap tmap_v,
                             const __grid_constant__ CUtensorMap tmap_out, LowBitHopperArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = LowBitSmem<D>;
  constexpr int kStages = S::kStages;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;
  uint8_t* const smem = smem_raw + (base - raw);
  const uint32_t q_s = base;
  auto k_tile = [&](int st) { return base + S::kStageOff + st * S::kStageBytes; };
  auto v_tile = [&](int st) { return k_tile(st) + S::kKBytes; };
  LowBitTileInfo<D>* const info = reinterpret_cast<LowBitTileInfo<D>*>(smem + S::kInfoOff);
  StageMeta* const meta = reinterpret_cast<StageMeta*>(smem + S::kMetaOff);
  const RingBarriers<kStages> bar{base + S::kBarOff};
  const Sla2Dims& d = args.d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  bar.Init();
  const float score_log2 = 1.4426950408889634f * rsqrtf(static_cast<float>(D));

  if (warp >= kProducerWarp) {
    SetMaxRegs<kProducerRegs, false>();
    if (warp != kProducerWarp || lane != 0) return;
    RingPos<kStages> pos;  // K/V blocks loaded so far, over all tiles of this CTA
    int k = 0;             // tiles so far
    for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
      const HopperTile ht = DecodeTile(tile, d, args.counts, args.lut, args.lut_capacity);
      const auto [i, h, b, cnt, lut_row] = ht;
      const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
      const float* kscale = args.kscale + bh * d.k_blocks;
      const float qscale = args.qscale[bh * d.q_blocks + i] * score_log2;
      if (k > 0) MbarWait(bar.q_empty(), (k - 1) & 1);  // consumers hold the previous Q in registers
      LowBitTileInfo<D>* const slot = info + (k & 1);
      WriteTileInfo(&slot->t, ht, args.alpha, d.q_blocks, qscale);
      MbarArriveExpectTx(bar.q_full(), S::kQBytes + D * 4);
      TmaLoad2d(q_s, &tmap_q, bar.q_full(), 0, static_cast<int>((bh * d.q_blocks + i) * kBlockQ));
      BulkLoad(detail::SmemAddr(slot->sv), args.vscale + bh * D, D * 4, bar.q_full());
      for (int n = 0; n < cnt; ++n, pos.Next()) {
        const int st = pos.st;
        const int jn = lut_row[n];
        const float ks = kscale[jn];
        MbarWait(bar.empty(st), pos.ph ^ 1);
        meta[st] = StageMeta{jn, ks};  // read by the consumers once full-K completes
        const int64_t j = bh * d.k_blocks + jn;
        MbarArriveExpectTx(bar.full_k(st), S::kKBytes);
        TmaLoad2d(k_tile(st), &tmap_k, bar.full_k(st), 0, static_cast<int>(j * kBlockK));
        MbarArriveExpectTx(bar.full_v(st), S::kVBytes);
        TmaLoad2d(v_tile(st), &tmap_v, bar.full_v(st), 0, static_cast<int>(j * D));
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
  const PingPong turns{args.pingpong, wg};  // as in the bf16 kernel
  turns.Start();
  const int full_blocks = d.FullKeyBlocks();
  // Stage st's tiles are the first stage's moved by st stages.
  const uint64_t k_desc0 = SmemDesc(k_tile(0), 16, 8 * D, D);
  const uint64_t v_desc0 = SmemDesc(v_tile(0), 16, 8 * kBlockK, kBlockK);
  auto k_desc = [&](int st) { return DescStep<S::kStageBytes>(k_desc0, st); };
  auto v_desc = [&](int st) { return DescStep<S::kStageBytes>(v_desc0, st); };
  RingPos<kStages> pos;  // blocks consumed so far, over all tiles of this CTA
  int k = 0;
  for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
    MbarWait(bar.q_full(), k & 1);
    const LowBitTileInfo<D>* const slot = info + (k & 1);
    const TileInfo ti = slot->t;
    const int cnt = ti.cnt;

    float o[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    uint32_t qf[D / 32][4];
    if (cnt > 0) LoadQ8Frags<D>(q_s, wg * 64 + wrow, qf);
    WarpArrive(bar.q_empty());
    if (cnt > 0) {
      int s[8][4];
      float r[2], ta[D / 8][4];
      uint32_t p[2][4];
      turns.MyTurn();
      MbarWait(bar.full_k(pos.st), pos.ph);
      IssueQK8<D>(s, qf, k_desc(pos.st));
      turns.PassTurn();
      StageMeta sm = meta[pos.st];
      float f = ti.qscale * sm.kscale;
      WgmmaWait<0>();
      RegFence(s);
      SoftmaxStep8<1>(s, m, l, {f}, {sm.j}, full_blocks, d.seq_len, t, r);  // r = 0: O is 0
      PackP8<1>(s, p);
      for (int n = 1; n < cnt; ++n) {
        const RingPos<kStages> prev = pos;
        pos.Next();
        turns.MyTurn();
        MbarWait(bar.full_k(pos.st), pos.ph);
        IssueQK8<D>(s, qf, k_desc(pos.st));  // S of block n ...
        sm = meta[pos.st];
        f = ti.qscale * sm.kscale;
        MbarWait(bar.full_v(prev.st), prev.ph);
        IssuePV8<D, 1>(ta, p, v_desc(prev.st));  // ... P V of block n-1
        turns.PassTurn();
        const float r_prev[2] = {r[0], r[1]};  // block n-1's maxima over n-2's
        WgmmaWait<1>();
        RegFence(s);
        SoftmaxStep8<1>(s, m, l, {f}, {sm.j}, full_blocks, d.seq_len, t, r);
        WgmmaWait<0>();
        RegFence(ta);
        RegFence(p);
        WarpArrive(bar.empty(prev.st));
        // O (blocks < n-1, at block n-2's maxima) moves to block n-1's and
        // takes P^V^ of block n-1: one FFMA per element.
        AccumulateBlock<D>(o, r_prev, ta);
        PackP8<1>(s, p);
      }
      turns.MyTurn();
      MbarWait(bar.full_v(pos.st), pos.ph);
      IssuePV8<D, 1>(ta, p, v_desc(pos.st));
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
  }
  OutStageDrain(wtid);
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

// 2-D map over a dense workspace buffer of `rows` rows of `row_bytes` (64 or
// 128), boxes of box_rows rows, the swizzle of the row length.
bool MakeByteMap(CUtensorMap* map, const void* base, int row_bytes, int64_t rows, int box_rows) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(row_bytes), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(row_bytes)};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(row_bytes),
                             static_cast<cuuint32_t>(box_rows)};
  return EncodeTensorMap(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, base, dims, strides, box,
                         row_bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_64B);
}

}  // namespace

bool hopper::MakeLowBitMaps(const Sla2Problem& p, const Sla2Dims& d,
                            const Sla2Workspace::Buffers& w, CUtensorMap* q8, CUtensorMap* k8,
                            CUtensorMap* vt8, CUtensorMap* out) {
  const int D = d.head_dim;
  const int64_t bh = int64_t{d.batch} * d.heads;
  // TMA coordinates are int32 rows of the flattened buffers; the pair kernel
  // also addresses the row just past the K and V^T buffers (padding).
  if (bh * d.k_blocks * D >= INT_MAX || bh * d.q_blocks * kBlockQ >= INT_MAX) return false;
  return MakeQkvMap(out, p.out, d, 64) &&
         MakeByteMap(q8, w.q8, D, bh * d.q_blocks * kBlockQ, kBlockQ) &&
         MakeByteMap(k8, w.k8, D, bh * d.k_blocks * kBlockK, kBlockK) &&
         MakeByteMap(vt8, w.vt8, kBlockK, bh * d.k_blocks * D, D);
}

hopper::LowBitHopperArgs hopper::MakeLowBitArgs(const Sla2Problem& p, const Sla2Dims& d,
                                                int64_t cap, const Sla2Workspace::Buffers& w) {
  const int64_t bh = int64_t{d.batch} * d.heads;
  return LowBitHopperArgs{w.lut,    w.counts, cap, w.qscale, w.kscale, w.vscale, p.alpha,
                          static_cast<__nv_bfloat16*>(p.out), d, int64_t{d.q_blocks} * bh,
                          !EnvIsZero("SLA2_HOPPER_PINGPONG")};
}

cudaError_t LaunchSparseLowBitHopper(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                     Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (!HopperKernelSelected()) return cudaErrorNotSupported;
  const int sms = HopperSms();
  if (sms == 0) return cudaErrorNotSupported;
  return d.head_dim == 64 ? LaunchLowBitKernel(SparseLowBitHopperKernel<64>, LowBitSmem<64>::kBytes,
                                               p, d, cap, w, s, sms)
                          : LaunchLowBitKernel(SparseLowBitHopperKernel<128>,
                                               LowBitSmem<128>::kBytes, p, d, cap, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
