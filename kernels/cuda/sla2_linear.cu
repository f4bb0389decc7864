// Stage kLinear: the linear branch over the key blocks a query block did NOT
// keep, by pre-aggregation (conventions.md step 5, sla2.md §2.4):
//   H_i = H_tot - sum_{j kept} phi(K~_j)^T V_j,  z_i = z_tot - sum_{j kept} colsum phi(K~_j)
//   O_l = phi(Q_i) H_i / (phi(Q_i) z_i)
// StatesKernel computes every key block's h_j (stored bf16) and z_j once, and
// H_tot, z_tot in fp32; each query tile then subtracts its kept blocks' h_j
// with plain loads (no per-tile product over the kept K/V tiles). G = sum of
// the kept h_j is a few percent of H_tot, so bf16 h_j costs ~2^-9 of G, far
// below the bf16 output rounding. The result is written as (1 - alpha) * O_l
// into out; kSparse adds alpha * O_s.
// Fused (FusedLinearApplies: the Hopper sparse kernel subtracts the kept
// blocks itself, from tiles it loads anyway) this stage only prepares its
// inputs: one pass over K and V on Hopper (sla2_linear_states_hopper.cu:
// phi(K~) rows, z_j, H_tot = phi(K~)^T V, z_tot) and KeptZKernel (z_i per
// query tile). Low-bit on Hopper
// (LinearTilesHopperApplies) prepares the same inputs and then runs the bf16
// Hopper kernel's linear part alone (LaunchLinearTilesHopper), which writes
// (1 - alpha) * O_l into out like LinearKernel.
#include <algorithm>

#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_linear_states_hopper.cuh"
#include "kernels/cuda/sla2_sparse_hopper.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using detail::SwizzledOffset;

// phi = softmax over one row's D channels (sla2.md §2.4); the row is spread
// over a warp, kPerLane channels per lane, and normalised in place.
template <int kPerLane>
__device__ __forceinline__ void PhiRowInPlace(float (&x)[kPerLane]) {
  float m = x[0];
#pragma unroll
  for (int e = 1; e < kPerLane; ++e) m = fmaxf(m, x[e]);
  m = detail::WarpMax(m);
  float sum = 0.f;
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    x[e] = __expf(x[e] - m);
    sum += x[e];
  }
  const float inv = 1.f / detail::WarpSum(sum);
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) x[e] *= inv;
}

// acc[16 x D] += phi(K~)^T V over one 64-key block for the warp's rows
// m0..m0+15 of h (A = phi^T by transposed ldmatrix from the phi(K~) tile).
template <int D>
__device__ __forceinline__ void WarpAccumulatePhiTV(uint32_t phik_tile, uint32_t v_tile, int m0,
                                                    float (&acc)[D / 8][4]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int kk = 0; kk < kBlockK / 16; ++kk) {
    uint32_t a[4];
    detail::LdMatrixX4Trans(
        phik_tile + SwizzledOffset<2 * D>(kk * 16 + (lane & 7) + (lane >> 4) * 8,
                                          m0 / 8 + ((lane >> 3) & 1)),
        a[0], a[1], a[2], a[3]);
    detail::WarpAccumulatePV<D>(a, v_tile, kk * 16, acc);
  }
}

// h[rows m0.., all D columns] += acc (fp32 atomics; accumulator layout).
template <int D>
__device__ __forceinline__ void AtomicAddWarpRows(float* h, int m0, const float (&acc)[D / 8][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + 2 * t;
    atomicAdd(h + (m0 + g) * D + col, acc[nt][0]);
    atomicAdd(h + (m0 + g) * D + col + 1, acc[nt][1]);
    atomicAdd(h + (m0 + g + 8) * D + col, acc[nt][2]);
    atomicAdd(h + (m0 + g + 8) * D + col + 1, acc[nt][3]);
  }
}

