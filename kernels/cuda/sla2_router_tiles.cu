// Stage kRoute on tensor cores: the router's block scores for 32 query blocks
// a CTA by mma.sync in split bf16 (fp32-class accuracy), and the exact
// per-row top-k from the score keys held in registers: the few candidates
// above a cheap lower bound ranked against each other, or a bisection.
//
// The projections fold into one matrix on the query side:
//   proj_q(q) . proj_k(k) = q W_q^T W_k k^T = (q M) . k,  M = W_q^T W_k
// (M = W_q^T or W_k when only one is given), so the keys are the pooled K~
// as the prepare stage left them and no projected key is ever written.
// Every product is split as x = hi + lo (both bf16) and taken as
// hi*hi + hi*lo + lo*hi, which leaves a relative error near 2^-16 per
// product, well inside what the top-k tolerates from fp32 (the GPU test
// compares the lists with the CPU router's and accepts differences at
// near-ties only). Before this kernel the route took ~80 us at the 1.3B
// shape on the FP32 pipes and slowed the linear states beside it.
#include <algorithm>

#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_router_common.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using detail::MmaBf16;
using detail::PackBf16;

constexpr int kRows = 32;  // query blocks a CTA (two m16 tiles)
constexpr int kThreads = 256;  // half an SM's registers: the linear states run beside it
constexpr int kWarps = kThreads / 32;
constexpr int kChunkKeys = 32;  // key blocks a warp scores at a time (four n8 tiles)
constexpr int kCandidates = 128;  // a warp ranks up to this many keys of a row (else bisection)

// x -> (hi, lo) for the four k values a lane owns in one k16 step, as the
// bf16x2 pairs of an mma operand: {x0, x1} and {x2, x3}.
struct Split4 {
  uint32_t hi01, hi23, lo01, lo23;
};
__device__ __forceinline__ Split4 SplitBf16(float4 x) {
  Split4 s;
  s.hi01 = PackBf16(x.x, x.y);
  s.hi23 = PackBf16(x.z, x.w);
  s.lo01 = PackBf16(x.x - __uint_as_float(s.hi01 << 16), x.y - __uint_as_float(s.hi01 & 0xffff0000u));
  s.lo23 = PackBf16(x.z - __uint_as_float(s.hi23 << 16), x.w - __uint_as_float(s.hi23 & 0xffff0000u));
  return s;
}

// Channel order inside a k16 step. The m16n8k16 operands give lane t the k
// indices {2t, 2t+1, 2t+8, 2t+9}; we let those stand for the channels
// 4t .. 4t+3 (any permutation of a dot product's terms is the same sum), so
// a lane's four values of a row are one float4.
__device__ __forceinline__ int StepChannel(int step, int t) { return 16 * step + 4 * t; }

// The B fragments of M (bf16 hi, then lo) for every (k step, n8 tile, lane):
// frag[((part * steps + step) * (D / 8) + nt) * 32 + lane] = {b0, b1}.
// One CTA per (k step, n8 tile); its 8 warps split the sum over x of
// W_q[x][k] W_k[x][n] (one warp alone waited on its 128 loads: 9 us).
constexpr int kMatrixWarps = 8;
template <int D>
__global__ void __launch_bounds__(32 * kMatrixWarps) RouterMatrixKernel(
    const float* __restrict__ wq, const float* __restrict__ wk, uint2* __restrict__ frag) {
  constexpr int kSteps = D / 16, kTiles = D / 8, kSlice = D / kMatrixWarps;
  __shared__ float4 part[kMatrixWarps][32];
  const int step = blockIdx.x / kTiles, nt = blockIdx.x % kTiles;
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int n = 8 * nt + g, k0 = StepChannel(step, t);
  float4 m = make_float4(0.f, 0.f, 0.f, 0.f);
  if (wq != nullptr && wk != nullptr) {  // M[k][n] = sum_x W_q[x][k] W_k[x][n]
    float4 q4[kSlice];
    float kv[kSlice];
#pragma unroll
    for (int u = 0; u < kSlice; ++u) {
      const int x = warp * kSlice + u;
      q4[u] = *reinterpret_cast<const float4*>(wq + x * D + k0);
      kv[u] = wk[x * D + n];
    }
#pragma unroll
    for (int u = 0; u < kSlice; ++u) {
      m.x = fmaf(q4[u].x, kv[u], m.x);
      m.y = fmaf(q4[u].y, kv[u], m.y);
      m.z = fmaf(q4[u].z, kv[u], m.z);
      m.w = fmaf(q4[u].w, kv[u], m.w);
    }
  } else if (warp == 0 && wq != nullptr) {  // M = W_q^T
    m = *reinterpret_cast<const float4*>(wq + n * D + k0);
  } else if (warp == 0) {  // M = W_k
    m = make_float4(wk[k0 * D + n], wk[(k0 + 1) * D + n], wk[(k0 + 2) * D + n],
                    wk[(k0 + 3) * D + n]);
  }
  part[warp][lane] = m;
  __syncthreads();
  if (warp != 0) return;
  for (int w = 1; w < kMatrixWarps; ++w) {
    const float4 o = part[w][lane];
    m.x += o.x, m.y += o.y, m.z += o.z, m.w += o.w;
  }
  const Split4 s = SplitBf16(m);
  const int64_t at = (static_cast<int64_t>(step) * kTiles + nt) * 32 + lane;
  frag[at] = make_uint2(s.hi01, s.hi23);
  frag[static_cast<int64_t>(kSteps) * kTiles * 32 + at] = make_uint2(s.lo01, s.lo23);
}

