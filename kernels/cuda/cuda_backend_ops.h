// Kernel launchers of CudaBackend, one group per .cu file. All pointers are
// device pointers; every launcher queues work on `s` and returns at once
// (callers check the launch with CheckLaunch). Sizes are element counts.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/tensor.h"

namespace sparsevid::kernels::cuda {

// Blocks for a grid-stride loop over n elements with 256 threads.
inline unsigned GridFor(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

// Grid-stride loop over [0, n) inside a kernel (device code only).
#define SV_GRID_LOOP(i, n)                                                     \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)

// cuda_elementwise.cu
// cudaSuccess when this binary holds kernel code the current device can run
// (the build targets one architecture, sm_90a; another GPU fails here, at
// start-up, instead of at the first launch).
cudaError_t ProbeKernelImage();
enum class UnaryOp { kGeluTanh, kSilu, kScale, kClamp };
void LaunchUnary(UnaryOp op, const float* x, float* y, int64_t n, float a, float b,
                 cudaStream_t s);
enum class BinaryOp { kAdd, kMul };
void LaunchBinary(BinaryOp op, const float* a, const float* b, float* y, int64_t n,
                  cudaStream_t s);
// y[r,i] = x[r,i] * (1 + scale[i]) + shift[i]
void LaunchModulate(const float* x, const float* shift, const float* scale, float* y,
                    int64_t rows, int64_t d, cudaStream_t s);
// x[r,i] += y[r,i] * gate[i] (gate null = 1)
void LaunchAddGated(float* x, const float* y, const float* gate, int64_t rows, int64_t d,
                    cudaStream_t s);
// y[r,i] = v[i] (row broadcast) or y[i*inner + j] = v[i] (channel broadcast).
void LaunchBroadcastRows(const float* v, float* y, int64_t rows, int64_t d, cudaStream_t s);
void LaunchBroadcastChannels(const float* v, float* y, int64_t channels, int64_t inner,
                             cudaStream_t s);

// cuda_norm.cu (gamma/beta null = absent)
void LaunchLayerNorm(const float* x, const float* gamma, const float* beta, float eps, float* y,
                     int64_t rows, int64_t d, cudaStream_t s);
void LaunchRmsNorm(const float* x, const float* gamma, float eps, float* y, int64_t rows,
                   int64_t d, cudaStream_t s);
// x [c, n]: y = x / max(||x[:, p]||, 1e-12) * sqrt(c) * gamma[c]
void LaunchChannelRmsNorm(const float* x, const float* gamma, float* y, int64_t c, int64_t n,
                          cudaStream_t s);

// cuda_softmax.cu: softmax over rows of length n; rows of `heads` groups of
// `rows` each. bias (optional) row (h, r) starts at bias + h*bias_h + r*bias_r.
// Rows whose entries are all -inf become 0.
void LaunchSoftmax(const float* x, float* y, int64_t heads, int64_t rows, int64_t n,
                   const float* bias, int64_t bias_h, int64_t bias_r, cudaStream_t s);

// cuda_layout.cu
void LaunchToF32(const void* src, DType dtype, float* dst, int64_t n, cudaStream_t s);
// f32 -> bf16 (round to nearest even) and back.
void LaunchF32ToBf16(const float* src, void* dst, int64_t n, cudaStream_t s);
void LaunchBf16ToF32(const void* src, float* dst, int64_t n, cudaStream_t s);
void LaunchF32ToF16(const float* src, void* dst, int64_t n, cudaStream_t s);
// Fills n elements of element_size bytes (1, 2 or 4) with the bit pattern.
void LaunchFillPattern(void* dst, int element_size, uint32_t pattern, int64_t n, cudaStream_t s);
constexpr int kMaxPermuteDims = 8;
struct PermuteDims {
  int ndim = 0;
  int64_t out_shape[kMaxPermuteDims] = {};
  int64_t in_stride[kMaxPermuteDims] = {};  // input stride (elements) of each output dim
};
void LaunchPermute(const void* src, void* dst, int element_size, const PermuteDims& dims,
                   int64_t n, cudaStream_t s);
// y[i, :] = table[ids[i], :] converted to f32.
void LaunchEmbedding(const void* table, DType dtype, const int32_t* ids, float* y, int64_t count,
                     int64_t d, cudaStream_t s);
// [planes, h, w] -> [planes, 2h, 2w]
void LaunchUpsampleNearest2x(const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                             cudaStream_t s);

// cuda_rope.cu: x [L, heads, d] in place, token n = (f*height + h)*width + w.
void LaunchRope3d(float* x, int64_t L, int64_t heads, int64_t d, int64_t height, int64_t width,
                  cudaStream_t s);

// cuda_conv3d.cu: column matrix of frames [t0, t0+tb) and output rows
// [r0, r0+rows): col[t][kk][r*Wo + ox], kk = ((c*kt + dt)*kh + dy)*kw + dx.
struct Im2ColShape {
  int64_t C, T, H, W, kt, kh, kw, pad_h, pad_w, Wo;
};
void LaunchIm2Col(const float* x, float* col, const Im2ColShape& sh, int64_t t0, int64_t tb,
                  int64_t r0, int64_t rows, cudaStream_t s);

// cuda_conv3d_direct.cu: y[O, To, Ho, Wo] = bias + w * x without a column
// matrix, for narrow layers with 3x3 or 1x1 spatial kernels
// (Conv3dDirectApplies); w f32 [O, C, kt, kh, kw], bias null or [O].
struct Conv3dDirectShape {
  int C, T, H, W, O, kt, pad_h, pad_w, To, Ho, Wo;
};
bool Conv3dDirectApplies(int64_t O, int64_t C, int64_t kh, int64_t kw, int64_t To, int64_t Ho,
                         int64_t Wo);
void LaunchConv3dDirect(const float* x, const float* w, const float* bias, float* y,
                        const Conv3dDirectShape& sh, int kh, int kw, cudaStream_t s);

}  // namespace sparsevid::kernels::cuda
