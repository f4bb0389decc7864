// What the two Hopper (sm_90a) sparse kernels share: the CTA shape (a TMA
// producer warp beside two consumer warpgroups of 64 query rows), the
// persistent tile order, the warpgroup's output store, and the host checks
// that decide whether a Hopper kernel runs (sla2_sparse_hopper.cu defines
// them; sla2_sparse_lowbit_hopper.cu is the other user).
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kernels/cuda/sla2_epilogue.cuh"
#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_sparse_hopper_ptx.cuh"

namespace sparsevid::kernels::cuda::hopper {

constexpr int kConsumerThreads = 256;             // 2 warpgroups x 64 query rows
constexpr int kThreads = kConsumerThreads + 128;  // + the producer warpgroup
constexpr int kProducerWarp = kConsumerThreads / 32;
// Registers per thread after setmaxnreg. Each SM sub-partition holds 16K
// registers and gets one producer and two consumer warps: 24 + 2 * 240 = 504
// per lane fits (32 * 504 <= 16384), and the 168 every warp starts with
// (launch bounds 384 threads, 1 CTA) are what the producer hands over.
constexpr int kProducerRegs = 24;
constexpr int kConsumerRegs = 240;
constexpr int kConsumerWarps = kConsumerThreads / 32;  // arrivals per release

// One tile of the persistent grid: query block i of (batch b, head h), in
// query-block-fastest order (the CTAs running together share one head's K/V
// in L2), with its kept key-block list. The producer and the consumers walk
// the same tiles, so both decode them here.
struct HopperTile {
  int i, h, b, cnt;
  const int32_t* lut_row;
};

__device__ __forceinline__ HopperTile DecodeTile(int64_t tile, const Sla2Dims& d,
                                                 const int32_t* counts, const int32_t* lut,
                                                 int64_t lut_capacity) {
  const int i = static_cast<int>(tile % d.q_blocks);
  const int64_t bh = tile / d.q_blocks;
  return {i, static_cast<int>(bh % d.heads), static_cast<int>(bh / d.heads),
          counts[bh * d.q_blocks + i], lut + (bh * d.q_blocks + i) * lut_capacity};
}

// The mbarriers of a kernel's shared memory: per stage of the K/V ring
// full-K, full-V (TMA bytes landed) and empty (every consumer warp is done),
// and a full/empty pair per Q buffer (kQBufs: 1 when the consumers copy Q
// into registers, 2 when wgmma reads it from shared memory all tile long).
template <int kStages, int kQBufs = 1>
struct RingBarriers {
  static constexpr int kBytes = (3 * kStages + 2 * kQBufs) * 8;
  uint32_t base;  // shared address, 8-byte aligned
  __device__ uint32_t full_k(int st) const { return base + st * 8; }
  __device__ uint32_t full_v(int st) const { return base + (kStages + st) * 8; }
  __device__ uint32_t empty(int st) const { return base + (2 * kStages + st) * 8; }
  __device__ uint32_t q_full(int qb = 0) const { return base + (3 * kStages + 2 * qb) * 8; }
  __device__ uint32_t q_empty(int qb = 0) const { return q_full(qb) + 8; }
  // Thread 0 initialises them and makes them visible to TMA; the CTA waits.
  __device__ void Init() const {
    if (threadIdx.x == 0) {
      for (int st = 0; st < kStages; ++st) {
        MbarInit(full_k(st), 1);
        MbarInit(full_v(st), 1);
        MbarInit(empty(st), kConsumerWarps);
      }
      for (int qb = 0; qb < kQBufs; ++qb) {
        MbarInit(q_full(qb), 1);
        MbarInit(q_empty(qb), kConsumerWarps);
      }
      FenceBarrierInit();
    }
    __syncthreads();
  }
};

// Where the n-th use of a ring of kStages buffers falls: the stage and the
// parity of its barriers' phase, advanced by one compare per use (the 64-bit
// `n % kStages` and `n / kStages` it replaces were ten instructions a step).
template <int kStages>
struct RingPos {
  int st = 0;
  uint32_t ph = 0;
  __device__ __forceinline__ void Next() {
    if (++st == kStages) {
      st = 0;
      ph ^= 1u;
    }
  }
};

// A 4-D TMA box load, with an L2 cache policy when `hint` (the kernels'
// SLA2_HOPPER_L2_HINTS switch, for A/B runs).
__device__ __forceinline__ void TmaLoad4dPolicy(bool hint, uint32_t dst, const CUtensorMap* map,
                                                uint32_t bar, int c0, int row, int h, int b,
                                                uint64_t policy) {
  if (hint) {
    TmaLoad4dHint(dst, map, bar, c0, row, h, b, policy);
  } else {
    TmaLoad4d(dst, map, bar, c0, row, h, b);
  }
}

// Ping-pong: a consumer warpgroup issues its GEMMs only after the other one
// issued its own, so one's softmax runs under the other's GEMMs instead of
// both computing softmax at once (named barriers 3 and 4; both warpgroups
// walk the same tiles, so their issue points pair up).
struct PingPong {
  bool on;
  int wg;
  __device__ void MyTurn() const {
    if (on) NamedBarrier(3 + wg, 256);
  }
  __device__ void PassTurn() const {
    if (on) NamedBarrierArrive(3 + (wg ^ 1), 256);
  }
  __device__ void Start() const {  // warpgroup 0 goes first
    if (wg == 1) PassTurn();
  }
};

// One arrival per warp on an mbarrier counting kConsumerWarps.
__device__ __forceinline__ void WarpArrive(uint32_t bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) MbarArrive(bar);
}

