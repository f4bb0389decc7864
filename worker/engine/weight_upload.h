// Moving declared weights from the (memory-mapped) store to the backend.
// GEMM weights keep their file dtype (the backend's Linear takes bf16/f16);
// everything else becomes f32, which every op accepts.
#pragma once

#include <string>

#include "kernels/backend.h"
#include "worker/engine/weight_store.h"

namespace sparsevid::engine {

inline kernels::Tensor UploadLinear(kernels::Backend& b, const WeightStore& s,
                                    const std::string& name) {
  return b.ToDevice(s.Get(name));
}

inline kernels::Tensor UploadF32(kernels::Backend& b, const WeightStore& s,
                                 const std::string& name) {
  return b.ToDevice(s.GetF32(name));
}

}  // namespace sparsevid::engine
