// Stage kSparse (bf16) on Hopper (sm_90a): the same contract as
// sla2_sparse_bf16.cu (online softmax over the kept key blocks, partial last
// block masked, empty row -> O_s = 0, epilogue O = alpha * O_s + out), with
// Hopper's own machinery:
//  - persistent grid (one CTA per SM), tiles = (query block, head, batch) in
//    query-block-fastest order so the CTAs running together share one head's
//    K/V in L2;
//  - one producer warp issues TMA box loads: Q (128 rows) per tile and the
//    kept K/V blocks (64 rows each, gathered through the block list) into a
//    4-stage ring guarded by mbarriers; it runs ahead across tiles;
//  - two consumer warpgroups own 64 query rows each: S = Q K^T by wgmma with
//    both operands in shared memory, P V by wgmma with P in registers;
//  - within a warpgroup the softmax of block n runs while P V of block n-1 is
//    on the tensor cores (S of n and P V of n-1 are issued back to back);
//  - epilogue through a per-warpgroup shared tile, 16-byte coalesced stores.
#include <cuda.h>
#include <cudaTypedefs.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cuda/sla2_epilogue.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"
#include "kernels/cuda/sla2_sparse_hopper.cuh"
#include "kernels/cuda/sla2_sparse_hopper_ptx.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

constexpr int kConsumerThreads = 256;              // 2 warpgroups x 64 query rows
constexpr int kThreads = kConsumerThreads + 128;   // + the producer warpgroup
constexpr int kProducerWarp = kConsumerThreads / 32;
// Registers per thread after setmaxnreg. Each SM sub-partition holds 16K
// registers and gets one producer and two consumer warps: 24 + 2 * 240 = 504
// per lane fits (32 * 504 <= 16384), and the 168 every warp starts with
// (launch bounds 384 threads, 1 CTA) are what the producer hands over.
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
constexpr int kStages = 4;
constexpr int kConsumerWarps = kConsumerThreads / 32;  // arrivals per release

struct HopperArgs {
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // null: alpha = 1 and out holds no linear part
  __nv_bfloat16* out;
  Sla2Dims d;
  int64_t num_tiles;
  bool pingpong;  // the two warpgroups take turns issuing their GEMMs
  bool l2_hints;  // TMA loads: K/V evict_last, Q evict_first
};

// One tile of the persistent grid: query block i of (batch b, head h), in
// query-block-fastest order, with its kept key-block list. The producer and
// the consumers walk the same tiles, so both decode them here.
struct HopperTile {
  int i, h, b, cnt;
  const int32_t* lut_row;
};

__device__ __forceinline__ HopperTile DecodeTile(int64_t tile, const HopperArgs& args) {
  const Sla2Dims& d = args.d;
  const int i = static_cast<int>(tile % d.q_blocks);
  const int64_t bh = tile / d.q_blocks;
  return {i, static_cast<int>(bh % d.heads), static_cast<int>(bh / d.heads),
          args.counts[bh * d.q_blocks + i],
          args.lut + (bh * d.q_blocks + i) * args.lut_capacity};
}

// Shared-memory map. Every tile is a set of 128-byte-wide column chunks
// (64 bf16 channels), each a TMA box stored with the 128-byte swizzle.
template <int D>
struct Smem {
  static constexpr int kChunks = D / 64;
  static constexpr int kQChunkBytes = kBlockQ * 128;
  static constexpr int kKvChunkBytes = kBlockK * 128;
  static constexpr int kQBytes = kChunks * kQChunkBytes;
  static constexpr int kKBytes = kChunks * kKvChunkBytes;  // = V bytes
  static constexpr int kStageBytes = 2 * kKBytes;
  static constexpr int kOutStride = detail::OutStageStride<D>();
  static constexpr int kStageOff = kQBytes;
  static constexpr int kOutOff = kStageOff + kStages * kStageBytes;
  static constexpr int kBarOff = kOutOff + kBlockQ * kOutStride;
  static constexpr int kBarBytes = (3 * kStages + 2) * 8;
  static constexpr int kBytes = kBarOff + kBarBytes + 1024;  // + base alignment slack
  static_assert(kOutOff % 1024 == 0 && kBarOff % 8 == 0, "alignment");
};

