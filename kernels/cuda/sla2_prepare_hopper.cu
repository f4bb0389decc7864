// The low-bit pooling pass of stage kPrepare on Hopper (sm_90a): the
// outputs and the summation order of PoolKernel<D, true> (sla2_prepare.cu),
// with the tiles streamed by TMA instead of each CTA's own loads:
//  - PoolKernel reads Q and K with all of a thread's rows in flight and V as
//    a second batch (all three at once need 170 registers a thread, one CTA
//    an SM); here a persistent CTA per SM walks the query blocks
//    (query-block-fastest, as PoolKernel's grid), one producer thread keeps
//    a ring of 32 KB tiles (Q, K and V of one query block each) in flight,
//    and the consumers add up a tile from shared memory while the next ones
//    land. Same call on an H200: the pass 0.098 -> 0.089 ms at the 1.3B
//    shape, 0.648 -> 0.586 at 14B (h200-v42-ab-pool-tma-zsum.log).
//  - For bf16 (Q and K only) the same ring measured no faster than
//    PoolKernel, whose 16 loads a thread are all in flight already (faster
//    on one lease, slower on the next: h200-v42-ab-pool-tma-*.log), so bf16
//    keeps PoolKernel.
// A consumer thread owns the same channel octet and rows as in PoolKernel
// and adds them in the same order, and the partial sums meet in shared
// memory in the same order, so Q-bar, the key-block sums, the V amax and the
// atomics' operands are the same numbers.
#include <cuda.h>

#include "kernels/cuda/sla2_hopper_common.cuh"
#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_pool.cuh"

namespace sparsevid::kernels::cuda {
namespace {

using namespace hopper;

constexpr int kPoolConsumers = pool::kThreads;
constexpr int kPoolHopperThreads = kPoolConsumers + 32;  // + the producer warp

template <int D>
struct PoolSmem {
  static constexpr int kTileBytes = kBlockQ * D * 2;  // one query block of Q, K or V
  static constexpr int kStages = (128 * 1024) / kTileBytes;  // 4 at D = 128, 8 at D = 64
  static constexpr int kPartBytes = static_cast<int>(sizeof(pool::Partials<D, true>));
  static constexpr int kPartOff = kStages * kTileBytes;  // two part buffers, by item parity
  static constexpr int kBarOff = kPartOff + 2 * kPartBytes;
  static constexpr int kBytes = kBarOff + 2 * kStages * 8 + 1024;  // + alignment slack
  static_assert(kBytes <= 227 * 1024, "shared memory per CTA");
};

// Grid: persistent, item = blockIdx.x + n * gridDim.x over B*H*T_m query
// blocks (i fastest, as PoolKernel's grid). Outputs as PoolKernel<D, true>'s.
template <int D>
__global__ void __launch_bounds__(kPoolHopperThreads, 1)
    PoolHopperKernel(const __grid_constant__ CUtensorMap tmap_q,
                     const __grid_constant__ CUtensorMap tmap_k,
                     const __grid_constant__ CUtensorMap tmap_v, Sla2Dims d,
                     float* __restrict__ qbar, float* __restrict__ kbar_sums,
                     float* __restrict__ ktotal, uint32_t* __restrict__ vamax) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using S = PoolSmem<D>;
  constexpr int kStages = S::kStages, kTiles = 3;  // Q, K, V
  using Sh = pool::Shape<D>;
  constexpr int kOcts = Sh::kOcts, kPhases = Sh::kPhases, kRows = Sh::kRows;
  extern __shared__ uint8_t smem_raw[];
  const uint32_t raw = detail::SmemAddr(smem_raw);
  const uint32_t base = (raw + 1023u) & ~1023u;  // 128-byte swizzle atoms are 1 KB
  uint8_t* const smem = smem_raw + (base - raw);
  auto full = [&](int st) { return base + S::kBarOff + 8 * st; };
  auto empty = [&](int st) { return base + S::kBarOff + 8 * (kStages + st); };
  if (threadIdx.x == 0) {
    for (int st = 0; st < kStages; ++st) {
      MbarInit(full(st), 1);
      MbarInit(empty(st), kPoolConsumers / 32);
    }
    FenceBarrierInit();
  }
  __syncthreads();
  const int64_t items = static_cast<int64_t>(d.batch) * d.heads * d.q_blocks;
  const int warp = threadIdx.x / 32;