// Per (batch*head, range of key blocks): h_j = phi(K~_j)^T V_j on tensor
// cores and z_j = colsum phi(K~_j), summed into H_tot / z_tot (fp32
// atomics) and stored per block (h_j as bf16) for the kept-block subtraction.
// The next block's K/V tiles load (cp.async, two buffers) while this one is
// transformed and multiplied. (Used where the Hopper kernels are not: the
// phi(K~) forms have their own one-pass kernel, sla2_linear_states_hopper.cu.)
template <int D>
__global__ void __launch_bounds__(D * 2) StatesKernel(const __nv_bfloat16* __restrict__ k,
                                                      const __nv_bfloat16* __restrict__ v,
                                                      Sla2Dims d, const float* __restrict__ ktotal,
                                                      int blocks_per_cta,
                                                      __nv_bfloat16* __restrict__ hblk,
                                                      float* __restrict__ zblk,
                                                      float* __restrict__ htot,
                                                      float* __restrict__ ztot) {
  constexpr int kWarps = D / 16;
  constexpr int kThreads = kWarps * 32;
  constexpr int kRowBytes = 2 * D;
  constexpr int kTile = kBlockK * kRowBytes;
  constexpr int kPerLane = D / 32;
  extern __shared__ __align__(128) uint8_t tiles[];  // 2 x (K tile, V tile)
  __shared__ float zb[D];
  const int64_t bh = blockIdx.y;
  const int b = static_cast<int>(bh / d.heads);
  const int h = static_cast<int>(bh % d.heads);
  const int j_begin = blockIdx.x * blocks_per_cta;
  const int j_end = min(d.k_blocks, j_begin + blocks_per_cta);
  if (j_begin >= j_end) return;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  const int c0 = lane * kPerLane;
  float mu[kPerLane], z[kPerLane];
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    mu[e] = KeyMean(ktotal, d, bh, c0 + e);  // the K total copies: see LaunchPool
    z[e] = 0.f;
  }
  float acc[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  const uint32_t base_s = detail::SmemAddr(tiles);
  auto valid_rows = [&](int j) {
    return static_cast<int>(MinI64(kBlockK, d.seq_len - static_cast<int64_t>(j) * kBlockK));
  };
  auto load = [&](int j, int buf) {
    const int64_t off = d.TokenOffset(b, static_cast<int64_t>(j) * kBlockK, h);
    const uint32_t dst = base_s + buf * 2 * kTile;
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        dst, reinterpret_cast<const char*>(k + off), d.stride_l * 2, valid_rows(j));
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        dst + kTile, reinterpret_cast<const char*>(v + off), d.stride_l * 2, valid_rows(j));
    detail::CpAsyncCommit();
  };

  load(j_begin, 0);
  for (int j = j_begin; j < j_end; ++j) {
    const int buf = (j - j_begin) & 1;
    uint8_t* const kt = tiles + buf * 2 * kTile;
    uint8_t* const vt = kt + kTile;
    const uint32_t kt_s = base_s + buf * 2 * kTile, vt_s = kt_s + kTile;
    const int nvalid = valid_rows(j);
    if (j + 1 < j_end) {
      load(j + 1, buf ^ 1);  // that buffer's last readers passed the previous iteration's barrier
      detail::CpAsyncWait<1>();
    } else {
      detail::CpAsyncWait<0>();
    }
    for (int c = threadIdx.x; c < D; c += kThreads) zb[c] = 0.f;
    __syncthreads();
    // phi(K~) rows in place (softmax over channels).
    float zrow[kPerLane];
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) zrow[e] = 0.f;
    for (int r = warp; r < kBlockK; r += kWarps) {
      uint8_t* ptr = kt + SwizzledOffset<kRowBytes>(r, c0 / 8) + (c0 % 8) * 2;
      float x[kPerLane];
      if (r < nvalid) {
#pragma unroll
        for (int e = 0; e < kPerLane; e += 2) {
          const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(ptr + 2 * e));
          x[e] = f.x - mu[e];
          x[e + 1] = f.y - mu[e + 1];
        }
        PhiRowInPlace(x);
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) zrow[e] += x[e];
      } else {
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) x[e] = 0.f;  // padded rows contribute nothing
      }
      uint32_t packed[kPerLane / 2];
