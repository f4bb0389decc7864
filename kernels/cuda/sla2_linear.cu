// Stage kLinear: the linear branch over the key blocks a query block did NOT
// keep, by pre-aggregation (conventions.md step 5, sla2.md §2.4):
//   H_i = H_tot - sum_{j kept} phi(K~_j)^T V_j,  z_i = z_tot - sum_{j kept} colsum phi(K~_j)
//   O_l = phi(Q_i) H_i / (phi(Q_i) z_i)
// H_tot, z_tot (all key blocks) come from StatesKernel; each query tile
// subtracts its kept blocks on tensor cores. The result is written as
// (1 - alpha) * O_l into out; kSparse adds alpha * O_s.
#include <algorithm>

#include "kernels/cuda/sla2_internal.cuh"
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

// Per (batch*head, range of key blocks): phi(K~) rows (stored for the
// correction), z_tot and H_tot partial sums on tensor cores, then atomics.
template <int D>
__global__ void __launch_bounds__(D * 2) StatesKernel(const __nv_bfloat16* __restrict__ k,
                                                      const __nv_bfloat16* __restrict__ v,
                                                      Sla2Dims d, const float* __restrict__ kmean,
                                                      int blocks_per_cta,
                                                      __nv_bfloat16* __restrict__ kphi,
                                                      float* __restrict__ htot,
                                                      float* __restrict__ ztot) {
  constexpr int kWarps = D / 16;
  constexpr int kThreads = kWarps * 32;
  constexpr int kRowBytes = 2 * D;
  constexpr int kPerLane = D / 32;
  __shared__ __align__(128) uint8_t kt[kBlockK * kRowBytes];
  __shared__ __align__(128) uint8_t vt[kBlockK * kRowBytes];
  const int64_t bh = blockIdx.y;
  const int b = static_cast<int>(bh / d.heads);
  const int h = static_cast<int>(bh % d.heads);
  const int j_begin = blockIdx.x * blocks_per_cta;
  const int j_end = min(d.k_blocks, j_begin + blocks_per_cta);
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  const int c0 = lane * kPerLane;
  float mu[kPerLane], z[kPerLane];
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) {
    mu[e] = kmean[bh * D + c0 + e];
    z[e] = 0.f;
  }
  float acc[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  const uint32_t kt_s = detail::SmemAddr(kt);
  const uint32_t vt_s = detail::SmemAddr(vt);

  for (int j = j_begin; j < j_end; ++j) {
    const int64_t key0 = static_cast<int64_t>(j) * kBlockK;
    const int nvalid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
    const int64_t off = d.TokenOffset(b, key0, h);
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        kt_s, reinterpret_cast<const char*>(k + off), d.stride_l * 2, nvalid);
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        vt_s, reinterpret_cast<const char*>(v + off), d.stride_l * 2, nvalid);
    detail::CpAsyncCommit();
    detail::CpAsyncWait<0>();
    __syncthreads();
    // phi(K~) rows in place (softmax over channels), also stored for LinearKernel.
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
        for (int e = 0; e < kPerLane; ++e) z[e] += x[e];
      } else {
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) x[e] = 0.f;  // padded rows contribute nothing
      }
      uint32_t packed[kPerLane / 2];
#pragma unroll
      for (int e = 0; e < kPerLane; e += 2) packed[e / 2] = detail::PackBf16(x[e], x[e + 1]);
      __nv_bfloat16* gdst = kphi + (bh * d.k_blocks * kBlockK + key0 + r) * D + c0;
      if constexpr (kPerLane == 4) {
        *reinterpret_cast<uint2*>(ptr) = make_uint2(packed[0], packed[1]);
        *reinterpret_cast<uint2*>(gdst) = make_uint2(packed[0], packed[1]);
      } else {
        *reinterpret_cast<uint32_t*>(ptr) = packed[0];
        *reinterpret_cast<uint32_t*>(gdst) = packed[0];
      }
    }
    __syncthreads();
    // acc[D x D] += phi(K~)^T V: A = phi^T via transposed ldmatrix.
    const int m0 = warp * 16;
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      uint32_t a[4];
      detail::LdMatrixX4Trans(
          kt_s + SwizzledOffset<kRowBytes>(kk * 16 + (lane & 7) + (lane >> 4) * 8,
                                           m0 / 8 + ((lane >> 3) & 1)),
          a[0], a[1], a[2], a[3]);
      detail::WarpAccumulatePV<D>(a, vt_s, kk * 16, acc);
    }
    __syncthreads();
  }
  const int g = lane >> 2, t = lane & 3;
  float* hb = htot + bh * D * D;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    const int col = nt * 8 + 2 * t;
    atomicAdd(hb + (warp * 16 + g) * D + col, acc[nt][0]);
    atomicAdd(hb + (warp * 16 + g) * D + col + 1, acc[nt][1]);
    atomicAdd(hb + (warp * 16 + g + 8) * D + col, acc[nt][2]);
    atomicAdd(hb + (warp * 16 + g + 8) * D + col + 1, acc[nt][3]);
  }
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) atomicAdd(ztot + bh * D + c0 + e, z[e]);
}

