// Cycles per phase of a tile in the bf16 Hopper kernels
// (sla2_sparse_hopper.cu, the only includer), for finding where a tile's
// time goes: built only with -DSLA2_PROFILE_TILES, otherwise every macro is
// empty. Thread 0 of each consumer warpgroup reads clock64 at the phase ends
// and adds the cycles since the previous stamp into a device table (one
// relaxed atomic each; the kernels run 2-4 % slower); bench/attention/sla2_bench
// prints the table per tile for the rows that run these kernels
// (docs/cuda-kernels.md, "Where a fused tile's cycles go").
#pragma once

#ifdef SLA2_PROFILE_TILES
#include <cstdio>
#endif

namespace sparsevid::kernels::cuda {

// Phases in a tile's order (the fused kernel's epilogue has them all; the
// bare kernel goes from kProfToEpilogue, its output acquire, to kProfStore).
enum TileProfilePhase {
  kProfQWait,       // the tile's Q has landed
  kProfTileStart,   // Q fragments loaded, Q released
  kProfFirstBlock,  // first kept block's Q K^T and softmax
  kProfLoop,        // the other kept blocks
  kProfLastPV,      // the last P V (and G) retired
  kProfToEpilogue,  // row sums; bare: the output staging acquired
  kProfHtotWait,    // fused: H_tot's rows in the staging
  kProfHiUpdate,    // fused: H_i = H_tot + G written
  kProfHiBarrier,   // fused: both warpgroups' H_i rows written
  kProfPhiQ,        // fused: phi(Q) and the denominators
  kProfPhiQH,       // fused: phi(Q) H_i retired
  kProfHiRead,      // fused: both warpgroups done with H_i
  kProfStore,       // output staged and its store issued
  kProfPhases,
  kProfTiles = 14,  // counters
  kProfBlocks = 15,
};

#ifdef SLA2_PROFILE_TILES
// [fused][warpgroup][phase or counter]
__device__ unsigned long long g_tile_profile[2][2][16];

#define SLA2_PROFILE_START() long long profile_stamp_ = clock64()
#define SLA2_STAMP(phase)                                                          \
  do {                                                                             \
    if (wtid == 0) {                                                               \
      const long long now_ = clock64();                                            \
      atomicAdd(&g_tile_profile[kFused][wg][phase],                                \
                static_cast<unsigned long long>(now_ - profile_stamp_));           \
      profile_stamp_ = now_;                                                       \
    }                                                                              \
  } while (0)
#define SLA2_PROFILE_ADD(counter, value)                                                    \
  do {                                                                                      \
    if (wtid == 0)                                                                          \
      atomicAdd(&g_tile_profile[kFused][wg][counter], static_cast<unsigned long long>(value)); \
  } while (0)

// Prints the table (cycles per tile, per phase and warpgroup) under `label`
// and clears it; a null label only clears.
void Sla2TileProfileDump(const char* label) {
  unsigned long long h[2][2][16];
  cudaDeviceSynchronize();
  cudaMemcpyFromSymbol(h, g_tile_profile, sizeof h);
  static const char* const kNames[kProfPhases] = {
      "q-wait",  "tile-start", "first-block", "loop",  "last-pv",     "to-epilogue", "htot-wait",
      "hi-update", "hi-barrier", "phiq",      "phiq-h", "hi-read", "store"};
  for (int fused = 0; label != nullptr && fused < 2; ++fused)
    for (int wg = 0; wg < 2; ++wg) {
      const double tiles = static_cast<double>(h[fused][wg][kProfTiles]);
      const double blocks = static_cast<double>(h[fused][wg][kProfBlocks]);
      if (tiles == 0) continue;
      std::printf("profile %s %s wg%d: %.0f tiles, %.2f blocks a tile; cycles a tile:", label,
                  fused ? "fused" : "bare", wg, tiles, blocks / tiles);
      double total = 0;
      for (int ph = 0; ph < kProfPhases; ++ph) {
        total += static_cast<double>(h[fused][wg][ph]);
        if (h[fused][wg][ph] != 0)
          std::printf(" %s %.0f", kNames[ph], static_cast<double>(h[fused][wg][ph]) / tiles);
      }
      std::printf("; total %.0f, loop per block %.0f\n", total / tiles,
                  blocks > tiles ? static_cast<double>(h[fused][wg][kProfLoop]) / (blocks - tiles)
                                 : 0.0);
    }
  std::fflush(stdout);
  const unsigned long long zero[2][2][16] = {};
  cudaMemcpyToSymbol(g_tile_profile, zero, sizeof zero);
}
#else
#define SLA2_PROFILE_START() (void)0
#define SLA2_STAMP(phase) (void)0
#define SLA2_PROFILE_ADD(counter, value) (void)0
#endif

}  // namespace sparsevid::kernels::cuda
