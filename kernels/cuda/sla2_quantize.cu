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

// Loads a tile of kRows x D bf16 values (row r at src + r * stride; zeros
// past `valid`) into registers, in 16-byte chunks of 8 channels: thread
// threadIdx.x holds chunks threadIdx.x + e * kThreads. All loads are issued
// before any arithmetic that needs them.
template <int D, int kRows>
struct RowTile {
  static constexpr int kChunks = D / 8;
  static constexpr int kPer = kRows * kChunks / kThreads;
  static_assert(kRows * kChunks % kThreads == 0, "threads divide the tile");
  uint4 raw[kPer];
  __device__ void Load(const __nv_bfloat16* src, int64_t stride, int valid) {
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int idx = threadIdx.x + e * kThreads;
      const int r = idx / kChunks, c = (idx % kChunks) * 8;
      raw[e] = r < valid ? detail::LoadStream16(src + r * stride + c) : make_uint4(0, 0, 0, 0);
    }
  }
};

// Channel q (0..7) of a 16-byte chunk of 8 bf16 values, as float.
__device__ __forceinline__ float Bf16At(const uint4& raw, int q) {
  const uint32_t w = (&raw.x)[q / 2];
  return __uint_as_float(q % 2 ? (w & 0xffff0000u) : (w << 16));
}

// Quantises a loaded tile (minus shift[c] when given) into dst (row-major,
// D bytes per row, zeros past `valid`); returns the scale. The values are
// converted from the bf16 registers again for the rounding pass instead of
// being kept as floats (half the registers: more CTAs per SM in flight).
template <int D, int kRows>
__device__ float QuantizeRows(const RowTile<D, kRows>& tile, int valid, const float* shift,
                              int8_t* dst, float* red) {
  using T = RowTile<D, kRows>;
  auto value = [&](int e, int q, int r, int c) {
    const float x = Bf16At(tile.raw[e], q);
    return shift != nullptr && r < valid ? x - shift[c + q] : x;
  };
  float amax = 0.f;
#pragma unroll
  for (int e = 0; e < T::kPer; ++e) {
    const int idx = threadIdx.x + e * kThreads;
    const int r = idx / T::kChunks, c = (idx % T::kChunks) * 8;
#pragma unroll
    for (int q = 0; q < 8; ++q) amax = fmaxf(amax, fabsf(value(e, q, r, c)));
  }
  amax = BlockMax(amax, red);
  const float scale = amax > 0.f ? amax / 127.f : 1.f;
#pragma unroll
  for (int e = 0; e < T::kPer; ++e) {
    const int idx = threadIdx.x + e * kThreads;
    const int r = idx / T::kChunks, c = (idx % T::kChunks) * 8;
    uint32_t w[2] = {0u, 0u};
    if (r < valid) {
#pragma unroll
      for (int q = 0; q < 8; ++q)
        w[q / 4] |=
            static_cast<uint32_t>(static_cast<uint8_t>(QuantInt8(value(e, q, r, c), scale)))
            << (8 * (q % 4));
    }
    *reinterpret_cast<uint2*>(dst + r * D + c) = make_uint2(w[0], w[1]);
  }
  return scale;
}

// Q: one CTA per (query block, head, batch). Small CTAs whose loads all go
// out first keep many bytes in flight (one CTA doing a query block and then
// its two key blocks in turn ran at half the memory roofline).
template <int D>
__global__ void __launch_bounds__(kThreads) QuantizeQKernel(const __nv_bfloat16* __restrict__ q,
                                                            Sla2Dims d, int8_t* __restrict__ q8,
                                                            float* __restrict__ qscale) {
  __shared__ float red[kThreads / 32];
  const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
  const int64_t row0 = static_cast<int64_t>(i) * kBlockQ;
  const int valid = static_cast<int>(MinI64(kBlockQ, d.seq_len - row0));
  RowTile<D, kBlockQ> tile;
  tile.Load(q + d.TokenOffset(b, row0, h), d.stride_l, valid);
  const float sq =
      QuantizeRows(tile, valid, nullptr, q8 + (bh * d.q_blocks * kBlockQ + row0) * D, red);
  if (threadIdx.x == 0) qscale[bh * d.q_blocks + i] = sq;
}

// K~ and V: one CTA per (key block, head, batch), both tiles' loads first.
template <int D>
__global__ void __launch_bounds__(kThreads) QuantizeKVKernel(
    const __nv_bfloat16* __restrict__ k, const __nv_bfloat16* __restrict__ v, Sla2Dims d,
    const float* __restrict__ kmean, const float* __restrict__ vscale, int8_t* __restrict__ k8,
    float* __restrict__ kscale, uint8_t* __restrict__ vt8) {
  __shared__ float red[kThreads / 32];
  const int h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = static_cast<int64_t>(b) * d.heads + h;
  __shared__ float mu[D], sv[D];
  __shared__ float vtile[kBlockK][D + 1];
  const int j = blockIdx.x;
  const int64_t key0 = static_cast<int64_t>(j) * kBlockK;
  const int valid = static_cast<int>(MinI64(kBlockK, d.seq_len - key0));
  RowTile<D, kBlockK> kt, vt;
  kt.Load(k + d.TokenOffset(b, key0, h), d.stride_l, valid);
  vt.Load(v + d.TokenOffset(b, key0, h), d.stride_l, valid);
  for (int c = threadIdx.x; c < D; c += kThreads) {
    mu[c] = kmean[bh * D + c];
    sv[c] = vscale[bh * D + c];
  }
  __syncthreads();
  const float sk = QuantizeRows(kt, valid, mu, k8 + (bh * d.k_blocks * kBlockK + key0) * D, red);
  if (threadIdx.x == 0) kscale[bh * d.k_blocks + j] = sk;
  // V block -> shared (scaled, fp32), then written transposed in FP8.
  using VT = RowTile<D, kBlockK>;
#pragma unroll
  for (int e = 0; e < VT::kPer; ++e) {
    const int idx = threadIdx.x + e * kThreads;
    const int r = idx / VT::kChunks, c = (idx % VT::kChunks) * 8;
#pragma unroll
    for (int qq = 0; qq < 8; ++qq) vtile[r][c + qq] = Bf16At(vt.raw[e], qq) / sv[c + qq];
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
}

}  // namespace

cudaError_t LaunchQuantize(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                           cudaStream_t s) {
  if (!p.low_bit) return cudaSuccess;
  const dim3 qgrid(d.q_blocks, d.heads, d.batch), kgrid(d.k_blocks, d.heads, d.batch);
  const auto* q = static_cast<const __nv_bfloat16*>(p.q);
  const auto* k = static_cast<const __nv_bfloat16*>(p.k);
  const auto* v = static_cast<const __nv_bfloat16*>(p.v);
  if (d.head_dim == 64) {
    QuantizeQKernel<64><<<qgrid, kThreads, 0, s>>>(q, d, w.q8, w.qscale);
    QuantizeKVKernel<64><<<kgrid, kThreads, 0, s>>>(k, v, d, w.kmean, w.vscale, w.k8, w.kscale,
                                                     w.vt8);
  } else {
    QuantizeQKernel<128><<<qgrid, kThreads, 0, s>>>(q, d, w.q8, w.qscale);
    QuantizeKVKernel<128><<<kgrid, kThreads, 0, s>>>(k, v, d, w.kmean, w.vscale, w.k8,
                                                      w.kscale, w.vt8);
  }
  return cudaGetLastError();
}

}  // namespace sparsevid::kernels::cuda