// acc += a * b over one k16 step in split bf16 (small terms first).
__device__ __forceinline__ void MmaSplit(float (&acc)[4], const uint32_t (&a_hi)[4],
                                         const uint32_t (&a_lo)[4], const Split4& b) {
  MmaBf16(acc, a_lo, b.hi01, b.hi23);
  MmaBf16(acc, a_hi, b.lo01, b.lo23);
  MmaBf16(acc, a_hi, b.hi01, b.hi23);
}

// The A fragments (hi, lo) of rows 16*mt + {g, g + 8} of an fp32 [kRows][ld]
// tile in shared memory for k16 step `step`.
__device__ __forceinline__ void AFragments(const float* tile, int ld, int mt, int step, int lane,
                                           uint32_t (&hi)[4], uint32_t (&lo)[4]) {
  const int g = lane >> 2, t = lane & 3, c = StepChannel(step, t);
  const Split4 r0 = SplitBf16(*reinterpret_cast<const float4*>(tile + (16 * mt + g) * ld + c));
  const Split4 r1 = SplitBf16(*reinterpret_cast<const float4*>(tile + (16 * mt + g + 8) * ld + c));
  hi[0] = r0.hi01, hi[1] = r1.hi01, hi[2] = r0.hi23, hi[3] = r1.hi23;
  lo[0] = r0.lo01, lo[1] = r1.lo01, lo[2] = r0.lo23, lo[3] = r1.lo23;
}

// The keep-th largest (1 <= keep <= 32) of one key per lane: a bitonic sort
// across the warp, ascending by lane.
__device__ __forceinline__ uint32_t KthLargestOfLanes(uint32_t v, int keep) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 2; k <= 32; k <<= 1) {
#pragma unroll
    for (int j = k >> 1; j > 0; j >>= 1) {
      const uint32_t o = __shfl_xor_sync(0xffffffffu, v, j);
      v = (((lane & j) == 0) == ((lane & k) == 0)) ? min(v, o) : max(v, o);
    }
  }
  return __shfl_sync(0xffffffffu, v, 32 - keep);
}

// The keep-th largest key of a warp, bit by bit from the top: the largest x
// with at least `keep` keys >= x. count_ge(x) is the lane's count of keys >= x.
template <typename CountGe>
__device__ __forceinline__ uint32_t KthLargestByBisection(CountGe count_ge, int keep) {
  uint32_t kth = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t x = kth | (1u << bit);
    if (static_cast<int>(__reduce_add_sync(0xffffffffu, count_ge(x))) >= keep) kth = x;
  }
  return kth;
}

// Byte offset of the query rows / score keys after the A fragments.
__host__ __device__ __forceinline__ int SmemRowsOffset(int head_dim) {
  return 2 * (head_dim / 16) * 32 * 2 * 16;
}

// Row stride of the score tile in words: >= k_blocks and = 8 (mod 32), so
// the score stores of a warp (rows g, keys 2t and 2t + 1) spread over the
// banks: lanes of rows g and g + 4 share a bank, no more.
__host__ __device__ __forceinline__ int ScoreStride(int k_blocks) {
  return (k_blocks + 23) / 32 * 32 + 8;
}