#pragma unroll
      for (int e = 0; e < kPerLane; e += 2) packed[e / 2] = detail::PackBf16(x[e], x[e + 1]);
      if constexpr (kPerLane == 4) {
        *reinterpret_cast<uint2*>(ptr) = make_uint2(packed[0], packed[1]);
      } else {
        *reinterpret_cast<uint32_t*>(ptr) = packed[0];
      }
    }
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) {
      atomicAdd(&zb[c0 + e], zrow[e]);
      z[e] += zrow[e];
    }
    __syncthreads();
    const int64_t blk_idx = bh * d.k_blocks + j;
    for (int c = threadIdx.x; c < D; c += kThreads) zblk[blk_idx * D + c] = zb[c];
    // h_j = phi(K~)^T V (A = phi^T via transposed ldmatrix): stored, and added to H_tot.
    float blk[D / 8][4];
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) blk[nt][0] = blk[nt][1] = blk[nt][2] = blk[nt][3] = 0.f;
    const int m0 = warp * 16;
    WarpAccumulatePhiTV<D>(kt_s, vt_s, m0, blk);
    __syncthreads();
    {
      // Stage h_j as bf16 in the now free K/V tiles (rows 0..63 in kt, 64..
      // in vt, swizzled), then store it with coalesced 16-byte writes.
      auto hrow = [&](int row, int c8) {
        return (row < kBlockK ? kt : vt) + SwizzledOffset<kRowBytes>(row % kBlockK, c8);
      };
      const int g = lane >> 2, t = lane & 3;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        const int col = nt * 8 + 2 * t;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          *reinterpret_cast<uint32_t*>(hrow(m0 + g + half * 8, col / 8) + (col % 8) * 2) =
              detail::PackBf16(blk[nt][2 * half], blk[nt][2 * half + 1]);
          acc[nt][2 * half] += blk[nt][2 * half];
          acc[nt][2 * half + 1] += blk[nt][2 * half + 1];
        }
      }
      __syncthreads();
      uint4* hj = reinterpret_cast<uint4*>(hblk + blk_idx * D * D);
      for (int chunk = threadIdx.x; chunk < D * D / 8; chunk += kThreads) {
        hj[chunk] = *reinterpret_cast<const uint4*>(hrow(chunk / (D / 8), chunk % (D / 8)));
      }
      __syncthreads();  // the tiles are reloaded two iterations on
    }
  }
  AtomicAddWarpRows<D>(htot + bh * D * D, warp * 16, acc);
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) atomicAdd(ztot + bh * D + c0 + e, z[e]);
}

// Fused: z_i = z_tot - sum of the kept z_j per query tile, a warp per tile:
// the lanes load the tile's kept indices at once, then the kept z_j rows (D/32
// channels a lane) are all in flight together, so a tile costs three dependent
// L2 round trips (a thread per channel looping over the blocks took about six,
// 11 us at the 1.3B shape). And H_tot in bf16 for the Hopper kernel's TMA
// (query tile i rounds rows i, i + T_m, ...).
constexpr int kKeptZWarps = 4;
template <int D>
__global__ void __launch_bounds__(32 * kKeptZWarps)
    KeptZKernel(const float* __restrict__ zblk, const float* __restrict__ ztot,
                const int32_t* __restrict__ lut, const int32_t* __restrict__ counts,
                int64_t lut_capacity, Sla2Dims d, float* __restrict__ zi,
                const float* __restrict__ htot, __nv_bfloat16* __restrict__ htot16) {
  // The fused kernel after it may launch at once (it waits for this grid
  // before it reads anything; LaunchProgrammatic).
  detail::AllowDependentLaunch();
  constexpr int kPer = D / 32;  // channels per lane (4 at D = 128, 2 at D = 64)
  const int lane = threadIdx.x & 31;
  const int i = blockIdx.x * kKeptZWarps + threadIdx.x / 32;
  if (i >= d.q_blocks) return;  // uniform over the warp
  const int64_t bh = blockIdx.y;
  const int c0 = lane * kPer;
  for (int r = i; r < D; r += d.q_blocks) {
    const int64_t e = (bh * D + r) * D + c0;
#pragma unroll
    for (int u = 0; u < kPer; u += 2)
      *reinterpret_cast<__nv_bfloat162*>(htot16 + e + u) =
          __floats2bfloat162_rn(htot[e + u], htot[e + u + 1]);
  }
  const int64_t row = bh * d.q_blocks + i;
  const int cnt = counts[row];
  const int32_t* lut_row = lut + row * lut_capacity;
  const float* zb = zblk + bh * d.k_blocks * D + c0;
  float s[kPer] = {};
  constexpr int kChunk = 16;  // kept blocks in flight (all of them at keep 3 %)
  for (int n0 = 0; n0 < cnt; n0 += kChunk) {
    const int mine = lane < kChunk && n0 + lane < cnt ? lut_row[n0 + lane] : 0;
    const int m = min(kChunk, cnt - n0);
    float t[kChunk][kPer];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const int j = __shfl_sync(0xffffffffu, mine, u);
      const float* src = zb + static_cast<int64_t>(j) * D;
      if constexpr (kPer == 4) {
        const float4 v =
            u < m ? *reinterpret_cast<const float4*>(src) : make_float4(0.f, 0.f, 0.f, 0.f);
        t[u][0] = v.x, t[u][1] = v.y, t[u][2] = v.z, t[u][3] = v.w;
      } else {
        const float2 v = u < m ? *reinterpret_cast<const float2*>(src) : make_float2(0.f, 0.f);
        t[u][0] = v.x, t[u][1] = v.y;
      }
    }
#pragma unroll
    for (int u = 0; u < kChunk; ++u)
#pragma unroll
      for (int x = 0; x < kPer; ++x) s[x] += t[u][x];
  }
