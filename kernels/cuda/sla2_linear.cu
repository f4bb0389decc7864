// Stage kLinear: the linear branch over the key blocks a query block did NOT
// keep, by pre-aggregation (conventions.md step 5):
//   numerator   = phi(Q_i) H_tot - sum_{j kept} (phi(Q_i) phi(K~_j)^T) V_j
//   denominator = phi(Q_i) z_tot - sum_{j kept} rowsum(phi(Q_i) phi(K~_j)^T)
// H_tot = sum over all key blocks of phi(K~_j)^T V_j comes from StatesKernel;
// the kept-block correction reuses the tile machinery of the sparse kernel.
// The result is written as (1 - alpha) * O_l into out; kSparse adds alpha*O_s.
#include <algorithm>

#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using detail::SwizzledOffset;

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
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        vt_s, reinterpret_cast<const char*>(v + d.TokenOffset(b, key0, h)), d.stride_l * 2,
        nvalid);
    detail::CpAsyncCommit();
    for (int r = warp; r < kBlockK; r += kWarps) {
      float x[kPerLane];
      if (r < nvalid) {
        const __nv_bfloat16* src = k + d.TokenOffset(b, key0 + r, h) + c0;
#pragma unroll
        for (int e = 0; e < kPerLane; e += 2) {
          const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + e));
          x[e] = f.x - mu[e];
          x[e + 1] = f.y - mu[e + 1];
        }
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
        for (int e = 0; e < kPerLane; ++e) {
          x[e] *= inv;
          z[e] += x[e];
        }
      } else {
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) x[e] = 0.f;  // padded rows contribute nothing
      }
      uint32_t packed[kPerLane / 2];
#pragma unroll
      for (int e = 0; e < kPerLane; e += 2) packed[e / 2] = detail::PackBf16(x[e], x[e + 1]);
      uint8_t* dst = kt + SwizzledOffset<kRowBytes>(r, c0 / 8) + (c0 % 8) * 2;
      __nv_bfloat16* gdst = kphi + (bh * d.k_blocks * kBlockK + key0 + r) * D + c0;
      if constexpr (kPerLane == 4) {
        *reinterpret_cast<uint2*>(dst) = make_uint2(packed[0], packed[1]);
        *reinterpret_cast<uint2*>(gdst) = make_uint2(packed[0], packed[1]);
      } else {
        *reinterpret_cast<uint32_t*>(dst) = packed[0];
        *reinterpret_cast<uint32_t*>(gdst) = packed[0];
      }
    }
    detail::CpAsyncWait<0>();
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