// The warp's 16 rows of Q (starting at tile row `row0`) as wgmma A fragments,
// one per 16-channel k-step, read from the swizzled TMA tile with ldmatrix.
// Q in registers leaves shared-memory bandwidth to K and V.
template <int D>
__device__ __forceinline__ void LoadQFrags(uint32_t q_s, int row0, uint32_t (&qf)[D / 16][4]) {
  const int l = threadIdx.x & 31;
  const int row = row0 + (l & 7) + ((l >> 3) & 1) * 8;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int unit = kk * 2 + (l >> 4);  // 16-byte unit along D
    const uint32_t addr = q_s + (unit / 8) * Smem<D>::kQChunkBytes + row * 128 +
                          (((unit % 8) ^ (row & 7)) << 4);
    detail::LdMatrixX4(addr, qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
  }
}

// S[64 x 64] = Q_wg[64 x D] K[64 x D]^T, issued asynchronously.
template <int D>
__device__ __forceinline__ void IssueQK(float (&s)[8][4], const uint32_t (&qf)[D / 16][4],
                                        uint32_t k_tile) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const uint32_t b = k_tile + (kk / 4) * Smem<D>::kKvChunkBytes + (kk % 4) * 32;
    WgmmaRS_N64<0>(s, qf[kk], SmemDesc(b, 16, 1024), kk > 0);
  }
  WgmmaCommit();
}

// O[64 x D] += P[64 x 64] V[64 x D], issued asynchronously.
template <int D>
__device__ __forceinline__ void IssuePV(float (&o)[D / 8][4], const uint32_t (&p)[4][4],
                                        uint32_t v_tile) {
  WgmmaFence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t b = SmemDesc(v_tile + kk * 16 * 128, Smem<D>::kKvChunkBytes, 1024);
    if constexpr (D == 128) {
      WgmmaRS_N128(o, p[kk], b);
    } else {
      WgmmaRS_N64<1>(o, p[kk], b, 1);
    }
  }
  WgmmaCommit();
}

// One online-softmax step over a 64-key block (rows g and g+8 of the warp):
// masks keys >= seq_len, updates max m and partial sum l, turns s into P in
// place; r = factors that rescale O (exp2 domain, scale folded in).
__device__ __forceinline__ void SoftmaxStep(float (&s)[8][4], float (&m)[2], float (&l)[2],
                                            float scale_log2, int64_t key0, int64_t seq_len,
                                            int t, float (&r)[2]) {
  if (key0 + kBlockK > seq_len) {
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const int64_t key = key0 + nt * 8 + 2 * t;
      if (key >= seq_len) s[nt][0] = s[nt][2] = -INFINITY;
      if (key + 1 >= seq_len) s[nt][1] = s[nt][3] = -INFINITY;
    }
  }
  float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    mx[0] = fmaxf(mx[0], fmaxf(s[nt][0], s[nt][1]));
    mx[1] = fmaxf(mx[1], fmaxf(s[nt][2], s[nt][3]));
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    // Every kept block has a valid key, so the new maximum is finite.
    const float mn = fmaxf(m[h], detail::QuadMax(mx[h]) * scale_log2);
    r[h] = exp2f(m[h] - mn);
    m[h] = mn;
    l[h] *= r[h];
  }
#pragma unroll
  for (int nt = 0; nt < 8; ++nt) {
    s[nt][0] = exp2f(fmaf(s[nt][0], scale_log2, -m[0]));
    s[nt][1] = exp2f(fmaf(s[nt][1], scale_log2, -m[0]));
    s[nt][2] = exp2f(fmaf(s[nt][2], scale_log2, -m[1]));
    s[nt][3] = exp2f(fmaf(s[nt][3], scale_log2, -m[1]));
    l[0] += s[nt][0] + s[nt][1];
    l[1] += s[nt][2] + s[nt][3];
  }
}

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
    uint4 v = *reinterpret_cast<const uint4*>(stage + r * Smem<D>::kOutStride + c * 16);
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