#pragma unroll
  for (int x = 0; x < kPer; ++x) zi[row * D + c0 + x] = ztot[bh * D + c0 + x] - s[x];
}

struct LinearArgs {
  const __nv_bfloat16* q;
  const __nv_bfloat16* hblk;  // [B,H,T_n,D,D] h_j (bf16)
  const float* zblk;          // [B,H,T_n,D] z_j
  const float* htot;          // [B,H,D,D]
  const float* ztot;          // [B,H,D]
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // [H, T_m]
  __nv_bfloat16* out;
  Sla2Dims d;
};

constexpr int kTileThreads = 256;  // 8 warps

// Per query tile: H_i = H_tot - sum_{j kept} h_j (bf16 H_i into shared
// memory, each thread 8 columns of some rows, all kept blocks' loads in
// flight), z_i = z_tot - sum_{j kept} z_j, then O_l = phi(Q) H_i / phi(Q) z_i
// on tensor cores.
template <int D>
__global__ void __launch_bounds__(kTileThreads, 2) LinearKernel(LinearArgs args) {
  constexpr int kRowBytes = 2 * D;
  constexpr int kPerLane = D / 32;
  constexpr int kChunks = D * D / 8 / kTileThreads;  // 8-column chunks of H_i per thread
  static_assert(kChunks * 8 * kTileThreads == D * D, "H_i chunks must tile D x D");
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float zloc[D], den_s[kBlockQ];
  const Sla2Dims& d = args.d;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int cnt = args.counts[bh * d.q_blocks + i];
  const int32_t* lut_row = args.lut + (bh * d.q_blocks + i) * args.lut_capacity;
  const float alpha = args.alpha[static_cast<int64_t>(h) * d.q_blocks + i];

  const uint32_t q_s = detail::SmemAddr(smem);
  const uint32_t stage_s = q_s + kBlockQ * kRowBytes;  // H_i [D][D] bf16
  const int q_valid = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  detail::LoadTileAsync<kBlockQ, kRowBytes, kTileThreads>(
      q_s, reinterpret_cast<const char*>(args.q + d.TokenOffset(b, row0, h)), d.stride_l * 2,
      q_valid);
  detail::CpAsyncCommit();

  // G = sum of the kept h_j, chunk c of this thread = row c / (D/8), columns 8 * (c % (D/8)).
  float gsum[kChunks][8];
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
#pragma unroll
    for (int e = 0; e < 8; ++e) gsum[c][e] = 0.f;
  const __nv_bfloat16* hbase = args.hblk + bh * d.k_blocks * D * D;
  for (int n = 0; n < cnt; ++n) {
    const uint4* hj = reinterpret_cast<const uint4*>(hbase + static_cast<int64_t>(lut_row[n]) * D * D);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const uint4 raw = __ldg(hj + c * kTileThreads + threadIdx.x);
      const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(p2[e]);
        gsum[c][2 * e] += f.x;
        gsum[c][2 * e + 1] += f.y;
      }
    }
  }
  // H_i = H_tot - G as bf16 [D][D] (swizzled rows, like a K tile); z_i = z_tot - sum z_j.
  const float* hsrc = args.htot + bh * D * D;
  uint8_t* hloc = smem + kBlockQ * kRowBytes;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int chunk = c * kTileThreads + threadIdx.x;
    const int row = chunk / (D / 8), c8 = chunk % (D / 8);
    const float4 h0 = *reinterpret_cast<const float4*>(hsrc + row * D + c8 * 8);
    const float4 h1 = *reinterpret_cast<const float4*>(hsrc + row * D + c8 * 8 + 4);
    const uint4 packed = make_uint4(detail::PackBf16(h0.x - gsum[c][0], h0.y - gsum[c][1]),
                                    detail::PackBf16(h0.z - gsum[c][2], h0.w - gsum[c][3]),
                                    detail::PackBf16(h1.x - gsum[c][4], h1.y - gsum[c][5]),
                                    detail::PackBf16(h1.z - gsum[c][6], h1.w - gsum[c][7]));
    *reinterpret_cast<uint4*>(hloc + SwizzledOffset<kRowBytes>(row, c8)) = packed;
  }
  const float* zbase = args.zblk + bh * d.k_blocks * D;
  for (int c = threadIdx.x; c < D; c += kTileThreads) {
    float zs = 0.f;
    for (int n = 0; n < cnt; ++n) zs += zbase[static_cast<int64_t>(lut_row[n]) * D + c];
    zloc[c] = args.ztot[bh * D + c] - zs;
  }
  detail::CpAsyncWait<0>();  // the Q tile
  __syncthreads();

  // phi(Q) in place (softmax over channels) and the denominators phi(Q) z_i.
  for (int r = warp * 16; r < warp * 16 + 16; ++r) {
    const int c0 = lane * kPerLane;
    uint8_t* ptr = smem + SwizzledOffset<kRowBytes>(r, c0 / 8) + (c0 % 8) * 2;
    float x[kPerLane];
#pragma unroll
    for (int e = 0; e < kPerLane; e += 2) {
      const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(ptr + 2 * e));
      x[e] = f.x;
      x[e + 1] = f.y;
    }
    PhiRowInPlace(x);
    float den = 0.f;
