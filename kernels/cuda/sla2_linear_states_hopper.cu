// Stage kLinear's per-key-block part on Hopper (sm_90a), for the phi(K~)
// forms of the linear branch (the fused bf16 kernel and the low-bit linear
// tiles): one pass over K and V that writes
//   phi(K~_j) rows (bf16, padded rows 0), z_j = colsum phi(K~_j),
//   H_tot += phi(K~_j)^T V_j and z_tot += z_j.
// Each CTA streams a range of one head's key blocks through a TMA ring of
// (K, V) stages. All 256 threads turn the stage's K tile into phi(K~) rows in
// place (eight threads per row; each thread rewrites the 16-byte units it
// read, so the tile keeps TMA's swizzled layout and is at once the A operand
// of wgmma and the source of a TMA store of phi(K~)). Then each warpgroup
// adds phi^T V for its 64 channels (D = 128) or its 32 keys (D = 64) to an
// fp32 accumulator by wgmma, which runs on under the next block's phi. At
// the end the CTA's H partial goes through shared memory to H_tot by one
// TMA reduce-add.
// It replaced two streaming kernels (phi(K~) and H_tot apart), which read K,
// wrote phi(K~), then read phi(K~) and V again: 400 MB at the 1.3B shape
// instead of 300 MB here (h200-v31-ab-states-one-pass.log).
#include <cuda.h>

#include <algorithm>

#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_linear_states_hopper.cuh"
#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

constexpr int kStatesThreads = 256;
constexpr int kThreadsPerRow = 8;                          // one row's channels
constexpr int kRowsPerPass = kStatesThreads / kThreadsPerRow;  // 32
constexpr int kChunkBytes = kBlockK * 128;  // one 64-channel chunk of a 64-row tile
// Three stages: 100 KB of shared memory and 124 registers a thread, 32 K
// registers a CTA. Two CTAs fit an SM and fill its register file, so all
// of the grid's CTAs are resident at once (ncu, h200-v40-ncu-occupancy-
// states.log; launch_bounds asks for one only), and the route's CTAs
// start as they leave. Held to one CTA per SM (shared memory padded), the
// states streamed more slowly (0.101 -> 0.116 ms alone) and the route
// still waited, behind the grid's CTAs not yet started: bf16 module
// 0.650 -> 0.671 ms (h200-v40-ab-states-one-per-sm-dropped.log).
constexpr int kStatesStages = 3;
constexpr int kStatesCtasPerSm = 1;
// kStatesWaves: twice as many CTAs as SMs, each a shorter key range. With
// one CTA per SM of fixed key ranges, the CTAs that shared an SM
// with the route ended last (states done at 0.217 ms against 0.179;
// h200-v39-ab-states-waves.log). Three times as many: 0.193 (more H_tot
// reductions and pipeline fills).
constexpr int kStatesWaves = 2;

template <int D>
struct StatesSmem {
  static constexpr int kChunks = D / 64;
  static constexpr int kTileBytes = kChunks * kChunkBytes;
  static constexpr int kStageBytes = 2 * kTileBytes;  // K (then phi(K~) in place), V
  static constexpr int kOnesOff = kStatesStages * kStageBytes;  // 1 KB of bf16 ones (z_j)
  static constexpr int kMuOff = kOnesOff + 1024;
  static constexpr int kBarOff = kMuOff + D * 4;
  static constexpr int kBytes = kBarOff + kStatesStages * 8 + 1024;  // + 1 KB alignment slack
  // The H partials at the end reuse the ring (D = 64: one per warpgroup).
  static constexpr int kHBytes = (D == 128 ? 1 : 2) * 64 * D * 4;
  static_assert(kHBytes <= kOnesOff, "H partials must fit in the ring");
};

// Byte offset of 16-byte unit u (8 channels) of row r inside a 64-channel
// chunk stored by TMA with the 128-byte swizzle.
__device__ __forceinline__ uint32_t SwizzledUnit(int r, int u) {
  return static_cast<uint32_t>(r * 128 + ((u ^ (r & 7)) << 4));
}