  if (warp == kPoolConsumers / 32) {  // the producer
    if ((threadIdx.x & 31) != 0) return;
    const CUtensorMap* maps[3] = {&tmap_q, &tmap_k, &tmap_v};
    RingPos<kStages> pos;
    for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
      const int i = static_cast<int>(item % d.q_blocks);
      const int64_t bh = item / d.q_blocks;
      const int h = static_cast<int>(bh % d.heads), b = static_cast<int>(bh / d.heads);
      for (int t = 0; t < kTiles; ++t, pos.Next()) {
        MbarWait(empty(pos.st), pos.ph ^ 1);
        MbarArriveExpectTx(full(pos.st), S::kTileBytes);
#pragma unroll
        for (int c = 0; c < D / 64; ++c)
          TmaLoad4d(base + pos.st * S::kTileBytes + c * kBlockQ * 128, maps[t], full(pos.st),
                    c * 64, i * kBlockQ, h, b);
      }
    }
    return;
  }

  const int oct = threadIdx.x % kOcts, ph = threadIdx.x / kOcts;
  // Octet `oct` of row r in a tile: box oct / 8 (64 channels, 128 rows of
  // 128 bytes), its 16-byte unit moved by the 128-byte swizzle. Rows past
  // the sequence are zeros (TMA), which add nothing, as in PoolKernel.
  auto octet = [&](int st, int r) {
    const int u = (oct % 8) ^ (r & 7);
    return *reinterpret_cast<const uint4*>(smem + st * S::kTileBytes + (oct / 8) * kBlockQ * 128 +
                                           r * 128 + u * 16);
  };
  RingPos<kStages> pos;
  int parity = 0;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x, parity ^= 1) {
    const int i = static_cast<int>(item % d.q_blocks);
    const int64_t bh = item / d.q_blocks;
    float qs[8] = {}, k0[8] = {}, k1[8] = {};
    MbarWait(full(pos.st), pos.ph);
#pragma unroll
    for (int m = 0; m < kRows; ++m) pool::AddOctet(qs, octet(pos.st, ph + m * kPhases));
    WarpArrive(empty(pos.st));
    pos.Next();
    MbarWait(full(pos.st), pos.ph);
#pragma unroll
    for (int m = 0; m < kRows; ++m)
      pool::AddOctet(m < Sh::kRowsPerKeyBlock ? k0 : k1, octet(pos.st, ph + m * kPhases));
    WarpArrive(empty(pos.st));
    pos.Next();
    auto& part = *reinterpret_cast<pool::Partials<D, true>*>(smem + S::kPartOff +
                                                             parity * S::kPartBytes);
    MbarWait(full(pos.st), pos.ph);  // V: |V| max, as PoolKernel
    __nv_bfloat162 vm[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) vm[e] = __float2bfloat162_rn(0.f);
#pragma unroll
    for (int m = 0; m < kRows; ++m) pool::AbsMaxOctet(vm, octet(pos.st, ph + m * kPhases));
    WarpArrive(empty(pos.st));
    pos.Next();
    part.PutVmax(ph, oct, vm);
    part.Put(ph, oct, qs, k0, k1);
    // The other part buffer was last read before this barrier's previous
    // round, so one barrier per item suffices.
    NamedBarrier(1, kPoolConsumers);
    const int n = static_cast<int>(MinI64(kBlockQ, d.seq_len - static_cast<int64_t>(i) * kBlockQ));
    part.Store(threadIdx.x, i, bh, n, d, qbar, kbar_sums, ktotal, vamax);
  }
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
}

template <int D>
cudaError_t Launch(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                   cudaStream_t s, int sms) {
  CUtensorMap tq, tk, tv;
  if (!MakeQkvMap(&tq, p.q, d, kBlockQ) || !MakeQkvMap(&tk, p.k, d, kBlockQ) ||
      !MakeQkvMap(&tv, p.v, d, kBlockQ))
    return cudaErrorNotSupported;
  constexpr int kSmem = PoolSmem<D>::kBytes;
  const cudaError_t e = cudaFuncSetAttribute(
      PoolHopperKernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  if (e != cudaSuccess) return e;
  const int64_t items = static_cast<int64_t>(d.batch) * d.heads * d.q_blocks;
  // PersistentCtas: SLA2_HOPPER_MAX_CTAS caps it, so the tests' few-CTA
  // cases walk many query blocks a CTA (the ring's wrap, both part buffers).
  PoolHopperKernel<D><<<static_cast<unsigned>(PersistentCtas(sms, items)), kPoolHopperThreads, kSmem,
                        s>>>(
      tq, tk, tv, d, w.qbar, w.kbar, w.ktotal, w.vamax);
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPoolHopper(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                             cudaStream_t s) {
  const int sms = HopperSms();
  if (!p.low_bit || sms == 0 || !HopperKernelSelected() || EnvIsZero("SLA2_POOL_TMA"))
    return cudaErrorNotSupported;
  return d.head_dim == 64 ? Launch<64>(p, d, w, s, sms) : Launch<128>(p, d, w, s, sms);
}

}  // namespace sparsevid::kernels::cuda