#pragma unroll
    for (int e = 0; e < kPerLane; e += 2) {
      den += x[e] * zloc[c0 + e] + x[e + 1] * zloc[c0 + e + 1];
      *reinterpret_cast<uint32_t*>(ptr + 2 * e) = detail::PackBf16(x[e], x[e + 1]);
    }
    den = detail::WarpSum(den);
    if (lane == 0) den_s[r] = den;
  }
  __syncthreads();

  // O_l numerator = phi(Q) H_i (H_i rows play the role of keys).
  float acc[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
    uint32_t a[4];
    detail::LoadAFrag<D>(q_s, warp * 16, kc, a);
    detail::WarpAccumulatePV<D>(a, stage_s, kc * 16, acc);
  }
  const bool all_kept = cnt >= d.k_blocks;
  const int r_lo = warp * 16 + g;
  const float den0 = den_s[r_lo], den1 = den_s[r_lo + 8];
  const float f0 = (!all_kept && den0 > 0.f) ? (1.f - alpha) / den0 : 0.f;
  const float f1 = (!all_kept && den1 > 0.f) ? (1.f - alpha) / den1 : 0.f;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int64_t row = row0 + r_lo + half * 8;
    if (row >= d.seq_len) continue;
    const float f = half ? f1 : f0;
    __nv_bfloat16* dst = args.out + d.TokenOffset(b, row, h);
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      *reinterpret_cast<__nv_bfloat162*>(dst + nt * 8 + 2 * t) =
          __floats2bfloat162_rn(acc[nt][2 * half] * f, acc[nt][2 * half + 1] * f);
    }
  }
}