template <int D>
__global__ void __launch_bounds__(kStatesThreads, kStatesCtasPerSm)
    StatesHopperKernel(const __grid_constant__ CUtensorMap tmap_k,
                       const __grid_constant__ CUtensorMap tmap_v,
                       const __grid_constant__ CUtensorMap tmap_phik, Sla2Dims d,
                       const float* __restrict__ ktotal, int blocks_per_cta,
                       float* __restrict__ zblk, float* __restrict__ htot,
                       float* __restrict__ ztot) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = StatesSmem<D>;
  constexpr int kUnits = D / 64;  // 16-byte units of a row per thread
  constexpr int kCh = 8 * kUnits;  // channels per thread
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // 128-byte swizzle atoms are 1 KB
  uint8_t* const smem = smem_raw + (base - raw);
  float* const mu = reinterpret_cast<float*>(smem + S::kMuOff);  // mean(K) * log2(e) per channel
  auto k_tile = [&](int st) { return base + st * S::kStageBytes; };
  auto v_tile = [&](int st) { return k_tile(st) + S::kTileBytes; };
  auto full = [&](int st) { return base + S::kBarOff + st * 8; };

  const int64_t bh = blockIdx.y;
  const int b = static_cast<int>(bh / d.heads), h = static_cast<int>(bh % d.heads);
  const int j_begin = blockIdx.x * blocks_per_cta;
  const int nblk = min(d.k_blocks - j_begin, blocks_per_cta);
  if (nblk <= 0) return;  // uniform over the CTA
  const int tid = threadIdx.x, warp = tid / 32, lane = tid & 31;
  const int wg = warp / 4;

  auto load = [&](int n) {
    const int st = n % kStatesStages, key0 = (j_begin + n) * kBlockK;
    MbarArriveExpectTx(full(st), 2 * S::kTileBytes);
#pragma unroll
    for (int c = 0; c < S::kChunks; ++c) {
      TmaLoad4d(k_tile(st) + c * kChunkBytes, &tmap_k, full(st), c * 64, key0, h, b);
      TmaLoad4d(v_tile(st) + c * kChunkBytes, &tmap_v, full(st), c * 64, key0, h, b);
    }
  };
  if (tid == 0) {
    for (int st = 0; st < kStatesStages; ++st) MbarInit(full(st), 1);
    FenceBarrierInit();
    for (int n = 0; n < min(nblk, kStatesStages); ++n) load(n);
  }
  constexpr float kLog2e = 1.4426950408889634f;  // softmax in exp2
  // mu from the K total copies (not FinishKernel's kmean): the states run
  // right after the pooling pass, beside FinishKernel. In shared memory:
  // registers are short.
  if (tid < D) mu[tid] = KeyMean(ktotal, d, bh, tid) * kLog2e;
  reinterpret_cast<uint32_t*>(smem + S::kOnesOff)[tid] = 0x3F803F80u;  // two bf16 1.0
  FenceProxyAsyncShared();  // the ones are a wgmma operand
  __syncthreads();

  // This thread's channels: kUnits 16-byte units of one chunk. At D = 128
  // the first unit of the row's eight threads covers all eight bank groups
  // (chunk 0 even units, chunk 1 odd ones), so the loads do not conflict.
  const int q = tid % kThreadsPerRow, r0 = tid / kThreadsPerRow;
  const int chunk = D == 128 ? q / 4 : 0;
  int unit[kUnits];
  if constexpr (D == 128) {
    unit[0] = (q % 4) * 2 + chunk;
    unit[1] = (q % 4) * 2 + 1 - chunk;
  } else {
    unit[0] = q;
  }

  float acc[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  // wgmma operands: phi(K~) as MN-major A (this warpgroup's chunk at D =
  // 128), V as MN-major B; at D = 64 warpgroup w takes keys 32w.. . z_j is
  // phi(K~_j)^T 1 by a small wgmma on the same A, so thread t = 0 of each
  // quad holds z_j of channels zc and zc + 8 (D = 64: warpgroup 0 stores it).
  const uint64_t phi_desc0 = SmemDesc(k_tile(0), kChunkBytes, 1024);
  const uint64_t v_desc0 = SmemDesc(v_tile(0), kChunkBytes, 1024);
  const uint64_t ones_desc = SmemDesc(base + S::kOnesOff, 16, 1024);
  const bool z_owner = D == 128 || wg == 0;  // warpgroup-uniform
  const int zc = (D == 128 ? 64 * wg : 0) + 16 * (warp % 4) + (lane >> 2);
  float zacc[1][4];
  float zt[2] = {0.f, 0.f};  // z_tot shares of channels zc, zc + 8

  for (int n = 0; n < nblk; ++n) {
    const int st = n % kStatesStages, j = j_begin + n;
    MbarWait(full(st), (n / kStatesStages) & 1);
    // phi(K~) rows r0 and r0 + 32 (softmax over D channels of K - mu, in
    // the log2 domain).
#pragma unroll
    for (int pass = 0; pass < kBlockK / kRowsPerPass; ++pass) {
      const int r = r0 + pass * kRowsPerPass;
      float x[kCh];
#pragma unroll
      for (int u = 0; u < kUnits; ++u) {
        const uint4 raw4 = *reinterpret_cast<const uint4*>(
            smem + (k_tile(st) - base) + chunk * kChunkBytes + SwizzledUnit(r, unit[u]));
        const uint32_t w4[4] = {raw4.x, raw4.y, raw4.z, raw4.w};
#pragma unroll
        for (int p = 0; p < 4; ++p) {
          const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w4[p]));
          const float2 m2 = *reinterpret_cast<const float2*>(mu + chunk * 64 + unit[u] * 8 + 2 * p);
          x[u * 8 + 2 * p] = fmaf(f.x, kLog2e, -m2.x);
          x[u * 8 + 2 * p + 1] = fmaf(f.y, kLog2e, -m2.y);
        }
      }
      float m = x[0];
#pragma unroll
      for (int e = 1; e < kCh; ++e) m = fmaxf(m, x[e]);
#pragma unroll
      for (int o = 1; o < kThreadsPerRow; o <<= 1) m = fmaxf(m, __shfl_xor_sync(~0u, m, o));
      float sum = 0.f;
#pragma unroll
      for (int e = 0; e < kCh; ++e) {
        x[e] = detail::Exp2Ftz(x[e] - m);
        sum += x[e];
      }
#pragma unroll
      for (int o = 1; o < kThreadsPerRow; o <<= 1) sum += __shfl_xor_sync(~0u, sum, o);
      // Rows past L arrive as zeros; their phi must be 0, not uniform.
      const float inv = static_cast<int64_t>(j) * kBlockK + r < d.seq_len ? 1.f / sum : 0.f;
#pragma unroll
      for (int u = 0; u < kUnits; ++u) {
        uint32_t w4[4];
#pragma unroll
        for (int p = 0; p < 4; ++p) {
          w4[p] = detail::PackBf16(x[u * 8 + 2 * p] * inv, x[u * 8 + 2 * p + 1] * inv);
        }
        *reinterpret_cast<uint4*>(smem + (k_tile(st) - base) + chunk * kChunkBytes +
                                  SwizzledUnit(r, unit[u])) = make_uint4(w4[0], w4[1], w4[2], w4[3]);
      }
    }
    FenceProxyAsyncShared();  // phi tile: generic writes, then wgmma and TMA reads
    __syncthreads();          // A: phi(K~_j) is complete

    if (tid == 0) {
#pragma unroll
      for (int c = 0; c < S::kChunks; ++c)
        TmaStore4d<false>(&tmap_phik, k_tile(st) + c * kChunkBytes, c * 64, j * kBlockK, h, b);
      BulkCommit();
    }
    WgmmaFence();
    const uint64_t phi_desc = DescStep<S::kStageBytes>(phi_desc0, st);
    const uint64_t v_desc = DescStep<S::kStageBytes>(v_desc0, st);
    {  // z_j in its own commit group, read back below (at D = 64 both
       // warpgroups compute it: a wgmma on one path only would serialise all)
      const uint64_t a0 = DescAdvance(phi_desc, (D == 128 ? wg : 0) * kChunkBytes);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        WgmmaSSTN_N8(zacc, DescAdvance(a0, kk * 16 * 128), DescAdvance(ones_desc, kk * 32), kk);
    }
    WgmmaCommit();
    if constexpr (D == 128) {
      const uint64_t a0 = DescAdvance(phi_desc, wg * kChunkBytes);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        WgmmaSSTT_N128<1>(acc, DescAdvance(a0, kk * 16 * 128), DescAdvance(v_desc, kk * 16 * 128));
    } else {
#pragma unroll
      for (int kk = 2 * wg; kk < 2 * wg + 2; ++kk)
        WgmmaSSTT_N64<1>(acc, DescAdvance(phi_desc, kk * 16 * 128), DescAdvance(v_desc, kk * 16 * 128));
    }
    WgmmaCommit();
    // z_j of this block and the previous block's H wgmma are complete (this
    // block's H wgmma runs on under the next block's phi); thread 0's
    // previous phi(K~) store has read its stage.
    WgmmaWait<1>();
    RegFence(zacc);
    if (z_owner && (lane & 3) == 0) {
      float* const zrow = zblk + (bh * d.k_blocks + j) * D;
      zrow[zc] = zacc[0][0];
      zrow[zc + 8] = zacc[0][2];
      zt[0] += zacc[0][0];
      zt[1] += zacc[0][2];
    }
    if (tid == 0) BulkWaitRead<1>();
    __syncthreads();  // B: the previous stage is free
    if (tid == 0 && n >= 1 && n - 1 + kStatesStages < nblk) load(n - 1 + kStatesStages);
  }
  WgmmaWait<0>();
  RegFence(acc);
  if (tid == 0) BulkWaitRead();
  __syncthreads();  // the wgmmas and phi(K~) stores have read the ring: the H partials reuse it

  // H partial (accumulator layout) -> shared memory, row-major fp32, then one
  // TMA reduce-add into H_tot (D = 64: both warpgroups' partials).
  {
    const int g = lane >> 2, t = lane & 3;
    const int row = (warp % 4) * 16 + g;
    float* const hs = reinterpret_cast<float*>(smem) + (D == 128 ? wg * 64 * D : wg * 64 * 64);
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      const int col = nt * 8 + 2 * t;
      *reinterpret_cast<float2*>(hs + row * D + col) = make_float2(acc[nt][0], acc[nt][1]);
      *reinterpret_cast<float2*>(hs + (row + 8) * D + col) = make_float2(acc[nt][2], acc[nt][3]);
    }
  }
  FenceProxyAsyncShared();
  __syncthreads();
  if (tid == 0) {
    float* const dst = htot + bh * D * D;
#pragma unroll
    for (int part = 0; part < (D == 128 ? 1 : 2); ++part)
      BulkReduceAddF32(dst, base + part * D * D * 4, D * D * 4);
    BulkCommit();
    BulkWait();  // the phi(K~) stores and the reduction are complete
  }
  if (z_owner && (lane & 3) == 0) {
    atomicAdd(ztot + bh * D + zc, zt[0]);
    atomicAdd(ztot + bh * D + zc + 8, zt[1]);
  }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