struct LinearArgs {
  const __nv_bfloat16* q;
  const __nv_bfloat16* kphi;
  const __nv_bfloat16* v;
  const float* htot;  // [B,H,D,D]
  const float* ztot;  // [B,H,D]
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // [H, T_m]
  __nv_bfloat16* out;
  Sla2Dims d;
};

constexpr int kTileThreads = 256;  // 8 warps

// Per query tile: G = sum_{j kept} phi(K~_j)^T V_j (D x D, tensor cores,
// the same transposed-A product as StatesKernel) and the kept column sums;
// then H_i = H_tot - G, z_i = z_tot - zsub, and O_l = phi(Q) H_i / phi(Q) z_i.
// One D x D product per kept block instead of two 128-row ones.
template <int D>
__global__ void __launch_bounds__(kTileThreads, 2) LinearKernel(LinearArgs args) {
  constexpr int kRowBytes = 2 * D;
  constexpr int kStageBytes = 2 * kBlockK * kRowBytes;  // phi(K~) tile + V tile
  constexpr int kPerLane = D / 32;
  // Each warp owns kMT 16-row tiles of G and kCols columns. At D = 128 a
  // 4 x 2 warp grid (two row tiles each) reads the V tile through ldmatrix
  // half as often as 8 x 1 (ncu: this loop is shared-memory bound).
  constexpr int kMT = D == 128 ? 2 : 1;
  constexpr int kRowWarps = D / (16 * kMT);   // warps along G's rows (channels)
  constexpr int kColSplit = 8 / kRowWarps;    // warps along G's columns
  constexpr int kCols = D / kColSplit;        // G columns per warp
  static_assert(D * kRowBytes <= kStageBytes, "H_i must fit one stage");
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float zsub[D], zloc[D], den_s[kBlockQ];
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
  const uint32_t stage_s = q_s + kBlockQ * kRowBytes;
  auto kphi_tile = [&](int st) { return stage_s + st * kStageBytes; };
  auto v_tile = [&](int st) { return stage_s + st * kStageBytes + kBlockK * kRowBytes; };
  const __nv_bfloat16* kphi_base = args.kphi + bh * d.k_blocks * kBlockK * D;
  auto load_block = [&](int n, int st) {
    const int64_t key0 = static_cast<int64_t>(lut_row[n]) * kBlockK;
    const int nvalid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
    detail::LoadTileAsync<kBlockK, kRowBytes, kTileThreads>(
        kphi_tile(st), reinterpret_cast<const char*>(kphi_base + key0 * D), kRowBytes, nvalid);
    detail::LoadTileAsync<kBlockK, kRowBytes, kTileThreads>(
        v_tile(st), reinterpret_cast<const char*>(args.v + d.TokenOffset(b, key0, h)),
        d.stride_l * 2, nvalid);
  };
  const int q_valid = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  detail::LoadTileAsync<kBlockQ, kRowBytes, kTileThreads>(
      q_s, reinterpret_cast<const char*>(args.q + d.TokenOffset(b, row0, h)), d.stride_l * 2,
      q_valid);
  if (cnt > 0) load_block(0, 0);
  detail::CpAsyncCommit();
  for (int c = threadIdx.x; c < D; c += kTileThreads) zsub[c] = 0.f;
  __syncthreads();

  // G rows (channels) m0.., columns n0.. of this warp.
  const int m0 = (warp % kRowWarps) * 16 * kMT;
  const int n0 = (warp / kRowWarps) * kCols;
  float gacc[kMT][kCols / 8][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kCols / 8; ++nt)
      gacc[mt][nt][0] = gacc[mt][nt][1] = gacc[mt][nt][2] = gacc[mt][nt][3] = 0.f;
  // Column sums of the kept phi(K~) tiles: thread -> (column, slice of rows).
  constexpr int kSlices = kTileThreads / D;
  const int zc = threadIdx.x % D, zr0 = (threadIdx.x / D) * (kBlockK / kSlices);
  float zpart = 0.f;
  for (int n = 0; n < cnt; ++n) {
    detail::CpAsyncWait<0>();
    __syncthreads();
    if (n + 1 < cnt) load_block(n + 1, (n + 1) & 1);
    detail::CpAsyncCommit();
    const uint32_t kt = kphi_tile(n & 1), vt = v_tile(n & 1);
#pragma unroll
    for (int kk = 0; kk < kBlockK / 16; ++kk) {
      uint32_t a[kMT][4];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        detail::LdMatrixX4Trans(
            kt + SwizzledOffset<kRowBytes>(kk * 16 + (lane & 7) + (lane >> 4) * 8,
                                           (m0 + mt * 16) / 8 + ((lane >> 3) & 1)),
            a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
      }
#pragma unroll
      for (int dp = 0; dp < kCols / 16; ++dp) {
        uint32_t b0, b1, b2, b3;
        detail::LdMatrixX4Trans(
            vt + SwizzledOffset<kRowBytes>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                           (n0 / 8) + dp * 2 + (lane >> 4)),
            b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          detail::MmaBf16(gacc[mt][2 * dp], a[mt], b0, b1);
          detail::MmaBf16(gacc[mt][2 * dp + 1], a[mt], b2, b3);
        }
      }
    }
    const uint8_t* kt_ptr = smem + kBlockQ * kRowBytes + (n & 1) * kStageBytes;
#pragma unroll 4
    for (int r = zr0; r < zr0 + kBlockK / kSlices; ++r) {
      zpart += __bfloat162float(*reinterpret_cast<const __nv_bfloat16*>(
          kt_ptr + SwizzledOffset<kRowBytes>(r, zc / 8) + (zc % 8) * 2));
    }
  }
  detail::CpAsyncWait<0>();  // the Q tile (also when no block is kept)
  atomicAdd(&zsub[zc], zpart);
  __syncthreads();  // all stages are free now

  // H_i = H_tot - G as bf16 [D][D] into stage 0; z_i = z_tot - zsub.
  const float* hsrc = args.htot + bh * D * D;
  uint8_t* hloc = smem + kBlockQ * kRowBytes;
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < kCols / 8; ++nt) {
      const int col = n0 + nt * 8 + 2 * t;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = m0 + mt * 16 + g + half * 8;
        const float2 hv = *reinterpret_cast<const float2*>(hsrc + row * D + col);
        *reinterpret_cast<uint32_t*>(hloc + SwizzledOffset<kRowBytes>(row, col / 8) + (col % 8) * 2) =
            detail::PackBf16(hv.x - gacc[mt][nt][2 * half], hv.y - gacc[mt][nt][2 * half + 1]);
      }
    }
  }
  for (int c = threadIdx.x; c < D; c += kTileThreads) zloc[c] = args.ztot[bh * D + c] - zsub[c];
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