// What the producer decoded for a tile, handed to the consumers through
// shared memory (two slots, by tile parity: slot k & 1 is rewritten for tile
// k + 2 only after every consumer warp released tile k + 1's Q, i.e. after
// its epilogue of tile k), so the consumers issue no dependent global loads
// of their own at a tile's start or end.
struct TileInfo {
  int i, h, b, cnt;
  float alpha;   // 1 when out holds no linear part
  float qscale;  // low-bit: s_q log2(e) / sqrt(D)
  int pad[2];
};
static_assert(sizeof(TileInfo) == 32, "16-byte aligned slots");

// Per stage of the K/V ring: the kept block's index and (low-bit) its K
// scale, written by the producer before it arms the stage's full-K barrier.
struct StageMeta {
  int j;
  float kscale;
};

// Producer side: fills `info` for the tile.
__device__ __forceinline__ void WriteTileInfo(TileInfo* info, const HopperTile& t,
                                              const float* alpha, int q_blocks, float qscale) {
  *info = TileInfo{t.i, t.h, t.b, t.cnt,
                   alpha ? alpha[static_cast<int64_t>(t.h) * q_blocks + t.i] : 1.f, qscale, {0, 0}};
}

// The epilogue's output tile of one warpgroup: 64 rows x D bf16 as D / 64
// boxes of 64 rows x 128 bytes with the 128-byte swizzle, i.e. exactly the
// boxes of the out tensor map, so one thread stores it with TMA (or adds it
// to what out holds) while the warpgroup goes on to the next tile.
template <int D>
struct OutStage {
  static constexpr int kBytes = 64 * D * 2;  // per warpgroup
  uint8_t* base;                             // 1024-byte aligned
  // A warp's 16 rows from `wrow` x 16 columns from col16 (a multiple of
  // 16), in accumulator-layout bf16 pairs: r0 rows g, columns col16 + 2t
  // and + 1; r1 rows g + 8; r2 and r3 the same 8 columns further. One
  // stmatrix; the swizzle gives each 8-row matrix 8 distinct 16-byte units
  // (no bank conflicts).
  __device__ void Put16x16(int wrow, int col16, uint32_t r0, uint32_t r1, uint32_t r2,
                           uint32_t r3) const {
    StMatrixX4(LaneRow16x16(wrow, col16), r0, r1, r2, r3);
  }
  // The same 16 x 16 block read back in that layout (one ldmatrix).
  __device__ void Get16x16(int wrow, int col16, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                           uint32_t& r3) const {
    detail::LdMatrixX4(LaneRow16x16(wrow, col16), r0, r1, r2, r3);
  }
  // The shared address this lane hands stmatrix / ldmatrix: row l % 8 (16
  // bytes) of the block's 8 x 8 matrix l / 8, in the swizzled layout.
  __device__ uint32_t LaneRow16x16(int wrow, int col16) const {
    const int l = threadIdx.x & 31, m = l >> 3;
    const int row = wrow + (l & 7) + (m & 1) * 8;
    const int col = col16 + (m >> 1) * 8;
    const int off = (col / 64) * 64 * 128 + row * 128 + ((((col % 64) / 8) ^ (row & 7)) << 4);
    return detail::SmemAddr(base) + off;
  }
};