__global__ void ToBf16Kernel(const float* __restrict__ x, __nv_bfloat16* __restrict__ y,
                             int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

struct LinearArgs {
  const __nv_bfloat16* q;
  const __nv_bfloat16* kphi;
  const __nv_bfloat16* v;
  const __nv_bfloat16* htot;  // [B,H,D,D] bf16
  const float* ztot;          // [B,H,D]
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // [H, T_m]
  __nv_bfloat16* out;
  Sla2Dims d;
};

constexpr int kTileThreads = 256;  // 8 warps x 16 query rows

template <int D>
__global__ void __launch_bounds__(kTileThreads, 2) LinearKernel(LinearArgs args) {
  constexpr int kRowBytes = 2 * D;
  constexpr int kStageBytes = 2 * kBlockK * kRowBytes;  // phi(K~) tile + V tile
  constexpr int kPerLane = D / 32;
  static_assert(D * kRowBytes <= kStageBytes, "H_tot must fit one stage");
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float den_full[kBlockQ];
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
  auto kphi_tile = [&](int s) { return stage_s + s * kStageBytes; };
  auto v_tile = [&](int s) { return stage_s + s * kStageBytes + kBlockK * kRowBytes; };
  const __nv_bfloat16* kphi_base = args.kphi + bh * d.k_blocks * kBlockK * D;
  auto load_block = [&](int n, int s) {
    const int j = lut_row[n];
    const int64_t key0 = static_cast<int64_t>(j) * kBlockK;
    const int nvalid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
    detail::LoadTileAsync<kBlockK, kRowBytes, kTileThreads>(
        kphi_tile(s), reinterpret_cast<const char*>(kphi_base + key0 * D), kRowBytes, nvalid);
    detail::LoadTileAsync<kBlockK, kRowBytes, kTileThreads>(
        v_tile(s), reinterpret_cast<const char*>(args.v + d.TokenOffset(b, key0, h)),
        d.stride_l * 2, nvalid);
  };
  // H_tot goes into stage 1 (D rows), the first kept block into stage 0.
  detail::LoadTileAsync<D, kRowBytes, kTileThreads>(
      kphi_tile(1), reinterpret_cast<const char*>(args.htot + bh * D * D), kRowBytes, D);
  detail::CpAsyncCommit();
  if (cnt > 0) load_block(0, 0);
  detail::CpAsyncCommit();

  // phi(Q) rows of this warp (softmax over channels), and phi(Q) . z_tot.
  float zt[kPerLane];
#pragma unroll
  for (int e = 0; e < kPerLane; ++e) zt[e] = args.ztot[bh * D + lane * kPerLane + e];
  for (int r = warp * 16; r < warp * 16 + 16; ++r) {
    float x[kPerLane];
    float den = 0.f;
    if (row0 + r < d.seq_len) {
      const __nv_bfloat16* src = args.q + d.TokenOffset(b, row0 + r, h) + lane * kPerLane;
#pragma unroll
      for (int e = 0; e < kPerLane; e += 2) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + e));
        x[e] = f.x;
        x[e + 1] = f.y;
      }
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
      for (int e = 0; e < kPerLane; ++e) {
        x[e] *= inv;
        den += x[e] * zt[e];
      }
      den = detail::WarpSum(den);
    } else {
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) x[e] = 0.f;
    }
    if (lane == 0) den_full[r] = den;
    const int c0 = lane * kPerLane;
    uint8_t* dst = smem + SwizzledOffset<kRowBytes>(r, c0 / 8) + (c0 % 8) * 2;
    if constexpr (kPerLane == 4) {
      *reinterpret_cast<uint2*>(dst) =
          make_uint2(detail::PackBf16(x[0], x[1]), detail::PackBf16(x[2], x[3]));
    } else {
      *reinterpret_cast<uint32_t*>(dst) = detail::PackBf16(x[0], x[1]);
    }
  }
  detail::CpAsyncWait<1>();
  __syncthreads();

  float acc[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  // acc = phi(Q) H_tot (H_tot rows play the role of keys).
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
    uint32_t a[4];
    detail::LoadAFrag<D>(q_s, warp * 16, kc, a);
    detail::WarpAccumulatePV<D>(a, kphi_tile(1), kc * 16, acc);
  }
  float dsub0 = 0.f, dsub1 = 0.f;
  for (int n = 0; n < cnt; ++n) {
    detail::CpAsyncWait<0>();
    __syncthreads();  // stage n ready; everyone is done with the other stage
    if (n + 1 < cnt) load_block(n + 1, (n + 1) & 1);
    detail::CpAsyncCommit();
    float s[8][4];
    detail::WarpABt<D>(q_s, warp * 16, kphi_tile(n & 1), s);
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      dsub0 += s[nt][0] + s[nt][1];
      dsub1 += s[nt][2] + s[nt][3];
    }
    uint32_t p[4][4];
    detail::AccToAFrags(s, -1.f, p);
    detail::WarpPV<D>(p, v_tile(n & 1), acc);
  }
  dsub0 = detail::QuadSum(dsub0);
  dsub1 = detail::QuadSum(dsub1);
  const bool all_kept = cnt >= d.k_blocks;
  const int r_lo = warp * 16 + g;
  const float den0 = den_full[r_lo] - dsub0;
  const float den1 = den_full[r_lo + 8] - dsub1;
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
  const int64_t n = bh * D * D;
  ToBf16Kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, s>>>(w.htot, w.htot_bf16, n);
  LinearArgs a{static_cast<const __nv_bfloat16*>(p.q), w.kphi,
               static_cast<const __nv_bfloat16*>(p.v), w.htot_bf16, w.ztot, w.lut, w.counts,
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
