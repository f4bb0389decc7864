// Stage kSparse (low-bit): INT8 Q K~^T (exact int32 MMA, per-block scales),
// fp32 online softmax, P^ = fp8_e4m3(P * 448), FP8 P^ V^ with per-channel V
// scales, the running sum l over the unquantised P (conventions.md
// "Low-bit"). Each key block's P^V^ goes into a fresh fp32 accumulator that
// is added to O on the CUDA cores (two-level accumulation).
#include "kernels/cuda/sla2_epilogue.cuh"
#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using detail::SwizzledOffset;

struct LowBitArgs {
  const int8_t* q8;
  const float* qscale;
  const int8_t* k8;
  const float* kscale;
  const uint8_t* vt8;
  const float* vscale;
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;
  __nv_bfloat16* out;
  Sla2Dims d;
};

// A warp owns kMTiles x 16 query rows (see sla2_sparse_bf16.cu).
constexpr int kMTiles = 2;
constexpr int kWarps = 8 / kMTiles;
constexpr int kThreads = 32 * kWarps;

template <int D>
__global__ void __launch_bounds__(kThreads, 2) SparseLowBitKernel(LowBitArgs args) {
  constexpr int kQRowBytes = D;        // int8 Q / K rows
  constexpr int kVRowBytes = kBlockK;  // FP8 V^T rows: 64 keys
  constexpr int kKBytes = kBlockK * kQRowBytes;
  constexpr int kVBytes = D * kVRowBytes;
  constexpr int MT = kMTiles;
  extern __shared__ __align__(128) uint8_t smem[];
  const Sla2Dims& d = args.d;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wrow = warp * 16 * MT;
  const int cnt = args.counts[bh * d.q_blocks + i];
  const int32_t* lut_row = args.lut + (bh * d.q_blocks + i) * args.lut_capacity;

  const uint32_t q_s = detail::SmemAddr(smem);
  auto k_tile = [&](int s) { return q_s + kBlockQ * kQRowBytes + s * (kKBytes + kVBytes); };
  auto v_tile = [&](int s) { return k_tile(s) + kKBytes; };
  auto load_block = [&](int n, int s) {
    const int64_t j = lut_row[n];
    detail::LoadTileAsync<kBlockK, kQRowBytes, kThreads>(
        k_tile(s),
        reinterpret_cast<const char*>(args.k8 + (bh * d.k_blocks * kBlockK + j * kBlockK) * D),
        kQRowBytes, kBlockK);
    detail::LoadTileAsync<D, kVRowBytes, kThreads>(
        v_tile(s), reinterpret_cast<const char*>(args.vt8 + (bh * d.k_blocks + j) * kVBytes),
        kVRowBytes, D);
  };
  detail::LoadTileAsync<kBlockQ, kQRowBytes, kThreads>(
      q_s, reinterpret_cast<const char*>(args.q8 + (bh * d.q_blocks * kBlockQ + row0) * D),
      kQRowBytes, kBlockQ);
  if (cnt > 0) load_block(0, 0);
  detail::CpAsyncCommit();

  constexpr float kLog2e = 1.4426950408889634f;
  const float q_factor =
      args.qscale[bh * d.q_blocks + i] * rsqrtf(static_cast<float>(D)) * kLog2e;
  float m[MT][2], l[MT][2];
  float o[MT][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.f;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.f;
  }

  for (int n = 0; n < cnt; ++n) {
    detail::CpAsyncWait<0>();
    __syncthreads();
    if (n + 1 < cnt) load_block(n + 1, (n + 1) & 1);
    detail::CpAsyncCommit();
    const int64_t j = lut_row[n];
    // S = q k^T, exact in int32; each K fragment feeds both m-tiles.
    int si[MT][8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) si[mt][nt][0] = si[mt][nt][1] = si[mt][nt][2] = si[mt][nt][3] = 0;
#pragma unroll
    for (int kk = 0; kk < D / 32; ++kk) {
      uint32_t a[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        detail::LdMatrixX4(
            q_s + SwizzledOffset<kQRowBytes>(wrow + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                             kk * 2 + (lane >> 4)),
            a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
      }
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        uint32_t b0, b1, b2, b3;
        detail::LdMatrixX4(
            k_tile(n & 1) + SwizzledOffset<kQRowBytes>(np * 16 + (lane & 7) + (lane >> 4) * 8,
                                                       kk * 2 + ((lane >> 3) & 1)),
            b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          detail::MmaS8(si[mt][2 * np], a[mt], b0, b1);
          detail::MmaS8(si[mt][2 * np + 1], a[mt], b2, b3);
        }
      }
    }
    // S * s_q * s_k / sqrt(D) in the log2 domain, online softmax, then
    // P^ = fp8(P * 448) as A fragments of two k32 steps (Fp8KeyOfPosition).
    const float f = q_factor * args.kscale[bh * d.k_blocks + j];
    const int64_t key0 = j * kBlockK;
    const bool partial = key0 + kBlockK > d.seq_len;
    uint32_t pa[MT][2][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      float s[8][4];
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nt][e] = static_cast<float>(si[mt][nt][e]) * f;
      }
      if (partial) {
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          const int64_t key = key0 + nt * 8 + 2 * t;
          if (key >= d.seq_len) s[nt][0] = s[nt][2] = -INFINITY;
          if (key + 1 >= d.seq_len) s[nt][1] = s[nt][3] = -INFINITY;
        }
      }
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
        mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
      }
      const float mn0 = fmaxf(m[mt][0], detail::QuadMax(mx0));
      const float mn1 = fmaxf(m[mt][1], detail::QuadMax(mx1));
      const float r0 = exp2f(m[mt][0] - mn0), r1 = exp2f(m[mt][1] - mn1);
      m[mt][0] = mn0;
      m[mt][1] = mn1;
      l[mt][0] *= r0;
      l[mt][1] *= r1;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        o[mt][nt][0] *= r0;
        o[mt][nt][1] *= r0;
        o[mt][nt][2] *= r1;
        o[mt][nt][3] *= r1;
      }
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        s[nt][0] = exp2f(s[nt][0] - mn0);
        s[nt][1] = exp2f(s[nt][1] - mn0);
        s[nt][2] = exp2f(s[nt][2] - mn1);
        s[nt][3] = exp2f(s[nt][3] - mn1);
        l[mt][0] += s[nt][0] + s[nt][1];  // l from the unquantised P
        l[mt][1] += s[nt][2] + s[nt][3];
      }