// Before a warpgroup writes its OutStage: its previous TMA store has read it.
__device__ __forceinline__ void OutStageAcquire(int wg, int wtid) {
  if (wtid == 0) BulkWaitRead();
  NamedBarrier(1 + wg, 128);
}

// After the writes: the warpgroup's 64 rows from `row0` of head h, batch b
// go to out by TMA (add: added to out's values, the blend with the linear
// branch's part). Rows past the sequence are clipped by the map, and a
// warpgroup whose rows all lie past it stores nothing.
template <int D>
__device__ __forceinline__ void OutStageStore(const OutStage<D>& st, const CUtensorMap* map,
                                              bool add, int row0, int64_t seq_len, int h, int b,
                                              int wg, int wtid) {
  FenceProxyAsyncShared();
  NamedBarrier(1 + wg, 128);
  if (wtid == 0 && row0 < seq_len) {
#pragma unroll
    for (int c = 0; c < D / 64; ++c) {
      const uint32_t src = detail::SmemAddr(st.base) + c * 64 * 128;
      if (add) {
        TmaStore4d<true>(map, src, c * 64, row0, h, b);
      } else {
        TmaStore4d<false>(map, src, c * 64, row0, h, b);
      }
    }
    BulkCommit();
  }
}

// A consumer warpgroup leaving the kernel: its stores are complete.
__device__ __forceinline__ void OutStageDrain(int wtid) {
  if (wtid == 0) BulkWait();
}

// ----------------------------------------------------------- host side

// 4-D map (channels, tokens, heads, batch) over q, k, v or out (the
// problem's element strides), boxes of 64 channels x box_rows tokens,
// 128-byte swizzle, zeros past the end on loads, clipped on stores.
bool MakeQkvMap(CUtensorMap* map, const void* base, const Sla2Dims& d, int box_rows);
// The same over the linear stage's phi(K~) rows (dense [B, H, T_n * 64, D],
// boxes of 64 rows; padded rows exist, so every box is in range).
bool MakePhiKMap(CUtensorMap* map, const void* base, const Sla2Dims& d);
// The bf16 H_tot (dense [B * H * D, D]), boxes of 64 x 64, 128-byte swizzle.
bool MakeHtotMap(CUtensorMap* map, const void* base, const Sla2Dims& d);

// Number of SMs when the current device is the sm_90 these kernels are built
// for, else 0.
int HopperSms();
// CTAs of a persistent grid: one per SM, or SLA2_HOPPER_MAX_CTAS (tests use
// it to give each CTA many tiles), at most one per tile.
int64_t PersistentCtas(int sms, int64_t tiles);
// The same for the bf16 kernels on HeadAlignedGrid's grid
// (sla2_persistent_grid.h).
int64_t HeadAlignedCtas(int sms, int64_t tiles, int q_blocks);
// SLA2_SPARSE_KERNEL unset, empty or "hopper" (the default is the Hopper kernels).
bool HopperKernelSelected();
// The environment variable is set to "0".
bool EnvIsZero(const char* name);
// cuTensorMapEncodeTiled through the runtime's driver entry point: a map of
// `rank` dimensions (dims[0] innermost, strides in bytes for dims 1..),
// boxes of `box` elements, zeros past the end. False where the driver
// rejects it (the caller then uses a kernel without TMA).
bool EncodeTensorMap(CUtensorMap* map, CUtensorMapDataType type, int rank, const void* base,
                     const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                     CUtensorMapSwizzle swizzle);

}  // namespace sparsevid::kernels::cuda::hopper
