// Device memory of CudaBackend: CUDA's stream-ordered pool (cudaMallocAsync /
// cudaFreeAsync) with an unlimited release threshold, so freed blocks stay
// cached for the next step instead of going back to the driver. Storage's
// deleter is a plain function pointer, so a registry maps each pointer to
// its size and device.
#include <mutex>
#include <unordered_map>
#include <utility>

#include "kernels/cuda/cuda_backend_context.h"

namespace sparsevid::kernels::cuda {
namespace {

struct Allocation {
  size_t bytes = 0;
  std::shared_ptr<CudaDevice> dev;
};

std::mutex& RegistryMutex() {
  static std::mutex m;
  return m;
}

std::unordered_map<void*, Allocation>& Registry() {
  static auto* r = new std::unordered_map<void*, Allocation>();  // never destroyed: frees at exit
  return *r;
}

void FreeDevice(void* ptr) {
  if (ptr == nullptr) return;
  Allocation a;
  {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    auto it = Registry().find(ptr);
    SV_CHECK(it != Registry().end(), "CudaBackend: freeing unknown device pointer %p", ptr);
    a = std::move(it->second);
    Registry().erase(it);
  }
  SV_CUDA_CHECK("free", cudaSetDevice(a.dev->index));
  SV_CUDA_CHECK("free", cudaFreeAsync(ptr, a.dev->stream));
  a.dev->bytes_in_use -= static_cast<int64_t>(a.bytes);
  // a.dev may be the last reference: ~CudaDevice then syncs and releases.
}

}  // namespace

CudaDevice::~CudaDevice() {
  // Errors here cannot be reported anywhere useful; release what we can.
  cudaSetDevice(index);
  if (stream) cudaStreamSynchronize(stream);
  if (cublas) cublasDestroy(cublas);
  if (stream) cudaStreamDestroy(stream);
}

std::shared_ptr<Storage> AllocateDevice(const std::shared_ptr<CudaDevice>& dev, size_t bytes,
                                        const char* op) {
  void* ptr = nullptr;
  if (bytes > 0) {
    SV_CUDA_CHECK(op, cudaSetDevice(dev->index));
    const cudaError_t e = cudaMallocAsync(&ptr, bytes, dev->stream);
    if (e != cudaSuccess) {
      size_t free_b = 0, total_b = 0;
      cudaGetLastError();
      cudaMemGetInfo(&free_b, &total_b);
      SV_CHECK(false,
               "CudaBackend %s: cannot allocate %zu bytes of device memory (%s; this backend "
               "holds %lld bytes, device free %zu of %zu)",
               op, bytes, cudaGetErrorString(e), static_cast<long long>(dev->bytes_in_use.load()),
               free_b, total_b);
    }
    {
      std::lock_guard<std::mutex> lock(RegistryMutex());
      Registry()[ptr] = Allocation{bytes, dev};
    }
    const int64_t now = dev->bytes_in_use += static_cast<int64_t>(bytes);
    int64_t peak = dev->peak_bytes.load();
    while (now > peak && !dev->peak_bytes.compare_exchange_weak(peak, now)) {
    }
  }
  return std::make_shared<Storage>(ptr, bytes, DeviceKind::kCuda, &FreeDevice);
}

Tensor DeviceTensor(const std::shared_ptr<CudaDevice>& dev, const Shape& shape, DType dtype,
                    const char* op) {
  const size_t bytes = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  return Tensor(AllocateDevice(dev, bytes, op), 0, shape, dtype);
}

}  // namespace sparsevid::kernels::cuda
