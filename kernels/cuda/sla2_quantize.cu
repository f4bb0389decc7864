// Stage kQuantize (low-bit only), numerics of conventions.md "Low-bit":
//   Q  -> INT8 per (head, 128-row block), K~ = K - mu -> INT8 per (head,
//   64-row block): s = amax/127 (1 if amax = 0), round half away from zero,
//   clamp +-127; V -> FP8 E4M3 per (head, channel) with s_v from kPrepare.
// V^T is stored per key block as [D][64] bytes with the keys of each 32-key
// chunk in Fp8KeyOfPosition order, the operand layout of the FP8 P V MMA.
#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float BlockMax(float v, float* red) {
  v = detail::WarpMax(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float m = red[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, red[w]);
  __syncthreads();  // red is reused by the next call
  return m;
}

__device__ __forceinline__ int8_t QuantInt8(float x, float scale) {
  const float r = roundf(x / scale);  // roundf: half away from zero
  return static_cast<int8_t>(fminf(fmaxf(r, -127.f), 127.f));
}

// Quantises `rows` x D values (row r at src + r * stride, minus shift[c])
// into dst (row-major, D bytes per row, zeros past `valid`); returns scale.
// Each thread holds its chunks of 8 channels (16-byte loads) in registers
// between the amax and the rounding pass, so the source is read once.
template <int D, int kRows>
__device__ float QuantizeRows(const __nv_bfloat16* src, int64_t stride, int valid,
                              const float* shift, int8_t* dst, float* red) {
  constexpr int kChunks = D / 8;
  constexpr int kPer = kRows * kChunks / kThreads;
  static_assert(kRows * kChunks % kThreads == 0, "threads divide the tile");
  uint4 raw[kPer];  // all loads issued before any arithmetic
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int idx = threadIdx.x + e * kThreads;
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    raw[e] = r < valid ? detail::LoadStream16(src + r * stride + c) : make_uint4(0, 0, 0, 0);
  }
  float x[kPer][8];
  float amax = 0.f;
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int idx = threadIdx.x + e * kThreads;
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw[e]);
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float2 f = __bfloat1622float2(h2[q]);
      x[e][2 * q] = f.x;
      x[e][2 * q + 1] = f.y;
    }
    if (shift != nullptr && r < valid) {
#pragma unroll
      for (int q = 0; q < 8; ++q) x[e][q] -= shift[c + q];
    }
#pragma unroll
    for (int q = 0; q < 8; ++q) amax = fmaxf(amax, fabsf(x[e][q]));
  }
  amax = BlockMax(amax, red);
  const float scale = amax > 0.f ? amax / 127.f : 1.f;
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int idx = threadIdx.x + e * kThreads;
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    uint32_t w[2] = {0u, 0u};
    if (r < valid) {
#pragma unroll
      for (int q = 0; q < 8; ++q)
        w[q / 4] |= static_cast<uint32_t>(static_cast<uint8_t>(QuantInt8(x[e][q], scale)))
                    << (8 * (q % 4));
    }
    *reinterpret_cast<uint2*>(dst + r * D + c) = make_uint2(w[0], w[1]);
  }
  return scale;
}

// One CTA per (query block i, head, batch): Q block i, key blocks 2i, 2i+1.
template <int D>
__global__ void __launch_bounds__(kThreads) QuantizeKernel(
    const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ k,
    const __nv_bfloat16* __restrict__ v, Sla2Dims d, const float* __restrict__ kmean,
    const float* __restrict__ vscale, int8_t* __restrict__ q8, float* __restrict__ qscale,
    int8_t* __restrict__ k8, float* __restrict__ kscale, uint8_t* __restrict__ vt8) {
  __shared__ float red[kThreads / 32];
  __shared__ float mu[D], sv[D];
  __shared__ float vtile[kBlockK][D + 1];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
  for (int c = threadIdx.x; c < D; c += kThreads) {
    mu[c] = kmean[bh * D + c];
    sv[c] = vscale[bh * D + c];
  }
  __syncthreads();
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int q_valid = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  const float sq = QuantizeRows<D, kBlockQ>(q + d.TokenOffset(b, row0, h), d.stride_l, q_valid,
                                            nullptr, q8 + (bh * d.q_blocks * kBlockQ + row0) * D,
                                            red);
  if (threadIdx.x == 0) qscale[bh * d.q_blocks + i] = sq;
  for (int sub = 0; sub < 2; ++sub) {
    const int j = 2 * i + sub;
    if (j >= d.k_blocks) break;
    const int64_t key0 = static_cast<int64_t>(j) * kBlockK;
    const int valid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
    const float sk = QuantizeRows<D, kBlockK>(k + d.TokenOffset(b, key0, h), d.stride_l, valid,
                                              mu, k8 + (bh * d.k_blocks * kBlockK + key0) * D,
                                              red);
    if (threadIdx.x == 0) kscale[bh * d.k_blocks + j] = sk;
    // V block -> shared (scaled, fp32), then written transposed in FP8.
    for (int idx = threadIdx.x; idx < kBlockK * (D / 8); idx += kThreads) {
      const int r = idx / (D / 8), c = (idx % (D / 8)) * 8;
      const uint4 raw = r < valid ? detail::LoadStream16(v + d.TokenOffset(b, key0 + r, h) + c)
                                  : make_uint4(0, 0, 0, 0);
      const __nv_bfloat162* h2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 f = __bfloat1622float2(h2[q]);
        vtile[r][c + 2 * q] = f.x / sv[c + 2 * q];
        vtile[r][c + 2 * q + 1] = f.y / sv[c + 2 * q + 1];
      }
    }
    __syncthreads();
    uint8_t* vdst = vt8 + (bh * d.k_blocks + j) * D * kBlockK;
    for (int idx = threadIdx.x; idx < D * (kBlockK / 4); idx += kThreads) {
      const int c = idx / (kBlockK / 4);
      const int p0 = (idx % (kBlockK / 4)) * 4;  // 4 consecutive positions
      const int chunk = p0 / 32 * 32;
      float x[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) x[e] = vtile[chunk + detail::Fp8KeyOfPosition(p0 % 32 + e)][c];
      *reinterpret_cast<uint32_t*>(vdst + c * kBlockK + p0) =
          detail::PackE4m3x4(x[0], x[1], x[2], x[3]);
    }
    __syncthreads();
  }
}

}  // namespace

cudaError_t LaunchQuantize(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                           cudaStream_t s) {
  if (!p.low_bit) return cudaSuccess;
  const dim3 grid(d.q_blocks, d.heads, d.batch);
  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const auto* v = static_cast<const __nv_bfloat16*>(p.v);
  if (d.head_dim == 64) {
    QuantizeKernel<64><<<grid, kThreads, 0, s>>>(q, k, v, d, w.kmean, w.vscale, w.q8, w.qscale,
                                                 w.k8, w.kscale, w.vt8);
  } else {
    QuantizeKernel<128><<<grid, kThreads, 0, s>>>(q, k, v, d, w.kmean, w.vscale, w.q8,
                                                  w.qscale, w.k8, w.kscale, w.vt8);
  }
  return cudaGetLastError();
}

}  // namespace sparsevid::kernels::cuda