// Part 1 (needs the prepare stage only): the per-key-block states, added
// into the zeroed H_tot / z_tot (the phi(K~) forms use
// LaunchLinearStatesHopper instead).
template <int D>
cudaError_t LaunchStatesD(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                          cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  int device = 0, sms = 132;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  constexpr int kStatesSmem = 2 * 2 * kBlockK * 2 * D;  // two buffers of K and V tiles
  // About four CTAs per SM; fewer CTAs mean fewer H_tot atomics.
  const int64_t target = 4LL * sms;
  const int per_cta = static_cast<int>(
      std::max<int64_t>(1, (bh * d.k_blocks + target - 1) / target));
  const dim3 sgrid((d.k_blocks + per_cta - 1) / per_cta, static_cast<unsigned>(bh));
  const cudaError_t e = cudaFuncSetAttribute(
      StatesKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kStatesSmem);
  if (e != cudaSuccess) return e;
  StatesKernel<D><<<sgrid, D * 2, kStatesSmem, s>>>(
      static_cast<const __nv_bfloat16*>(p.k), static_cast<const __nv_bfloat16*>(p.v), d, w.ktotal,
      per_cta, w.hblk, w.zblk, w.htot, w.ztot);
  return cudaGetLastError();
}

// Part 2 (needs the block lists and part 1): per query tile.
template <int D>
cudaError_t LaunchTilesD(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                         Sla2Workspace::Buffers& w, cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  if (w.linear_phik()) {
    const dim3 grid((d.q_blocks + kKeptZWarps - 1) / kKeptZWarps, static_cast<unsigned>(bh));
    KeptZKernel<D><<<grid, 32 * kKeptZWarps, 0, s>>>(w.zblk, w.ztot, w.lut, w.counts, cap, d,
                                                      w.zi, w.htot, w.htot16);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && w.linear_form == Sla2Workspace::Buffers::LinearForm::kHopperTiles)
      e = LaunchLinearTilesHopper(p, d, cap, w, s);
    return e;
  }
  LinearArgs a{static_cast<const __nv_bfloat16*>(p.q), w.hblk, w.zblk, w.htot, w.ztot, w.lut,
               w.counts, cap, p.alpha, static_cast<__nv_bfloat16*>(p.out), d};
  constexpr int kSmem = kBlockQ * 2 * D + D * 2 * D;  // Q tile + H_i
  const cudaError_t e =
      cudaFuncSetAttribute(LinearKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  LinearKernel<D><<<dim3(d.q_blocks, d.heads, d.batch), kTileThreads, kSmem, s>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchLinearStates(const Sla2Problem& p, const Sla2Dims& d,
                               Sla2Workspace::Buffers& w, cudaStream_t s, bool zeroed) {
  using F = Sla2Workspace::Buffers::LinearForm;
  w.linear_form = F::kNone;
  if (p.alpha == nullptr) return cudaSuccess;  // alpha = 1: no linear branch
  const bool phik = w.phik != nullptr;
  w.linear_form = phik && FusedLinearApplies(p)         ? F::kFused
                  : phik && LinearTilesHopperApplies(p) ? F::kHopperTiles
                                                        : F::kOwn;
  // Both forms add into H_tot and z_tot.
  if (!zeroed) {
    const int64_t bh = static_cast<int64_t>(d.batch) * d.heads, dim = d.head_dim;
    cudaError_t e = cudaMemsetAsync(w.htot, 0, bh * dim * dim * sizeof(float), s);
    if (e == cudaSuccess) e = cudaMemsetAsync(w.ztot, 0, bh * dim * sizeof(float), s);
    if (e != cudaSuccess) return e;
  }
  if (w.linear_phik()) return LaunchLinearStatesHopper(p, d, w, s);
  return d.head_dim == 64 ? LaunchStatesD<64>(p, d, w, s) : LaunchStatesD<128>(p, d, w, s);
}

cudaError_t LaunchLinearTiles(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                              Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (p.alpha == nullptr) return cudaSuccess;
  return d.head_dim == 64 ? LaunchTilesD<64>(p, d, cap, w, s)
                          : LaunchTilesD<128>(p, d, cap, w, s);
}

}  // namespace sparsevid::kernels::cuda
