// Data movement and conversion kernels of CudaBackend: dtype conversion,
// fill, permute, embedding gather, nearest 2x upsampling.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_backend_ops.h"

namespace sparsevid::kernels::cuda {
namespace {

template <typename T>
__device__ float AsF32(T v) {
  return static_cast<float>(v);
}
template <>
__device__ float AsF32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <>
__device__ float AsF32(__half v) {
  return __half2float(v);
}

template <typename T>
__global__ void ToF32Kernel(const T* src, float* dst, int64_t n) {
  SV_GRID_LOOP(i, n) dst[i] = AsF32(src[i]);
}

__global__ void F32ToBf16Kernel(const float* src, __nv_bfloat16* dst, int64_t n) {
  SV_GRID_LOOP(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void F32ToF16Kernel(const float* src, __half* dst, int64_t n) {
  SV_GRID_LOOP(i, n) dst[i] = __float2half_rn(src[i]);
}

template <typename T>
__global__ void FillKernel(T* dst, T value, int64_t n) {
  SV_GRID_LOOP(i, n) dst[i] = value;
}

template <typename T>
__global__ void PermuteKernel(const T* src, T* dst, PermuteDims dims, int64_t n) {
  SV_GRID_LOOP(i, n) {
    int64_t rem = i, offset = 0;
    for (int k = dims.ndim - 1; k >= 0; --k) {
      const int64_t c = rem % dims.out_shape[k];
      rem /= dims.out_shape[k];
      offset += c * dims.in_stride[k];
    }
    dst[i] = src[offset];
  }
}

template <typename T>
__global__ void EmbeddingKernel(const T* table, const int32_t* ids, float* y, int64_t n,
                                int64_t d) {
  SV_GRID_LOOP(i, n) y[i] = AsF32(table[ids[i / d] * d + i % d]);
}

__global__ void Upsample2xKernel(const float* x, float* y, int64_t n_out, int64_t h, int64_t w) {
  SV_GRID_LOOP(i, n_out) {
    const int64_t ox = i % (2 * w), oy = (i / (2 * w)) % (2 * h), plane = i / (4 * h * w);
    y[i] = x[(plane * h + oy / 2) * w + ox / 2];
  }
}

}  // namespace

void LaunchToF32(const void* src, DType dtype, float* dst, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const unsigned g = GridFor(n);
  switch (dtype) {
    case DType::kF32: ToF32Kernel<<<g, 256, 0, s>>>(static_cast<const float*>(src), dst, n); break;
    case DType::kBF16:
      ToF32Kernel<<<g, 256, 0, s>>>(static_cast<const __nv_bfloat16*>(src), dst, n);
      break;
    case DType::kF16: ToF32Kernel<<<g, 256, 0, s>>>(static_cast<const __half*>(src), dst, n); break;
    case DType::kI8: ToF32Kernel<<<g, 256, 0, s>>>(static_cast<const int8_t*>(src), dst, n); break;
    case DType::kU8: ToF32Kernel<<<g, 256, 0, s>>>(static_cast<const uint8_t*>(src), dst, n); break;
    case DType::kI32: ToF32Kernel<<<g, 256, 0, s>>>(static_cast<const int32_t*>(src), dst, n); break;
  }
}

void LaunchF32ToBf16(const float* src, void* dst, int64_t n, cudaStream_t s) {
  if (n > 0) F32ToBf16Kernel<<<GridFor(n), 256, 0, s>>>(src, static_cast<__nv_bfloat16*>(dst), n);
}

void LaunchF32ToF16(const float* src, void* dst, int64_t n, cudaStream_t s) {
  if (n > 0) F32ToF16Kernel<<<GridFor(n), 256, 0, s>>>(src, static_cast<__half*>(dst), n);
}

void LaunchBf16ToF32(const void* src, float* dst, int64_t n, cudaStream_t s) {
  LaunchToF32(src, DType::kBF16, dst, n, s);
}

void LaunchFillPattern(void* dst, int element_size, uint32_t pattern, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const unsigned g = GridFor(n);
  switch (element_size) {
    case 4: FillKernel<<<g, 256, 0, s>>>(static_cast<uint32_t*>(dst), pattern, n); break;
    case 2:
      FillKernel<<<g, 256, 0, s>>>(static_cast<uint16_t*>(dst), static_cast<uint16_t>(pattern), n);
      break;
    default:
      FillKernel<<<g, 256, 0, s>>>(static_cast<uint8_t*>(dst), static_cast<uint8_t>(pattern), n);
      break;
  }
}

void LaunchPermute(const void* src, void* dst, int element_size, const PermuteDims& dims,
                   int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const unsigned g = GridFor(n);
  switch (element_size) {
    case 4:
      PermuteKernel<<<g, 256, 0, s>>>(static_cast<const uint32_t*>(src),
                                      static_cast<uint32_t*>(dst), dims, n);
      break;
    case 2:
      PermuteKernel<<<g, 256, 0, s>>>(static_cast<const uint16_t*>(src),
                                      static_cast<uint16_t*>(dst), dims, n);
      break;
    default:
      PermuteKernel<<<g, 256, 0, s>>>(static_cast<const uint8_t*>(src),
                                      static_cast<uint8_t*>(dst), dims, n);
      break;
  }
}

void LaunchEmbedding(const void* table, DType dtype, const int32_t* ids, float* y, int64_t count,
                     int64_t d, cudaStream_t s) {
  const int64_t n = count * d;
  if (n <= 0) return;
  const unsigned g = GridFor(n);
  switch (dtype) {
    case DType::kBF16:
      EmbeddingKernel<<<g, 256, 0, s>>>(static_cast<const __nv_bfloat16*>(table), ids, y, n, d);
      break;
    case DType::kF16:
      EmbeddingKernel<<<g, 256, 0, s>>>(static_cast<const __half*>(table), ids, y, n, d);
      break;
    default:
      EmbeddingKernel<<<g, 256, 0, s>>>(static_cast<const float*>(table), ids, y, n, d);
      break;
  }
}

void LaunchUpsampleNearest2x(const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                             cudaStream_t s) {
  const int64_t n = planes * 4 * h * w;
  if (n > 0) Upsample2xKernel<<<GridFor(n), 256, 0, s>>>(x, y, n, h, w);
}

}  // namespace sparsevid::kernels::cuda
