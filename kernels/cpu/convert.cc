#include "kernels/cpu/convert.h"

#include <cmath>
#include <cstring>

#include "kernels/check.h"

namespace sparsevid::kernels::cpu {

void CopyTensor(const CpuContext& ctx, const Tensor& src, Tensor& dst) {
  SV_CHECK(src.numel() == dst.numel() && src.dtype() == dst.dtype(),
           "Copy %s %s -> %s %s", ShapeString(src.shape()).c_str(), DTypeName(src.dtype()),
           ShapeString(dst.shape()).c_str(), DTypeName(dst.dtype()));
  if (src.nbytes() && src.raw() != dst.raw()) std::memmove(dst.raw(), src.raw(), src.nbytes());
}

void FillTensor(const CpuContext& ctx, Tensor& dst, float value) {
  const int64_t n = dst.numel();
  const int threads = ThreadsFor(ctx, n);
  switch (dst.dtype()) {
    case DType::kF32: {
      float* p = dst.f32();
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) p[i] = value;
      break;
    }
    case DType::kBF16:
    case DType::kF16: {
      const uint16_t h = dst.dtype() == DType::kBF16 ? FloatToBf16(value) : FloatToF16(value);
      uint16_t* p = dst.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = h;
      break;
    }
    case DType::kI32: {
      int32_t* p = dst.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>(std::lrint(value));
      break;
    }
    case DType::kI8:
    case DType::kU8: {
      SV_CHECK(dst.dtype() == DType::kU8 ? (value >= 0 && value <= 255)
                                         : (value >= -128 && value <= 127),
               "Fill value %g does not fit %s", value, DTypeName(dst.dtype()));
      std::memset(dst.raw(), static_cast<int>(std::lrint(value)) & 0xff, dst.nbytes());
      break;
    }
  }
}

void ConvertToF32(const CpuContext& ctx, const Tensor& src, float* dst) {
  const int64_t n = src.numel();
  const int threads = ThreadsFor(ctx, n);
  switch (src.dtype()) {
    case DType::kF32:
      if (n && dst != src.f32()) std::memcpy(dst, src.raw(), n * sizeof(float));
      break;
    case DType::kBF16: {
      const uint16_t* p = src.data<uint16_t>();
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(p[i]);
      break;
    }
    case DType::kF16: {
      const uint16_t* p = src.data<uint16_t>();
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToFloat(p[i]);
      break;
    }
    case DType::kI8: {
      const int8_t* p = src.data<int8_t>();
      for (int64_t i = 0; i < n; ++i) dst[i] = p[i];
      break;
    }
    case DType::kU8: {
      const uint8_t* p = src.data<uint8_t>();
      for (int64_t i = 0; i < n; ++i) dst[i] = p[i];
      break;
    }
    case DType::kI32: {
      const int32_t* p = src.data<int32_t>();
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(p[i]);
      break;
    }
  }
}

}  // namespace sparsevid::kernels::cpu
