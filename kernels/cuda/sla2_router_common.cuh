// Pieces shared by the two route kernels (sla2_router.cu, sla2_router_tiles.cu):
// scores as order-preserving integer keys, and the ordered write of a row's
// kept blocks once its keep-th largest key is known.
#pragma once

#include <cstdint>

namespace sparsevid::kernels::cuda::detail {

// Monotone map float -> uint32 (larger float, larger key).
__device__ __forceinline__ uint32_t OrderedKey(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Called by a full warp for one row of n keys, `key(j)` giving key j (each
// lane asks for j = lane, lane + 32, ...). `kth` is the row's keep-th largest
// key and `ties` how many keys equal to it are kept: everything above kth is
// kept, then the first `ties` equal ones in index order (ties -> lower
// index). Writes the kept indices ascending into out; returns their number.
template <typename Key>
__device__ __forceinline__ int WriteKeptBlocks(int n, Key key, uint32_t kth, int ties,
                                               int32_t* out) {
  const int lane = threadIdx.x & 31;
  const uint32_t lower = (1u << lane) - 1u;
  int written = 0, seen_ties = 0;
  for (int base = 0; base < n; base += 32) {
    const int j = base + lane;
    const uint32_t u = j < n ? key(j) : 0u;
    const bool gt = j < n && u > kth;
    const bool eq = j < n && u == kth;
    const uint32_t eq_ballot = __ballot_sync(0xffffffffu, eq);
    const bool kept = gt || (eq && seen_ties + __popc(eq_ballot & lower) < ties);
    const uint32_t ballot = __ballot_sync(0xffffffffu, kept);
    if (kept) out[written + __popc(ballot & lower)] = j;
    written += __popc(ballot);
    seen_ties += __popc(eq_ballot);
  }
  return written;
}

}  // namespace sparsevid::kernels::cuda::detail
