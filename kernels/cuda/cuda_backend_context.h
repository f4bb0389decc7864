// What every CudaBackend op needs: the device, its stream and cuBLAS handle,
// the memory account, and device scratch allocation. Shared (shared_ptr) by
// the backend and by every allocation it made, so tensors that outlive the
// backend still free into a live stream.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "kernels/check.h"
#include "kernels/tensor.h"

// A CUDA runtime call inside an op: failure stops with the op and the error.
#define SV_CUDA_CHECK(op, expr)                                                   \
  do {                                                                            \
    const cudaError_t sv_e_ = (expr);                                             \
    SV_CHECK(sv_e_ == cudaSuccess, "CudaBackend %s: %s (%s)", op,                 \
             cudaGetErrorString(sv_e_), #expr);                                   \
  } while (0)

#define SV_CUBLAS_CHECK(op, expr)                                                 \
  do {                                                                            \
    const cublasStatus_t sv_s_ = (expr);                                          \
    SV_CHECK(sv_s_ == CUBLAS_STATUS_SUCCESS, "CudaBackend %s: cuBLAS %s (%s)", op, \
             cublasGetStatusString(sv_s_), #expr);                                \
  } while (0)

namespace sparsevid::kernels::cuda {

struct CudaDevice {
  CudaDevice() = default;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;
  ~CudaDevice();  // waits for the stream, then releases it and cuBLAS

  int index = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  std::atomic<int64_t> bytes_in_use{0};
  std::atomic<int64_t> peak_bytes{0};
};

// Device memory on dev's stream, counted in dev's account; freed (stream
// ordered, into CUDA's caching pool) when the last tensor using it goes.
// Out of memory stops with a message naming `op`.
std::shared_ptr<Storage> AllocateDevice(const std::shared_ptr<CudaDevice>& dev, size_t bytes,
                                        const char* op);

// A device tensor of the given shape.
Tensor DeviceTensor(const std::shared_ptr<CudaDevice>& dev, const Shape& shape, DType dtype,
                    const char* op);

// Launch status of the kernel(s) just queued.
inline void CheckLaunch(const char* op) { SV_CUDA_CHECK(op, cudaGetLastError()); }

inline void CheckDevice(const Tensor& t, const char* op) {
  SV_CHECK(t.defined() && t.device() == DeviceKind::kCuda, "CudaBackend %s: device tensor expected",
           op);
}

}  // namespace sparsevid::kernels::cuda
