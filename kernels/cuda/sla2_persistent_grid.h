// How many CTAs the persistent Hopper kernels launch (host side; no CUDA
// headers, so the no-GPU part of tests/cuda/sla2_cuda_test checks it).
#pragma once

namespace sparsevid::kernels::cuda {

// One CTA per SM, unless a head's q_blocks tiles (the kernels walk tiles
// query-block-fastest) split into equal waves on at most 5 % fewer CTAs:
// then that many (128 for 256 query blocks on 132 SMs). Each wave of tiles
// then lies in one head, and the CTAs running together share one head's K
// and V (and phi(K~)) in L2 instead of straddling two heads, which is more
// than L2 holds for the fused kernel at the 1.3B shape.
inline int HeadAlignedGrid(int sms, int q_blocks) {
  if (sms <= 0 || q_blocks <= 0) return sms;
  const int waves = (q_blocks + sms - 1) / sms;
  const bool aligned = q_blocks % waves == 0 && 20 * (q_blocks / waves) >= 19 * sms;
  return aligned ? q_blocks / waves : sms;
}

}  // namespace sparsevid::kernels::cuda
