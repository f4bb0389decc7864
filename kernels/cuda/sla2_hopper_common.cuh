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
// and the Q buffer's full/empty pair.
template <int kStages>
struct RingBarriers {
  static constexpr int kBytes = (3 * kStages + 2) * 8;
  uint32_t base;  // shared address, 8-byte aligned
  __device__ uint32_t full_k(int st) const { return base + st * 8; }
  __device__ uint32_t full_v(int st) const { return base + (kStages + st) * 8; }
  __device__ uint32_t empty(int st) const { return base + (2 * kStages + st) * 8; }
  __device__ uint32_t q_full() const { return base + 3 * kStages * 8; }
  __device__ uint32_t q_empty() const { return q_full() + 8; }
  // Thread 0 initialises them and makes them visible to TMA; the CTA waits.
  __device__ void Init() const {
    if (threadIdx.x == 0) {
      for (int st = 0; st < kStages; ++st) {
        MbarInit(full_k(st), 1);
        MbarInit(full_v(st), 1);
        MbarInit(empty(st), kConsumerWarps);
      }
      MbarInit(q_full(), 1);
      MbarInit(q_empty(), kConsumerWarps);
      FenceBarrierInit();
    }
    __syncthreads();
  }
};

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

// out[r, :] = stage[r, :] (+ out[r, :]) for the warpgroup's 64 rows (tid
// is the thread's index in the warpgroup).
template <int D>
__device__ __forceinline__ void StoreRows64(const uint8_t* stage, __nv_bfloat16* out,
                                            int64_t stride_l, int valid_rows, bool accumulate,
                                            int tid) {
  detail::StoreOutRows<D, 128, 64>(stage, out, stride_l, valid_rows, accumulate, tid);
}

// ----------------------------------------------------------- host side

// Number of SMs when the current device is the sm_90 these kernels are built
// for, else 0.
int HopperSms();
// CTAs of a persistent grid: one per SM, or SLA2_HOPPER_MAX_CTAS (tests use
// it to give each CTA many tiles), at most one per tile.
int64_t PersistentCtas(int sms, int64_t tiles);
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
