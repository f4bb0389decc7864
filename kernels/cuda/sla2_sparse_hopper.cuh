// Launcher of the Hopper (sm_90a) bf16 sparse kernel, chosen at dispatch in
// sla2_host.cu ahead of the mma.sync kernel (LaunchSparseBf16).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {

// Runs stage kSparse (bf16) with wgmma + TMA + a producer warp. Returns
// cudaErrorNotSupported, with nothing launched, where that kernel does not
// apply (device not sm_90, tensor maps rejected for these strides, or not
// selected: SLA2_SPARSE_KERNEL=hopper|mma in the environment, default in
// sla2_sparse_hopper.cu); the caller then uses the mma.sync kernel. SLA2_HOPPER_MAX_CTAS=N caps the persistent grid (tests
// use it to give each CTA many tiles).
cudaError_t LaunchSparseBf16Hopper(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                                   Sla2Workspace::Buffers& w, cudaStream_t s);

// SLA2_SPARSE_KERNEL=hopper: the caller must not fall back (tests and the
// benchmark then know which kernel ran).
bool SparseHopperRequired();

}  // namespace sparsevid::kernels::cuda