// One CTA per (32 query blocks, batch*head); kPer >= k_blocks / 32 keys per
// lane are held in registers for the selection.
template <int D, int kPer>
__global__ void __launch_bounds__(kThreads, 2) RouteTileKernel(
    const float* __restrict__ qbar, const float* __restrict__ kbar,
    const uint2* __restrict__ mfrag, int q_blocks, int k_blocks, int keep, int64_t lut_capacity,
    int32_t* __restrict__ lut, int32_t* __restrict__ counts) {
  constexpr int kSteps = D / 16, kTiles = D / 8, kLd = D + 16;
  extern __shared__ __align__(16) uint8_t smem[];
  // [qs | qm] (fp32 query rows, then q M) are dead once afrag (the scores'
  // A fragments) is built, and the score keys overwrite them.
  // kLd = D + 16: the float4 reads of AFragments (rows g, channels 4t) hit
  // all 32 banks in each 8-lane phase.
  uint4* afrag = reinterpret_cast<uint4*>(smem);  // [2 mt][kSteps][hi, lo][32 lanes]
  float* qs = reinterpret_cast<float*>(smem + SmemRowsOffset(D));
  float* qm = qs + kRows * kLd;
  uint32_t* keys = reinterpret_cast<uint32_t*>(qs);  // [kRows][ScoreStride]
  const int stride = ScoreStride(k_blocks);
  const int64_t bh = blockIdx.y;
  const int i0 = blockIdx.x * kRows;
  const int nr = min(kRows, q_blocks - i0);
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

  // The CTA's pooled query rows (rows past the end are zeros).
  const float4* qsrc = reinterpret_cast<const float4*>(qbar + (bh * q_blocks + i0) * D);
  for (int idx = threadIdx.x; idx < kRows * D / 4; idx += kThreads) {
    const int r = idx / (D / 4), c4 = idx % (D / 4);
    reinterpret_cast<float4*>(qs + r * kLd)[c4] =
        r < nr ? qsrc[idx] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  __syncthreads();
  const float* qrows = qs;
  if (mfrag != nullptr) {  // qm = qs M, the warps splitting M's n8 tiles
    for (int nt = warp; nt < kTiles; nt += kWarps) {
      float acc[2][4] = {};
#pragma unroll
      for (int step = 0; step < kSteps; ++step) {
        const uint2 bh2 = mfrag[(step * kTiles + nt) * 32 + lane];
        const uint2 bl2 = mfrag[((kSteps + step) * kTiles + nt) * 32 + lane];
        const Split4 b{bh2.x, bh2.y, bl2.x, bl2.y};
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          uint32_t a_hi[4], a_lo[4];
          AFragments(qs, kLd, mt, step, lane, a_hi, a_lo);
          MmaSplit(acc[mt], a_hi, a_lo, b);
        }
      }
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        float* row0 = qm + (16 * mt + g) * kLd + 8 * nt + 2 * t;
        *reinterpret_cast<float2*>(row0) = make_float2(acc[mt][0], acc[mt][1]);
        *reinterpret_cast<float2*>(row0 + 8 * kLd) = make_float2(acc[mt][2], acc[mt][3]);
      }
    }
    __syncthreads();
    qrows = qm;
  }
  // The scores' A fragments, split once for the whole CTA.
  for (int idx = threadIdx.x; idx < 2 * kSteps * 32; idx += kThreads) {
    const int mt = idx / (kSteps * 32), step = (idx / 32) % kSteps, l = idx % 32;
    uint32_t hi[4], lo[4];
    AFragments(qrows, kLd, mt, step, l, hi, lo);
    afrag[(idx / 32) * 64 + l] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
    afrag[(idx / 32) * 64 + 32 + l] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
  }
  __syncthreads();

  // Scores: each warp takes chunks of 32 key blocks; the key rows come
  // straight from L2 as the B fragments (one float4 per lane, row and step).
  const float* kbase = kbar + bh * k_blocks * D;
  for (int base = warp * kChunkKeys; base < k_blocks; base += kWarps * kChunkKeys) {
    float acc[2][4][4] = {};
#pragma unroll 4
    for (int step = 0; step < kSteps; ++step) {
      float4 kv[4];
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int j = base + 8 * nt + g;
        kv[nt] = j < k_blocks
                     ? *reinterpret_cast<const float4*>(kbase + static_cast<int64_t>(j) * D +
                                                        StepChannel(step, t))
                     : make_float4(0.f, 0.f, 0.f, 0.f);
      }
      uint32_t a_hi[2][4], a_lo[2][4];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) {
        const uint4 h = afrag[(mt * kSteps + step) * 64 + lane];
        const uint4 l = afrag[(mt * kSteps + step) * 64 + 32 + lane];
        a_hi[mt][0] = h.x, a_hi[mt][1] = h.y, a_hi[mt][2] = h.z, a_hi[mt][3] = h.w;
        a_lo[mt][0] = l.x, a_lo[mt][1] = l.y, a_lo[mt][2] = l.z, a_lo[mt][3] = l.w;
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const Split4 b = SplitBf16(kv[nt]);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) MmaSplit(acc[mt][nt], a_hi[mt], a_lo[mt], b);
      }
    }
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int j = base + 8 * nt + 2 * t;  // k_blocks is not always even: store singly
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = 16 * mt + g + 8 * half;
          if (r >= nr) continue;
          uint32_t* dst = keys + r * stride + j;
          if (j < k_blocks) dst[0] = detail::OrderedKey(acc[mt][nt][2 * half]);
          if (j + 1 < k_blocks) dst[1] = detail::OrderedKey(acc[mt][nt][2 * half + 1]);
        }
      }
    }
  }
  __syncthreads();

  // Selection: a warp per row, the row's keys in registers (kPer a lane;
  // padding keys are 0). A lower bound t of the keep-th largest key comes
  // from the lanes' largest keys (keep <= 16) or their two largest (keep <=
  // 64; a tighter bound, fewer candidates): at least `keep` keys are >= t,
  // so the kept blocks are among the candidates >= t. Those (a few more
  // than keep, in index order, at most kCandidates) are ranked
  // against each other: kept iff fewer than keep beat them (a larger key, or
  // an equal one at a lower index). Rows with more candidates (many ties)
  // or a larger keep take the bisection over all their keys.
  uint32_t* cand_key = reinterpret_cast<uint32_t*>(smem + SmemRowsOffset(D)) +
                       (kRows * stride + warp * 2 * kCandidates);
  int32_t* cand_idx = reinterpret_cast<int32_t*>(cand_key + kCandidates);
  const uint32_t lower = (1u << lane) - 1u;
  const int per = (k_blocks + 31) / 32;  // groups of 8 keys past it are skipped
  for (int r = warp; r < nr; r += kWarps) {
    const uint32_t* row = keys + r * stride;
    int32_t* out = lut + (bh * q_blocks + i0 + r) * lut_capacity;
    uint32_t vals[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
      const int j = 32 * i + lane;
      vals[i] = j < k_blocks ? row[j] : 0u;
    }
    // The lane's count of its keys (index i, key u) with pred(i, u): four
    // partial counts keep the compare-and-add chains short.
    auto count_lane = [&](auto pred) {
      int c[4] = {0, 0, 0, 0};
#pragma unroll
      for (int g8 = 0; g8 < kPer; g8 += 8) {
        if (g8 < per) {
#pragma unroll
          for (int i = g8; i < g8 + 8; ++i) c[i & 3] += pred(i, vals[i]) ? 1 : 0;
        }
      }
      return static_cast<uint32_t>((c[0] + c[1]) + (c[2] + c[3]));
    };
    uint32_t v1 = 0, v2 = 0;  // the lane's largest two keys
#pragma unroll
    for (int g8 = 0; g8 < kPer; g8 += 8) {
      if (g8 < per) {
#pragma unroll
        for (int i = g8; i < g8 + 8; ++i) {
          v2 = max(v2, min(v1, vals[i]));
          v1 = max(v1, vals[i]);
        }
      }
    }
    int candidates = kCandidates + 1;
    uint32_t t = 0;
    if (keep <= 64) {
      t = keep <= 16 ? KthLargestOfLanes(v1, keep)
                     : KthLargestByBisection(
                           [&](uint32_t x) { return (v1 >= x ? 1u : 0u) + (v2 >= x ? 1u : 0u); },
                           keep);
      candidates = static_cast<int>(__reduce_add_sync(0xffffffffu, count_lane([&](int i, uint32_t u) {
        return u >= t && 32 * i + lane < k_blocks;
      })));
    }
    int written = 0;
    if (candidates <= kCandidates) {
      int at = 0;
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        if (i < per) {
          const int j = 32 * i + lane;
          const bool is_cand = vals[i] >= t && j < k_blocks;
          const uint32_t ballot = __ballot_sync(0xffffffffu, is_cand);
          if (is_cand) {
            cand_key[at + __popc(ballot & lower)] = vals[i];
            cand_idx[at + __popc(ballot & lower)] = j;
          }
          at += __popc(ballot);
        }
      }
      __syncwarp();
      for (int base = 0; base < candidates; base += 32) {
        const int slot = base + lane;
        const uint32_t u = slot < candidates ? cand_key[slot] : 0u;
        int beaten = 0;
        for (int e = 0; e < candidates; ++e) {
          const uint32_t o = cand_key[e];
          beaten += (o > u || (o == u && e < slot)) ? 1 : 0;
        }
        const bool kept = slot < candidates && beaten < keep;
        const uint32_t ballot = __ballot_sync(0xffffffffu, kept);
        if (kept) out[written + __popc(ballot & lower)] = cand_idx[slot];
        written += __popc(ballot);
      }
      __syncwarp();  // the next row reuses the candidate list
    } else {
      const uint32_t kth = KthLargestByBisection(
          [&](uint32_t x) { return count_lane([&](int, uint32_t u) { return u >= x; }); }, keep);
      const int above = static_cast<int>(__reduce_add_sync(
          0xffffffffu, count_lane([&](int, uint32_t u) { return u > kth; })));
      written = detail::WriteKeptBlocks(
          k_blocks, [&](int j) { return row[j]; }, kth, keep - above, out);
    }
    if (lane == 0) counts[bh * q_blocks + i0 + r] = written;
  }
}