template <int D>
cudaError_t LaunchLinearD(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                          Sla2Workspace::Buffers& w, cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  cudaError_t e = cudaMemsetAsync(w.htot, 0, bh * D * D * sizeof(float), s);
  if (e == cudaSuccess) e = cudaMemsetAsync(w.ztot, 0, bh * D * sizeof(float), s);
  if (e != cudaSuccess) return e;
  int device = 0, sms = 132;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  // About four CTAs per SM; fewer CTAs mean fewer H_tot atomics.
  const int64_t target = 4LL * sms;
  const int per_cta = static_cast<int>(
      std::max<int64_t>(1, (bh * d.k_blocks + target - 1) / target));
  const dim3 sgrid((d.k_blocks + per_cta - 1) / per_cta, static_cast<unsigned>(bh));
  StatesKernel<D><<<sgrid, D * 2, 0, s>>>(static_cast<const __nv_bfloat16*>(p.k),
                                          static_cast<const __nv_bfloat16*>(p.v), d, w.kmean,
                                          per_cta, w.kphi, w.htot, w.ztot);
  LinearArgs a{static_cast<const __nv_bfloat16*>(p.q), w.kphi,
               static_cast<const __nv_bfloat16*>(p.v), w.htot, w.ztot, w.lut, w.counts,
               cap, p.alpha, static_cast<__nv_bfloat16*>(p.out), d};
  constexpr int kSmem = kBlockQ * 2 * D + 2 * (2 * kBlockK * 2 * D);
  e = cudaFuncSetAttribute(LinearKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  LinearKernel<D><<<dim3(d.q_blocks, d.heads, d.batch), kTileThreads, kSmem, s>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchLinear(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                         Sla2Workspace::Buffers& w, cudaStream_t s) {
  if (p.alpha == nullptr) return cudaSuccess;  // alpha = 1: no linear branch
  return d.head_dim == 64 ? LaunchLinearD<64>(p, d, cap, w, s)
                          : LaunchLinearD<128>(p, d, cap, w, s);
}

}  // namespace sparsevid::kernels::cuda
