// CudaBackend: the Backend interface (kernels/backend.h) on one NVIDIA GPU.
// Every op runs on the device, on one stream per backend, asynchronously;
// ToHost and Synchronize wait for it. Memory comes from CUDA's stream-ordered
// pool (cudaMallocAsync), which caches freed blocks; PeakBytes counts the
// bytes this backend's tensors and scratch buffers hold at once.
//
// Numerics (tests/cuda/cuda_backend_test.cc measures them against CpuBackend):
// f32 ops in f32 (reductions in f64 where the CPU does), Linear/Conv3d/dense
// Attention as full-f32 cuBLAS GEMMs (no TF32); Linear with bf16/f16 weights
// runs bf16/f16 tensor-core GEMMs with f32 accumulation (x rounded to the
// weight's type: ~1e-2 relative); Sla2Attention is the SLA2 CUDA operator
// (kernels/cuda/sla2_cuda.h) on bf16 copies of q/k/v (~1e-2 relative), for
// head dims 64/128 and blocks 128x64; other shapes run the CPU implementation
// on host copies (correct, slow).
//
// Programming errors inside an op (shape mismatch, CUDA/cuBLAS failure,
// out of device memory) stop the process with a message naming the op
// (SV_CHECK); conditions a user can cause (no GPU, bad device index) come
// back from CreateCudaBackend as a Status.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace sparsevid::kernels::cuda {

// FAILED_PRECONDITION when no CUDA device (or driver) is usable,
// INVALID_ARGUMENT when device_index is negative or not below the count.
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int device_index);

}  // namespace sparsevid::kernels::cuda