size_t SmemBytes(int head_dim, int k_blocks) {
  // [A fragments | qs, qm | ...] and later [A fragments | keys | candidates].
  const size_t rows_bytes =
      std::max<size_t>(2 * kRows * (head_dim + 16) * 4,
                       (static_cast<size_t>(kRows) * ScoreStride(k_blocks) +
                        kWarps * 2 * kCandidates) * 4);
  return SmemRowsOffset(head_dim) + rows_bytes;
}

template <int D, int kPer>
cudaError_t LaunchTiles(const Sla2Dims& d, int keep, int64_t cap, Sla2Workspace::Buffers& w,
                        const uint2* mfrag, cudaStream_t s) {
  const size_t smem = SmemBytes(D, d.k_blocks);
  cudaError_t e = cudaFuncSetAttribute(RouteTileKernel<D, kPer>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid((d.q_blocks + kRows - 1) / kRows, d.batch * d.heads);
  RouteTileKernel<D, kPer><<<grid, kThreads, smem, s>>>(w.qbar, w.kbar, mfrag, d.q_blocks,
                                                        d.k_blocks, keep, cap, w.lut, w.counts);
  return cudaGetLastError();
}

template <int D>
cudaError_t LaunchForDim(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                         Sla2Workspace::Buffers& w, cudaStream_t s) {
  const uint2* mfrag = nullptr;
  if (p.proj_q != nullptr || p.proj_k != nullptr) {
    RouterMatrixKernel<D><<<(D / 16) * (D / 8), 32 * kMatrixWarps, 0, s>>>(p.proj_q, p.proj_k, w.route_m);
    mfrag = w.route_m;
  }
  const int keep = static_cast<int>(p.keep_count());
  return d.k_blocks <= 32 * 16 ? LaunchTiles<D, 16>(d, keep, cap, w, mfrag, s)
                               : LaunchTiles<D, kRouteTileMaxKeyBlocks / 32>(d, keep, cap, w,
                                                                              mfrag, s);
}

}  // namespace

size_t RouteTileSmemBytes(int head_dim, int k_blocks) { return SmemBytes(head_dim, k_blocks); }

size_t RouteTileMatrixBytes(int head_dim) {
  return 2 * static_cast<size_t>(head_dim / 16) * (head_dim / 8) * 32 * sizeof(uint2);
}

cudaError_t LaunchRouteTiles(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                             Sla2Workspace::Buffers& w, cudaStream_t s) {
  return d.head_dim == 64 ? LaunchForDim<64>(p, d, cap, w, s) : LaunchForDim<128>(p, d, cap, w, s);
}

}  // namespace sparsevid::kernels::cuda
