// Direct Conv3d for CudaBackend's narrow layers (the shipped VAE has 3-48
// channels): im2col + GEMM there writes and reads a column matrix 9-27x the
// input and runs cuBLAS on a GEMM only O rows tall. Here one block computes
// a 32 x 32 output tile of one frame for 8 output channels (4 where O is not
// a multiple of 8): per input channel and temporal tap it stages the
// (32 + kh - 1) x (32 + kw - 1) input patch and the channels' kh x kw weights
// in shared memory, and each thread accumulates 4 vertically adjacent pixels
// x those channels, so every input value read from shared memory feeds 8 (4)
// FMAs and every weight 4; the next patch is loaded into registers while the
// current one is consumed. Same sums as the GEMM path in another order (fp32
// throughout).
#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kTile = 32;       // output tile, pixels per side
constexpr int kRowsPerThread = 4;
constexpr int kThreadsConv = kTile * kTile / kRowsPerThread;  // 256

// Two blocks per SM: at three the 8-channel 3x3 variant spills its prefetch
// registers (measured: VAE 56 ms at two, 53-60 ms at three, 62-65 ms
// without the prefetch).
template <int KH, int KW, int kGroup>  // kGroup output channels per block
__global__ void __launch_bounds__(kThreadsConv, 2)
    Conv3dDirectKernel(const float* __restrict__ x, const float* __restrict__ w,
                       const float* __restrict__ bias, float* __restrict__ y, Conv3dDirectShape sh) {
  constexpr int kInH = kTile + KH - 1, kInW = kTile + KW - 1;
  constexpr int kInStride = kInW + 1;  // odd: the column walk hits distinct banks
  __shared__ float in_s[kInH * kInStride];
  __shared__ __align__(16) float w_s[KH * KW][kGroup];

  const int tiles_w = (sh.Wo + kTile - 1) / kTile;
  const int ox0 = (blockIdx.x % tiles_w) * kTile, oy0 = (blockIdx.x / tiles_w) * kTile;
  const int t = blockIdx.y, o0 = blockIdx.z * kGroup;
  const int tx = threadIdx.x % kTile, ty = (threadIdx.x / kTile) * kRowsPerThread;

  float acc[kRowsPerThread][kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    const float b0 = bias && o0 + g < sh.O ? bias[o0 + g] : 0.f;
#pragma unroll
    for (int p = 0; p < kRowsPerThread; ++p) acc[p][g] = b0;
  }

  // The next (channel, tap)'s patch and weight are loaded into registers
  // while the current one is consumed, so the loads' latency overlaps FMAs.
  constexpr int kPatch = kInH * kInW;
  constexpr int kLoads = (kPatch + kThreadsConv - 1) / kThreadsConv;
  const int64_t plane = int64_t{sh.H} * sh.W;
  float patch[kLoads];
  float weight = 0.f;
  auto load = [&](int c, int dt) {
    const float* xf = x + (int64_t{c} * sh.T + t + dt) * plane;
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int i = threadIdx.x + j * kThreadsConv;
      const int r = i / kInW, q = i % kInW;
      const int iy = oy0 - sh.pad_h + r, ix = ox0 - sh.pad_w + q;
      patch[j] = i < kPatch && iy >= 0 && iy < sh.H && ix >= 0 && ix < sh.W
                     ? xf[int64_t{iy} * sh.W + ix]
                     : 0.f;
    }
    if (threadIdx.x < KH * KW * kGroup) {
      const int k = threadIdx.x / kGroup, g = threadIdx.x % kGroup;
      weight = o0 + g < sh.O ? w[((int64_t{o0 + g} * sh.C + c) * sh.kt + dt) * (KH * KW) + k]
                             : 0.f;
    }
  };
  const int steps = sh.C * sh.kt;
  load(0, 0);
  for (int step = 0; step < steps; ++step) {
    __syncthreads();  // the previous patch is consumed
#pragma unroll
    for (int j = 0; j < kLoads; ++j) {
      const int i = threadIdx.x + j * kThreadsConv;
      if (i < kPatch) in_s[(i / kInW) * kInStride + i % kInW] = patch[j];
    }
    if (threadIdx.x < KH * KW * kGroup) w_s[threadIdx.x / kGroup][threadIdx.x % kGroup] = weight;
    __syncthreads();
    if (step + 1 < steps) load((step + 1) / sh.kt, (step + 1) % sh.kt);
#pragma unroll
    for (int dy = 0; dy < KH; ++dy) {
#pragma unroll
      for (int dx = 0; dx < KW; ++dx) {
        float wk[kGroup];
#pragma unroll
        for (int g4 = 0; g4 < kGroup; g4 += 4) {
          const float4 w4 = *reinterpret_cast<const float4*>(&w_s[dy * KW + dx][g4]);
          wk[g4] = w4.x, wk[g4 + 1] = w4.y, wk[g4 + 2] = w4.z, wk[g4 + 3] = w4.w;
        }
#pragma unroll
        for (int p = 0; p < kRowsPerThread; ++p) {
          const float v = in_s[(ty + p + dy) * kInStride + tx + dx];
#pragma unroll
          for (int g = 0; g < kGroup; ++g) acc[p][g] = fmaf(v, wk[g], acc[p][g]);
        }
      }
    }
  }

  const int ox = ox0 + tx;
  if (ox >= sh.Wo) return;
#pragma unroll
  for (int p = 0; p < kRowsPerThread; ++p) {
    const int oy = oy0 + ty + p;
    if (oy >= sh.Ho) break;
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      if (o0 + g < sh.O) {
        y[((int64_t{o0 + g} * sh.To + t) * sh.Ho + oy) * sh.Wo + ox] = acc[p][g];
      }
    }
  }
}

template <int KH, int KW>
void Launch(const float* x, const float* w, const float* bias, float* y,
            const Conv3dDirectShape& sh, cudaStream_t s) {
  const int tiles = ((sh.Wo + kTile - 1) / kTile) * ((sh.Ho + kTile - 1) / kTile);
  // Groups of 8 channels; of 4 where O is not a multiple of 8 (12- and
  // 3-channel layers would leave a third or more of a group idle).
  if (sh.O % 8 == 0) {
    Conv3dDirectKernel<KH, KW, 8>
        <<<dim3(tiles, sh.To, sh.O / 8), kThreadsConv, 0, s>>>(x, w, bias, y, sh);
  } else {
    Conv3dDirectKernel<KH, KW, 4>
        <<<dim3(tiles, sh.To, (sh.O + 3) / 4), kThreadsConv, 0, s>>>(x, w, bias, y, sh);
  }
}

}  // namespace

bool Conv3dDirectApplies(int64_t O, int64_t C, int64_t kh, int64_t kw, int64_t To, int64_t Ho,
                         int64_t Wo) {
  const bool kernel = (kh == 3 && kw == 3) || (kh == 1 && kw == 1);
  // Wide layers are GEMM-shaped: im2col + cuBLAS is the better fit there.
  return kernel && O <= 64 && C <= 64 && To <= 65535 && Ho < (int64_t{1} << 20) &&
         Wo < (int64_t{1} << 20);
}

void LaunchConv3dDirect(const float* x, const float* w, const float* bias, float* y,
                        const Conv3dDirectShape& sh, int kh, int kw, cudaStream_t s) {
  if (sh.To <= 0 || sh.Ho <= 0 || sh.Wo <= 0 || sh.O <= 0) return;
  if (kh == 3 && kw == 3) {
    Launch<3, 3>(x, w, bias, y, sh, s);
  } else {
    Launch<1, 1>(x, w, bias, y, sh, s);
  }
}

}  // namespace sparsevid::kernels::cuda
