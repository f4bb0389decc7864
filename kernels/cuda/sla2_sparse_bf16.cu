// Stage kSparse (bf16): FlashAttention-style online softmax over the kept
// key blocks only, mma.sync tensor cores, cp.async double buffering, and the
// alpha blend in the epilogue. One CTA = one 128-row query block of one head
// (4 warps x 32 rows);
// blockIdx.x runs over query blocks first so resident CTAs share one head's
// K/V in L2.
#include "kernels/cuda/sla2_epilogue.cuh"
#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_warp_tiles.cuh"

namespace sparsevid::kernels::cuda {
namespace {

struct SparseArgs {
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  const int32_t* lut;
  const int32_t* counts;
  int64_t lut_capacity;
  const float* alpha;  // null: alpha = 1 and out holds no linear part
  __nv_bfloat16* out;
  Sla2Dims d;
};

// A warp owns kMTiles x 16 query rows: 2 (4 warps) halves the shared-memory
// reads of K/V per MMA against 1 (8 warps), at twice the registers per thread.
constexpr int kMTiles = 2;
constexpr int kWarps = 8 / kMTiles;
constexpr int kThreads = 32 * kWarps;

template <int D>
__global__ void __launch_bounds__(kThreads, 2) SparseBf16Kernel(SparseArgs args) {
  constexpr int kRowBytes = 2 * D;
  constexpr int kTileBytes = kBlockK * kRowBytes;
  constexpr int MT = kMTiles;
  extern __shared__ __align__(128) uint8_t smem[];
  const Sla2Dims& d = args.d;
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  const int wrow = warp * 16 * MT;  // first tile row of this warp
  const int cnt = args.counts[bh * d.q_blocks + i];
  const int32_t* lut_row = args.lut + (bh * d.q_blocks + i) * args.lut_capacity;

  const uint32_t q_s = detail::SmemAddr(smem);
  auto k_tile = [&](int s) { return q_s + kBlockQ * kRowBytes + s * 2 * kTileBytes; };
  auto v_tile = [&](int s) { return k_tile(s) + kTileBytes; };
  auto load_block = [&](int n, int s) {
    const int64_t key0 = static_cast<int64_t>(lut_row[n]) * kBlockK;
    const int nvalid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
    const int64_t off = d.TokenOffset(b, key0, h);
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        k_tile(s), reinterpret_cast<const char*>(args.k + off), d.stride_l * 2, nvalid);
    detail::LoadTileAsync<kBlockK, kRowBytes, kThreads>(
        v_tile(s), reinterpret_cast<const char*>(args.v + off), d.stride_l * 2, nvalid);
  };
  const int q_valid = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  detail::LoadTileAsync<kBlockQ, kRowBytes, kThreads>(
      q_s, reinterpret_cast<const char*>(args.q + d.TokenOffset(b, row0, h)), d.stride_l * 2,
      q_valid);
  if (cnt > 0) load_block(0, 0);
  detail::CpAsyncCommit();

  // Scores in the log2 domain: exp(x/sqrt(D)) = exp2(x * log2(e)/sqrt(D)).
  const float scale_log2 = 1.4426950408889634f * rsqrtf(static_cast<float>(D));
  // Row state per m-tile: [mt][0] = row g, [mt][1] = row g + 8.
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
    __syncthreads();  // stage n ready; all warps are done with the other stage
    if (n + 1 < cnt) load_block(n + 1, (n + 1) & 1);
    detail::CpAsyncCommit();
    float s[MT][8][4];
    detail::WarpABtMulti<D, MT>(q_s, wrow, k_tile(n & 1), s);
    const int64_t key0 = static_cast<int64_t>(lut_row[n]) * kBlockK;
    const bool partial = key0 + kBlockK > d.seq_len;  // mask keys >= L
    uint32_t p[MT][4][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      if (partial) {
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          const int64_t key = key0 + nt * 8 + 2 * t;
          if (key >= d.seq_len) s[mt][nt][0] = s[mt][nt][2] = -INFINITY;
          if (key + 1 >= d.seq_len) s[mt][nt][1] = s[mt][nt][3] = -INFINITY;
        }
      }
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        mx0 = fmaxf(mx0, fmaxf(s[mt][nt][0], s[mt][nt][1]));
        mx1 = fmaxf(mx1, fmaxf(s[mt][nt][2], s[mt][nt][3]));
      }
      // Every kept block has a valid key, so the new maxima are finite.
      const float mn0 = fmaxf(m[mt][0], detail::QuadMax(mx0) * scale_log2);
      const float mn1 = fmaxf(m[mt][1], detail::QuadMax(mx1) * scale_log2);
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
        s[mt][nt][0] = exp2f(fmaf(s[mt][nt][0], scale_log2, -mn0));
        s[mt][nt][1] = exp2f(fmaf(s[mt][nt][1], scale_log2, -mn0));
        s[mt][nt][2] = exp2f(fmaf(s[mt][nt][2], scale_log2, -mn1));
        s[mt][nt][3] = exp2f(fmaf(s[mt][nt][3], scale_log2, -mn1));
        l[mt][0] += s[mt][nt][0] + s[mt][nt][1];
        l[mt][1] += s[mt][nt][2] + s[mt][nt][3];
      }
      detail::AccToAFrags(s[mt], 1.f, p[mt]);
    }
    detail::WarpPVMulti<D, MT>(p, v_tile(n & 1), o);
  }

  const float alpha =
      args.alpha ? args.alpha[static_cast<int64_t>(h) * d.q_blocks + i] : 1.f;
  __syncthreads();  // shared tiles are free: stage alpha * O_s there
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const float lsum = detail::QuadSum(l[mt][half]);
      const float f = lsum > 0.f ? alpha / lsum : 0.f;  // no kept block: O_s = 0
      const int r = wrow + mt * 16 + g + half * 8;
#pragma unroll
      for (int nt = 0; nt < D / 8; ++nt)
        detail::StageOut<D>(smem, r, nt * 8 + 2 * t, o[mt][nt][2 * half] * f,
                            o[mt][nt][2 * half + 1] * f);
    }
  }
  __syncthreads();
  // out holds (1 - alpha) O_l from kLinear when alpha is given.
  detail::StoreOutRows<D, kThreads>(smem, args.out + d.TokenOffset(b, row0, h), d.stride_l,
                                    q_valid, args.alpha != nullptr);
}

template <int D>
cudaError_t Launch(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                   Sla2Workspace::Buffers& w, cudaStream_t s) {
  constexpr int kSmem = kBlockQ * 2 * D + 2 * 2 * kBlockK * 2 * D;
  cudaError_t e =
      cudaFuncSetAttribute(SparseBf16Kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  SparseArgs a{static_cast<const __nv_bfloat16*>(p.q), static_cast<const __nv_bfloat16*>(p.k),
               static_cast<const __nv_bfloat16*>(p.v), w.lut, w.counts, cap, p.alpha,
               static_cast<__nv_bfloat16*>(p.out), d};
  SparseBf16Kernel<D><<<dim3(d.q_blocks, d.heads, d.batch), kThreads, kSmem, s>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchSparseBf16(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                             Sla2Workspace::Buffers& w, cudaStream_t s) {
  return d.head_dim == 64 ? Launch<64>(p, d, cap, w, s) : Launch<128>(p, d, cap, w, s);
}

}  // namespace sparsevid::kernels::cuda
