#include "kernels/cuda/cuda_host_staging.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_backend_context.h"

namespace sparsevid::kernels::cuda {

HostStaging::~HostStaging() {
  for (const Block& b : blocks_) cudaFreeHost(b.data);
}

void* HostStaging::Allocate(size_t bytes, const char* op) {
  bytes = (bytes + 15) & ~size_t{15};
  for (; block_ < blocks_.size(); ++block_, offset_ = 0) {
    if (offset_ + bytes <= blocks_[block_].bytes) {
      void* p = static_cast<char*>(blocks_[block_].data) + offset_;
      offset_ += bytes;
      return p;
    }
  }
  Block b{nullptr, std::max<size_t>(bytes, size_t{1} << 20)};  // a step's statistics fit in one
  SV_CUDA_CHECK(op, cudaMallocHost(&b.data, b.bytes));
  blocks_.push_back(b);
  block_ = blocks_.size() - 1;
  offset_ = bytes;
  return b.data;
}

}  // namespace sparsevid::kernels::cuda