template <int D>
__global__ void __launch_bounds__(kThreads, 1)
    SparseBf16HopperKernel(const __grid_constant__ CUtensorMap tmap_q,
                           const __grid_constant__ CUtensorMap tmap_k,
                           const __grid_constant__ CUtensorMap tmap_v, HopperArgs args) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = Smem<D>;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // 128-byte swizzle atoms are 1 KB
  uint8_t* const smem = smem_raw + (base - raw);
  const uint32_t q_s = base;
  auto k_tile = [&](int st) { return base + S::kStageOff + st * S::kStageBytes; };
  auto v_tile = [&](int st) { return k_tile(st) + S::kKBytes; };
  const uint32_t bars = base + S::kBarOff;
  auto full_k = [&](int st) { return bars + st * 8; };
  auto full_v = [&](int st) { return bars + (kStages + st) * 8; };
  auto empty = [&](int st) { return bars + (2 * kStages + st) * 8; };
  const uint32_t q_full = bars + 3 * kStages * 8, q_empty = q_full + 8;
  const Sla2Dims& d = args.d;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;

  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages; ++st) {
      MbarInit(full_k(st), 1);
      MbarInit(full_v(st), 1);
      MbarInit(empty(st), kConsumerWarps);
    }
    MbarInit(q_full, 1);
    MbarInit(q_empty, kConsumerWarps);
    FenceBarrierInit();
  }
  __syncthreads();

  if (warp >= kProducerWarp) {
    SetMaxRegs<kProducerRegs, false>();
    if (warp != kProducerWarp || lane != 0) return;
    // K/V blocks are re-read by the other CTAs of the head: keep them in L2;
    // Q is read once.
    const uint64_t keep = L2EvictLast(), once = L2EvictFirst();
    auto load = [&](uint32_t dst, const CUtensorMap* map, uint32_t bar, int c0, int row, int h,
                    int b, uint64_t policy) {
      if (args.l2_hints) {
        TmaLoad4dHint(dst, map, bar, c0, row, h, b, policy);
      } else {
        TmaLoad4d(dst, map, bar, c0, row, h, b);
      }
    };
    int64_t it = 0;  // K/V blocks loaded so far, over all tiles of this CTA
    int k = 0;       // tiles so far
    for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
      const auto [i, h, b, cnt, lut_row] = DecodeTile(tile, args);
      if (k > 0) MbarWait(q_empty, (k - 1) & 1);  // consumers' last Q K^T of the previous tile
      MbarArriveExpectTx(q_full, S::kQBytes);
#pragma unroll
      for (int c = 0; c < S::kChunks; ++c)
        load(q_s + c * S::kQChunkBytes, &tmap_q, q_full, c * 64, i * kBlockQ, h, b, once);
      for (int n = 0; n < cnt; ++n, ++it) {
        const int st = static_cast<int>(it % kStages);
        MbarWait(empty(st), ((it / kStages) & 1) ^ 1);
        const int key0 = lut_row[n] * kBlockK;
        MbarArriveExpectTx(full_k(st), S::kKBytes);
#pragma unroll
        for (int c = 0; c < S::kChunks; ++c)
          load(k_tile(st) + c * S::kKvChunkBytes, &tmap_k, full_k(st), c * 64, key0, h, b, keep);
        MbarArriveExpectTx(full_v(st), S::kKBytes);
#pragma unroll
        for (int c = 0; c < S::kChunks; ++c)
          load(v_tile(st) + c * S::kKvChunkBytes, &tmap_v, full_v(st), c * 64, key0, h, b, keep);
      }
    }
    return;
  }

  // Consumer warpgroups.
  SetMaxRegs<kConsumerRegs, true>();
  const int wg = warp / 4;
  const int g = lane >> 2, t = lane & 3;
  const int wrow = (warp % 4) * 16;  // first row of this warp inside the warpgroup
  uint8_t* const out_stage = smem + S::kOutOff + wg * 64 * S::kOutStride;
  // Scores in the log2 domain: exp(x/sqrt(D)) = exp2(x * log2(e)/sqrt(D)).
  const float scale_log2 = 1.4426950408889634f * rsqrtf(static_cast<float>(D));
  // Ping-pong: a warpgroup issues its GEMMs only after the other one issued
  // its own, so one's softmax runs under the other's GEMMs instead of both
  // warpgroups computing softmax at the same time (named barriers 3 and 4;
  // both warpgroups walk the same tiles, so their issue points pair up).
  auto my_turn = [&] {
    if (args.pingpong) NamedBarrier(3 + wg, 256);
  };
  auto pass_turn = [&] {
    if (args.pingpong) NamedBarrierArrive(3 + (wg ^ 1), 256);
  };
  if (wg == 1) pass_turn();  // warpgroup 0 goes first
  int64_t it = 0;
  int k = 0;
  for (int64_t tile = blockIdx.x; tile < args.num_tiles; tile += gridDim.x, ++k) {
    const auto [i, h, b, cnt, lut_row] = DecodeTile(tile, args);

    float o[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    MbarWait(q_full, k & 1);
    uint32_t qf[D / 16][4];
    if (cnt > 0) LoadQFrags<D>(q_s, wg * 64 + wrow, qf);
    WarpArrive(q_empty);  // Q is in registers: the producer may load the next tile's
    if (cnt > 0) {
      float s[8][4], r[2];
      uint32_t p[4][4];
      int st = static_cast<int>(it % kStages);
      uint32_t ph = static_cast<uint32_t>((it / kStages) & 1);
      int64_t key0 = static_cast<int64_t>(lut_row[0]) * kBlockK;
      my_turn();
      MbarWait(full_k(st), ph);
      IssueQK<D>(s, qf, k_tile(st));
      pass_turn();
      WgmmaWait<0>();
      RegFence(s);
      SoftmaxStep(s, m, l, scale_log2, key0, d.seq_len, t, r);  // O = 0: r unused
      detail::AccToAFrags(s, 1.f, p);
      for (int n = 1; n < cnt; ++n) {
        const int st_prev = st;
        const uint32_t ph_prev = ph;
        const int64_t next = it + n;
        st = static_cast<int>(next % kStages);
        ph = static_cast<uint32_t>((next / kStages) & 1);
        key0 = static_cast<int64_t>(lut_row[n]) * kBlockK;
        my_turn();
        MbarWait(full_k(st), ph);
        IssueQK<D>(s, qf, k_tile(st));        // S of block n ...
        MbarWait(full_v(st_prev), ph_prev);
        IssuePV<D>(o, p, v_tile(st_prev));    // ... and P V of block n-1 back to back
        pass_turn();
        WgmmaWait<1>();                       // S done; P V still running
        RegFence(s);
        SoftmaxStep(s, m, l, scale_log2, key0, d.seq_len, t, r);
        WgmmaWait<0>();
        RegFence(o);
        RegFence(p);
        WarpArrive(empty(st_prev));
        // The row maxima rarely move late in a row: skip the rescale when no
        // row of the warp changed (r is exactly 1 then).
        if (__any_sync(0xffffffffu, r[0] != 1.f || r[1] != 1.f)) {
#pragma unroll
          for (int nt = 0; nt < D / 8; ++nt) {
            o[nt][0] *= r[0];
            o[nt][1] *= r[0];
            o[nt][2] *= r[1];
            o[nt][3] *= r[1];
          }
        }
        detail::AccToAFrags(s, 1.f, p);
      }
      my_turn();
      MbarWait(full_v(st), ph);
      IssuePV<D>(o, p, v_tile(st));
      pass_turn();
      WgmmaWait<0>();
      RegFence(o);
      RegFence(p);
      WarpArrive(empty(st));
      it += cnt;
    }

    // Epilogue: alpha * O_s / l through the warpgroup's staging tile.
    const float alpha =
        args.alpha ? args.alpha[static_cast<int64_t>(h) * d.q_blocks + i] : 1.f;
    NamedBarrier(1 + wg, 128);  // the previous tile's stores have read the staging tile
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float lsum = detail::QuadSum(l[half]);
      const float f = lsum > 0.f ? alpha / lsum : 0.f;  // no kept block: O_s = 0
      const int row = wrow + g + half * 8;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt)
        detail::StageOut<D>(out_stage, row, nt * 8 + 2 * t, o[nt][2 * half] * f,
                            o[nt][2 * half + 1] * f);
    }
    NamedBarrier(1 + wg, 128);
    const int64_t row0 = static_cast<int64_t>(i) * kBlockQ + wg * 64;
    const int valid = static_cast<int>(MinI64(64, d.seq_len - row0));
    if (valid > 0)
      StoreRows64<D>(out_stage, args.out + d.TokenOffset(b, row0, h), d.stride_l, valid,
                     args.alpha != nullptr, threadIdx.x % 128);
  }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

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

