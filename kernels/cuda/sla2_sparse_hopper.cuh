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

// The same stage in steps of two kept blocks (sla2_sparse_hopper_pairs.cu),
// same contract and fallback rule; HopperPairsSelected: SLA2_HOPPER_PAIRS is
// not 0 (the dispatch then prefers the pair kernels, bf16 and low-bit, to
// the single-step ones).
cudaError_t LaunchSparseBf16HopperPairs(const Sla2Problem& p, const Sla2Dims& d,
                                        int64_t lut_capacity, Sla2Workspace::Buffers& w,
                                        cudaStream_t s);
bool HopperPairsSelected();

// Whether the linear branch runs fused into the Hopper kernel for this
// problem: bf16 with alpha, the Hopper kernel selected and runnable, and
// SLA2_FUSED_LINEAR not 0. The linear stage then only writes phi(K~), the
// totals and z_i (LaunchLinearStates / LaunchLinearTiles), and the sparse
// stage computes O_l too.
bool FusedLinearApplies(const Sla2Problem& p);

// The linear stage's phi(K~) form (LaunchLinearStatesHopper, KeptZKernel)
// applies: alpha given, the Hopper kernels selected and runnable,
// SLA2_FUSED_LINEAR not 0. FusedLinearApplies is this for bf16;
// LinearTilesHopperApplies for low-bit, where the linear stage finishes
// with LaunchLinearTilesHopper.
bool HopperLinearApplies(const Sla2Problem& p);
bool LinearTilesHopperApplies(const Sla2Problem& p);

// Low-bit module: the Hopper kernel's linear part alone (G = H_tot - sum of
// the kept phi(K~_j)^T V_j by wgmma, O_l in the epilogue), writing
// (1 - alpha) O_l into out for the low-bit sparse kernel to add to.
cudaError_t LaunchLinearTilesHopper(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                                    Sla2Workspace::Buffers& w, cudaStream_t s);

// The fused kernel (needs the linear stage's fused outputs in w); returns
// cudaErrorNotSupported where it cannot run.
cudaError_t LaunchSparseBf16HopperFused(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                                        Sla2Workspace::Buffers& w, cudaStream_t s);

// Stage kSparse (low-bit) with wgmma + TMA (sla2_sparse_lowbit_hopper.cu);
// cudaErrorNotSupported, nothing launched, under the same conditions as
// LaunchSparseBf16Hopper (the caller then uses LaunchSparseLowBit).
cudaError_t LaunchSparseLowBitHopper(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                                     Sla2Workspace::Buffers& w, cudaStream_t s);

// The same in steps of two kept blocks (sla2_sparse_lowbit_hopper_pairs.cu),
// same contract; the dispatch prefers it unless SLA2_HOPPER_PAIRS=0.
cudaError_t LaunchSparseLowBitHopperPairs(const Sla2Problem& p, const Sla2Dims& d,
                                          int64_t lut_capacity, Sla2Workspace::Buffers& w,
                                          cudaStream_t s);

// SLA2_SPARSE_KERNEL=hopper: the caller must not fall back (tests and the
// benchmark then know which kernel ran).
bool SparseHopperRequired();

}  // namespace sparsevid::kernels::cuda
