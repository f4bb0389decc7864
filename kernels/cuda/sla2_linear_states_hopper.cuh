// Launcher of the linear stage's per-key-block kernel on Hopper
// (sla2_linear_states_hopper.cu), used by LaunchLinearStates for the phi(K~)
// forms (HopperLinearApplies).
#pragma once

#include <cuda_runtime.h>

#include "kernels/cuda/sla2_internal.cuh"

namespace sparsevid::kernels::cuda {

// Writes w.phik (phi(K~) rows, padded rows 0), w.zblk (z_j) and adds
// H_tot = sum_j phi(K~_j)^T V_j and z_tot = sum_j z_j to w.htot / w.ztot,
// which the caller has zeroed (needs the pooling pass's K total copies,
// w.ktotal; not FinishKernel). cudaErrorNotSupported, nothing launched,
// where the Hopper kernels cannot run (not sm_90, tensor maps rejected for
// these strides, no phi(K~) buffer).
cudaError_t LaunchLinearStatesHopper(const Sla2Problem& p, const Sla2Dims& d,
                                     Sla2Workspace::Buffers& w, cudaStream_t s);

}  // namespace sparsevid::kernels::cuda