#pragma unroll
      for (int kc = 0; kc < 2; ++kc) {
        const int n0 = 4 * kc;
        pa[mt][kc][0] = detail::PackE4m3x4(s[n0][0] * kFp8Max, s[n0][1] * kFp8Max,
                                           s[n0 + 1][0] * kFp8Max, s[n0 + 1][1] * kFp8Max);
        pa[mt][kc][1] = detail::PackE4m3x4(s[n0][2] * kFp8Max, s[n0][3] * kFp8Max,
                                           s[n0 + 1][2] * kFp8Max, s[n0 + 1][3] * kFp8Max);
        pa[mt][kc][2] = detail::PackE4m3x4(s[n0 + 2][0] * kFp8Max, s[n0 + 2][1] * kFp8Max,
                                           s[n0 + 3][0] * kFp8Max, s[n0 + 3][1] * kFp8Max);
        pa[mt][kc][3] = detail::PackE4m3x4(s[n0 + 2][2] * kFp8Max, s[n0 + 2][3] * kFp8Max,
                                           s[n0 + 3][2] * kFp8Max, s[n0 + 3][3] * kFp8Max);
      }
    }
    // Each block's P^ V^ goes into fresh accumulators, then into O (fp32).
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      float t0[MT][4], t1[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) t0[mt][e] = t1[mt][e] = 0.f;
#pragma unroll
      for (int kc = 0; kc < 2; ++kc) {
        uint32_t b0, b1, b2, b3;
        detail::LdMatrixX4(
            v_tile(n & 1) + SwizzledOffset<kVRowBytes>(dp * 16 + (lane & 7) + (lane >> 4) * 8,
                                                       kc * 2 + ((lane >> 3) & 1)),
            b0, b1, b2, b3);
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          detail::MmaE4m3(t0[mt], pa[mt][kc], b0, b1);
          detail::MmaE4m3(t1[mt], pa[mt][kc], b2, b3);
        }
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          o[mt][2 * dp][e] += t0[mt][e];
          o[mt][2 * dp + 1][e] += t1[mt][e];
        }
    }
  }

  const float alpha =
      args.alpha ? args.alpha[static_cast<int64_t>(h) * d.q_blocks + i] : 1.f;
  const float* sv = args.vscale + bh * D;
  __syncthreads();  // shared tiles are free: stage alpha * O_s there
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float lsum = detail::QuadSum(l[mt][half]);
      const float f = lsum > 0.f ? alpha / (kFp8Max * lsum) : 0.f;
      const int r = wrow + mt * 16 + g + half * 8;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt) {
        const int c = nt * 8 + 2 * t;
        detail::StageOut<D>(smem, r, c, o[mt][nt][2 * half] * sv[c] * f,
                            o[mt][nt][2 * half + 1] * sv[c + 1] * f);
      }
    }
  }
  __syncthreads();
  const int valid = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  detail::StoreOutRows<D, kThreads>(smem, args.out + d.TokenOffset(b, row0, h), d.stride_l,
                                    valid, args.alpha != nullptr);
}

template <int D>
cudaError_t Launch(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                   Sla2Workspace::Buffers& w, cudaStream_t s) {
  constexpr int kSmem = kBlockQ * D + 2 * (kBlockK * D + D * kBlockK);
  cudaError_t e = cudaFuncSetAttribute(SparseLowBitKernel<D>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  LowBitArgs a{w.q8,   w.qscale, w.k8,    w.kscale, w.vt8, w.vscale,
               w.lut,  w.counts, cap,     p.alpha,  static_cast<__nv_bfloat16*>(p.out), d};
  SparseLowBitKernel<D><<<dim3(d.q_blocks, d.heads, d.batch), kThreads, kSmem, s>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSparseLowBit(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                               Sla2Workspace::Buffers& w, cudaStream_t s) {
  return d.head_dim == 64 ? Launch<64>(p, d, cap, w, s) : Launch<128>(p, d, cap, w, s);
}

}  // namespace sparsevid::kernels::cuda
