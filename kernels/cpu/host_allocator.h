// 64-byte aligned host memory with live/peak byte accounting.
// Every block carries a small header that points at the accounting object
// it was charged to, so a tensor may outlive the backend that made it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "kernels/tensor.h"

namespace sparsevid::kernels {

class HostMemoryAccount {
 public:
  void Charge(int64_t bytes);
  void Release(int64_t bytes);
  int64_t live_bytes() const { return live_.load(); }
  int64_t peak_bytes() const { return peak_.load(); }
  void ResetPeak() { peak_.store(live_.load()); }

 private:
  std::atomic<int64_t> live_{0};
  std::atomic<int64_t> peak_{0};
};

// Allocates `bytes` (zero allowed) and charges `account` (may be null).
std::shared_ptr<Storage> AllocateHost(size_t bytes,
                                      const std::shared_ptr<HostMemoryAccount>& account);

// The account used by the static Tensor::Empty/Zeros helpers.
const std::shared_ptr<HostMemoryAccount>& GlobalHostAccount();

}  // namespace sparsevid::kernels
