// Pinned host memory that small device results (SLA2 kept counts, blend
// ratios) are copied into behind the work that produces them: a copy into
// pageable memory would wait for the stream, which is what the engine's
// per-layer statistics must not do. A bump allocator over pinned blocks that
// are kept for reuse; Reset() once every copy into it has completed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sparsevid::kernels::cuda {

class HostStaging {
 public:
  HostStaging() = default;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging();  // the owner has drained its stream

  // 16-byte aligned; failure stops with a message naming `op`.
  void* Allocate(size_t bytes, const char* op);
  template <class T>
  T* Allocate(int64_t count, const char* op) {
    return static_cast<T*>(Allocate(static_cast<size_t>(count) * sizeof(T), op));
  }
  void Reset() { block_ = offset_ = 0; }

 private:
  struct Block {
    void* data;
    size_t bytes;
  };
  std::vector<Block> blocks_;
  size_t block_ = 0, offset_ = 0;
};

}  // namespace sparsevid::kernels::cuda
