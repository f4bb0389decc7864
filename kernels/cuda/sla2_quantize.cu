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
template <int D>
__device__ float QuantizeRows(const __nv_bfloat16* src, int64_t stride, int rows, int valid,
                              const float* shift, int8_t* dst, float* red) {
  float amax = 0.f;
  for (int idx = threadIdx.x; idx < valid * (D / 2); idx += kThreads) {
    const int r = idx / (D / 2), c = (idx % (D / 2)) * 2;
    const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + r * stride + c));
    const float x = shift ? f.x - shift[c] : f.x;
    const float y = shift ? f.y - shift[c + 1] : f.y;
    amax = fmaxf(amax, fmaxf(fabsf(x), fabsf(y)));
  }
  amax = BlockMax(amax, red);
  const float scale = amax > 0.f ? amax / 127.f : 1.f;
  for (int idx = threadIdx.x; idx < rows * (D / 2); idx += kThreads) {
    const int r = idx / (D / 2), c = (idx % (D / 2)) * 2;
    char2 out = make_char2(0, 0);
    if (r < valid) {
      const float2 f =
          __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(src + r * stride + c));
      const float x = shift ? f.x - shift[c] : f.x;
      const float y = shift ? f.y - shift[c + 1] : f.y;
      out = make_char2(QuantInt8(x, scale), QuantInt8(y, scale));
    }
    *reinterpret_cast<char2*>(dst + r * D + c) = out;
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
  const float sq = QuantizeRows<D>(q + d.TokenOffset(b, row0, h), d.stride_l, kBlockQ, q_valid,
                                   nullptr, q8 + (bh * d.q_blocks * kBlockQ + row0) * D, red);
  if (threadIdx.x == 0) qscale[bh * d.q_blocks + i] = sq;
  for (int sub = 0; sub < 2; ++sub) {
    const int j = 2 * i + sub;
    if (j >= d.k_blocks) break;
    const int64_t key0 = static_cast<int64_t>(j) * kBlockK;
    const int valid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
    const float sk = QuantizeRows<D>(k + d.TokenOffset(b, key0, h), d.stride_l, kBlockK, valid,
                                     mu, k8 + (bh * d.k_blocks * kBlockK + key0) * D, red);
    if (threadIdx.x == 0) kscale[bh * d.k_blocks + j] = sk;
    // V block -> shared (scaled, fp32), then written transposed in FP8.
    for (int idx = threadIdx.x; idx < kBlockK * (D / 2); idx += kThreads) {
      const int r = idx / (D / 2), c = (idx % (D / 2)) * 2;
      float2 f = make_float2(0.f, 0.f);
      if (r < valid) {
        f = __bfloat1622float2(
            *reinterpret_cast<const __nv_bfloat162*>(v + d.TokenOffset(b, key0 + r, h) + c));
      }
      vtile[r][c] = f.x / sv[c];
      vtile[r][c + 1] = f.y / sv[c + 1];
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
