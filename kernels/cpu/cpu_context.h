// What every CPU op needs besides its tensors: the thread count and the
// memory account that scratch buffers are charged to (PeakBytes).
#pragma once

#include <cblas.h>

#include <memory>

#include "kernels/cpu/host_allocator.h"
#include "kernels/tensor.h"

namespace sparsevid::kernels::cpu {

struct CpuContext {
  int threads = 1;
  std::shared_ptr<HostMemoryAccount> account;
};

// Below this many elements an OpenMP region costs more than it saves.
constexpr int64_t kParallelGrain = 1 << 14;

inline int ThreadsFor(const CpuContext& ctx, int64_t work) {
  return work >= kParallelGrain ? ctx.threads : 1;
}

// A counted, 64-byte aligned f32 scratch buffer.
class Scratch {
 public:
  Scratch(const CpuContext& ctx, int64_t count)
      : storage_(AllocateHost(static_cast<size_t>(count) * sizeof(float), ctx.account)) {}
  float* data() const { return static_cast<float*>(storage_->data()); }

 private:
  std::shared_ptr<Storage> storage_;
};

}  // namespace sparsevid::kernels::cpu