// 4-D map (channels, tokens, heads, batch) over one of q/k/v; boxes of
// 64 channels x box_rows tokens, 128-byte swizzle, zeros past the end.
bool MakeTensorMap(CUtensorMap* map, const void* base, const Sla2Dims& d, int box_rows) {
  const PFN_cuTensorMapEncodeTiled_v12000 encode = TensorMapEncoder();
  if (encode == nullptr) return false;
  const cuuint64_t dims[4] = {static_cast<cuuint64_t>(d.head_dim),
                              static_cast<cuuint64_t>(d.seq_len),
                              static_cast<cuuint64_t>(d.heads), static_cast<cuuint64_t>(d.batch)};
  // stride_b may be 0 for batch 1; that dimension is never stepped then.
  const cuuint64_t strides[3] = {
      static_cast<cuuint64_t>(d.stride_l) * 2, static_cast<cuuint64_t>(d.stride_h) * 2,
      static_cast<cuuint64_t>(d.batch > 1 ? d.stride_b : d.stride_l) * 2};
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(box_rows), 1, 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  return encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, const_cast<void*>(base), dims, strides,
                box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Unset SLA2_SPARSE_KERNEL: the Hopper kernel where it applies iff this.
constexpr bool kHopperByDefault = true;
bool HopperKernelSelected() {
  const char* env = std::getenv("SLA2_SPARSE_KERNEL");
  if (env == nullptr || *env == '\0') return kHopperByDefault;
  return std::strcmp(env, "hopper") == 0;
}

template <int D>
cudaError_t Launch(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                   Sla2Workspace::Buffers& w, cudaStream_t s, int sms) {
  CUtensorMap tq, tk, tv;
  if (!MakeTensorMap(&tq, p.q, d, kBlockQ) || !MakeTensorMap(&tk, p.k, d, kBlockK) ||
      !MakeTensorMap(&tv, p.v, d, kBlockK))
    return cudaErrorNotSupported;
  cudaError_t e = cudaFuncSetAttribute(SparseBf16HopperKernel<D>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, Smem<D>::kBytes);
  if (e != cudaSuccess) return e;
  const char* pp_env = std::getenv("SLA2_HOPPER_PINGPONG");
  const char* l2_env = std::getenv("SLA2_HOPPER_L2_HINTS");
  HopperArgs a{w.lut,
               w.counts,
               cap,
               p.alpha,
               static_cast<__nv_bfloat16*>(p.out),
               d,
               int64_t{d.q_blocks} * d.heads * d.batch,
               !(pp_env && std::strcmp(pp_env, "0") == 0),
               !(l2_env && std::strcmp(l2_env, "0") == 0)};
  int64_t ctas = sms;
  if (const char* cap_env = std::getenv("SLA2_HOPPER_MAX_CTAS"); cap_env && std::atoi(cap_env) > 0)
    ctas = std::atoi(cap_env);
  ctas = MinI64(ctas, a.num_tiles);
  SparseBf16HopperKernel<D><<<static_cast<unsigned>(ctas), kThreads, Smem<D>::kBytes, s>>>(
      tq, tk, tv, a);
  return cudaGetLastError();
}

}  // namespace

bool SparseHopperRequired() {
  const char* env = std::getenv("SLA2_SPARSE_KERNEL");
  return env != nullptr && std::strcmp(env, "hopper") == 0;
}

cudaError_t LaunchSparseBf16Hopper(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                   Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (!HopperKernelSelected()) return cudaErrorNotSupported;
  int dev = 0, major = 0, minor = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  if (e != cudaSuccess) return e;
  if (major != 9 || minor != 0) return cudaErrorNotSupported;  // built for sm_90a only
  return d.head_dim == 64 ? Launch<64>(p, d, cap, w, s, sms) : Launch<128>(p, d, cap, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
