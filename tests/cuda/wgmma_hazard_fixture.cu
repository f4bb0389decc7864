// Test fixture, never built into the product: a deliberately broken wgmma
// pipeline (the accumulator is touched while its wgmma is in flight), so
// check_wgmma_pipelines.cmake can prove that it still recognises ptxas'
// report of compiler-inserted wgmma synchronisation.
#include <cstdint>

#include "kernels/cuda/sla2_sparse_hopper_ptx.cuh"

__global__ void WgmmaHazardFixture(float* out, uint64_t desc) {
  using namespace sparsevid::kernels::cuda::hopper;
  float d[8][4];
  for (int i = 0; i < 8; ++i) d[i][0] = d[i][1] = d[i][2] = d[i][3] = 0.f;
  const uint32_t a[4] = {threadIdx.x, 1u, 2u, 3u};
  WgmmaFence();
  WgmmaRS_N64<0>(d, a, desc, 1);
  WgmmaCommit();
  d[0][0] += 1.f;  // the hazard
  WgmmaWait<0>();
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += d[i][0] + d[i][1] + d[i][2] + d[i][3];
  out[threadIdx.x] = s;
}