template <int D>
cudaError_t Launch(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                   cudaStream_t s, int sms) {
  CUtensorMap tk, tv, tphik;
  if (!MakeQkvMap(&tk, p.k, d, kBlockK) || !MakeQkvMap(&tv, p.v, d, kBlockK) ||
      !MakePhiKMap(&tphik, w.phik, d))
    return cudaErrorNotSupported;
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  // kStatesCtasPerSm * kStatesWaves CTAs per SM in all (all resident at
  // once, above): each head's key blocks split evenly over its share
  // (fewer, longer ranges also mean fewer H_tot reductions).
  const int64_t splits =
      std::max<int64_t>(1, int64_t{kStatesCtasPerSm} * kStatesWaves * sms / bh);
  const int per = static_cast<int>((d.k_blocks + splits - 1) / splits);
  const dim3 grid((d.k_blocks + per - 1) / per, static_cast<unsigned>(bh));
  using S = StatesSmem<D>;
  constexpr auto kernel = StatesHopperKernel<D>;
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::kBytes);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kStatesThreads, S::kBytes, s>>>(tk, tv, tphik, d, w.ktotal, per, w.zblk, w.htot,
                                                 w.ztot);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchLinearStatesHopper(const Sla2Problem& p, const Sla2Dims& d,
                                     Sla2Workspace::Buffers& w, cudaStream_t s) {
  const int sms = HopperSms();
  if (sms == 0 || w.phik == nullptr) return cudaErrorNotSupported;
  return d.head_dim == 64 ? Launch<64>(p, d, w, s, sms) : Launch<128>(p, d, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
