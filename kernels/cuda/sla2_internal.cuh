// Internal pieces shared by the SLA2 CUDA translation units: workspace
// buffers, the problem geometry passed to kernels, stage launchers, and the
// cp.async tile loader.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/mma_sm80.cuh"
#include "kernels/cuda/sla2_cuda.h"

namespace sparsevid::kernels::cuda {

constexpr int kBlockQ = 128;
constexpr int kBlockK = 64;
constexpr float kFp8Max = 448.0f;

struct Sla2Workspace::Buffers {
  // Router and smoothing.
  float* qbar = nullptr;     // [B,H,T_m,D] block sums of Q, then pooled Q (mean)
  float* kbar = nullptr;     // [B,H,T_n,D] block sums of K, then pooled K~ = mean - mu
  float* kmean = nullptr;    // [B,H,D] mu = mean over tokens of K
  float* ktotal = nullptr;   // [kTotalCopies][B,H,D] partial sums over tokens of K
  // ktotal, vamax, htot and ztot (the buffers the stages add into) lie in
  // one allocation from ktotal, accum_bytes long, so that Sla2Forward zeroes
  // them with one memset ahead of the pooling pass.
  size_t accum_bytes = 0;
  float* qproj = nullptr;    // [B,H,T_m,D] proj_q(qbar) (generic route only)
  float* kproj = nullptr;    // [B,H,T_n,D] proj_k(kbar) (generic route only)
  uint2* route_m = nullptr;  // W_q^T W_k as mma B fragments, bf16 hi and lo (tensor-core route)
  int32_t* lut = nullptr;    // [B,H,T_m,cap]
  int32_t* counts = nullptr; // [B,H,T_m]
  // Low-bit.
  uint32_t* vamax = nullptr;  // [kTotalCopies][B,H,D] partial amax |V| (float bits, >= 0)
  float* vscale = nullptr;    // [B,H,D]
  int8_t* q8 = nullptr;       // [B,H,T_m*128,D]
  float* qscale = nullptr;    // [B,H,T_m]
  int8_t* k8 = nullptr;       // [B,H,T_n*64,D] quantised K~
  float* kscale = nullptr;    // [B,H,T_n]
  uint8_t* vt8 = nullptr;     // [B,H,T_n,D,64] FP8 V^T, keys in Fp8KeyOfPosition order
  // Linear branch.
  __nv_bfloat16* hblk = nullptr;  // [B,H,T_n,D,D] h_j = phi(K~_j)^T V_j per key block (bf16)
  float* zblk = nullptr;          // [B,H,T_n,D] z_j = colsum phi(K~_j)
  float* htot = nullptr;          // [B,H,D,D] sum over all key blocks of h_j
  float* ztot = nullptr;          // [B,H,D]
  // Linear branch fused into the Hopper sparse kernel (FusedLinearApplies).
  __nv_bfloat16* phik = nullptr;  // [B,H,T_n*64,D] phi(K~) per key row, padded rows 0
  float* zi = nullptr;            // [B,H,T_m,D] z_tot - sum of the tile's kept z_j
  __nv_bfloat16* htot16 = nullptr;  // [B,H,D,D] H_tot in bf16, what the Hopper kernel loads by TMA
  // How the last kLinear stage ran (Sla2Workspace::linear_kernel names it):
  // kFused and kHopperTiles use the phi(K~) states; kFused leaves O_l to the
  // bf16 Hopper sparse kernel, kHopperTiles (low-bit) ends with
  // LaunchLinearTilesHopper.
  enum class LinearForm { kNone, kOwn, kFused, kHopperTiles };
  LinearForm linear_form = LinearForm::kNone;
  bool linear_fused() const { return linear_form == LinearForm::kFused; }
  bool linear_phik() const {
    return linear_form == LinearForm::kFused || linear_form == LinearForm::kHopperTiles;
  }
  const char* sparse_kernel = "";  // what the last kSparse stage ran (Sla2Workspace::sparse_kernel)
  const char* route_kernel = "";   // what the last kRoute stage ran (Sla2Workspace::route_kernel)
  // What that kLinear stage ran for: kSparse runs the fused kernel only for
  // the same problem and block lists (route_epoch counts kRoute runs).
  struct LinearKey {
    const void *q, *k, *v;
    const float* alpha;
    int batch, heads, head_dim;
    int64_t seq_len, stride_b, stride_l, stride_h;
    uint64_t route_epoch;
    bool operator==(const LinearKey& o) const {
      return q == o.q && k == o.k && v == o.v && alpha == o.alpha && batch == o.batch &&
             heads == o.heads && head_dim == o.head_dim && seq_len == o.seq_len &&
             stride_b == o.stride_b && stride_l == o.stride_l && stride_h == o.stride_h &&
             route_epoch == o.route_epoch;
    }
  };
  LinearKey fused_for{};
  uint64_t route_epoch = 0;
  // Sla2Forward runs the linear states on this stream, beside the route and
  // the quantisation, and the per-tile part when not fused (fork: after the
  // pooling pass; routed: the per-tile part may start; join: back to the
  // caller's stream, which runs the fused kernel's per-tile part itself).
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr, routed = nullptr;
  // Sla2Workspace::set_timeline: events at Sla2Forward's stage boundaries
  // (start, prepared, states, routed, linear, end), created when enabled.
  enum TimelineMark {
    kMarkStart,
    kMarkPrepared,
    kMarkStates,
    kMarkRouted,
    kMarkLinear,
    kMarkEnd,
    kMarks
  };
  cudaEvent_t timeline[kMarks] = {};
  bool timeline_on = false;
  // The last call recorded all its marks, start to end (so no elapsed time
  // is asked of an event that was never recorded).
  bool timeline_recorded = false;
  void Mark(TimelineMark m, cudaStream_t s) {
    if (!timeline_on) return;
    if (m == kMarkStart) timeline_recorded = false;
    cudaEventRecord(timeline[m], s);
    if (m == kMarkEnd) timeline_recorded = true;
  }
  size_t sizes[32] = {};  // allocated bytes per buffer, see Reserve
};

// Geometry in kernel arguments.
struct Sla2Dims {
  int batch, heads, head_dim;
  int64_t seq_len;
  int q_blocks, k_blocks;  // T_m, T_n
  int64_t stride_b, stride_l, stride_h;
  __device__ __host__ int64_t TokenOffset(int b, int64_t row, int h) const {
    return b * stride_b + row * stride_l + h * stride_h;
  }
  // Key blocks j < this hold 64 keys inside the sequence; a block j >= it is
  // the partial last one (or a padding block past the end): masked.
  __device__ __host__ int FullKeyBlocks() const { return static_cast<int>(seq_len / kBlockK); }
};

// The prepare stage accumulates the K total and the V amax into this many
// copies (key block j into copy j % kTotalCopies), summed when the means are
// finished: one copy took every key block's atomics on the same addresses,
// 47 of the pooling pass's 125 us at the 1.3B shape (H100).
constexpr int kTotalCopies = 32;

__host__ __device__ __forceinline__ int64_t MinI64(int64_t a, int64_t b) { return a < b ? a : b; }

// mu = mean over tokens of K for channel c of (batch*head) bh, from the
// prepare stage's K total copies: the same sum in the same order wherever it
// is taken (FinishKernel, the linear states), so every stage sees one mu.
__device__ __forceinline__ float KeyMean(const float* __restrict__ ktotal, const Sla2Dims& d,
                                         int64_t bh, int c) {
  const int64_t copy_stride = static_cast<int64_t>(d.batch) * d.heads * d.head_dim;
  float total = 0.f;
#pragma unroll 8
  for (int x = 0; x < kTotalCopies; ++x) total += ktotal[x * copy_stride + bh * d.head_dim + c];
  return total / static_cast<float>(d.seq_len);
}

Sla2Dims MakeDims(const Sla2Problem& p);

// Whether kernels launched by LaunchProgrammatic get the programmatic
// stream serialisation (SLA2_PDL not 0; sla2_sparse_hopper.cu).
bool ProgrammaticLaunchEnabled();

// Launches kernel so that it may start while the kernel before it in s
// finishes (programmatic dependent launch); the kernel calls
// detail::WaitForPriorGrids before it touches global memory. What it saves
// is the launch gap and the kernel's own set-up (barriers, register
// reconfiguration), not any of the previous kernel's work.
template <typename... Params, typename... Args>
cudaError_t LaunchProgrammatic(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                               cudaStream_t s, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = ProgrammaticLaunchEnabled() ? 1 : 0;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Args&&>(args)...);
}

// Stage launchers (one per translation unit); they return the launch error.
cudaError_t LaunchPrepare(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                          cudaStream_t s);
// LaunchPrepare in its two parts: the pooling pass (block sums, the K total
// copies; all the linear states need) and FinishKernel (mu, pooled K~, the
// V scales; what the route and the quantisation need).
// zeroed: the caller has zeroed the accumulators (w.accum_bytes from ktotal).
cudaError_t LaunchPool(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                       cudaStream_t s, bool zeroed = false);
cudaError_t LaunchFinish(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                         cudaStream_t s);
// The low-bit pooling pass on Hopper (sla2_prepare_hopper.cu: TMA ring,
// persistent CTAs; the same outputs as PoolKernel's); cudaErrorNotSupported,
// nothing launched, for bf16, off sm_90, where TMA cannot address q/k/v,
// when the Hopper kernels are not selected or with SLA2_POOL_TMA=0.
// LaunchPool tries it first.
cudaError_t LaunchPoolHopper(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                             cudaStream_t s);
cudaError_t LaunchRoute(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                        Sla2Workspace::Buffers& w, cudaStream_t s);
// The route on tensor cores (sla2_router_tiles.cu) for up to this many key
// blocks (its score tile of 32 query rows fits in shared memory); beyond,
// or with SLA2_ROUTE_KERNEL=generic, the FP32 kernels of sla2_router.cu.
constexpr int kRouteTileMaxKeyBlocks = 1536;
bool RouteTilesApply(const Sla2Problem& p);
size_t RouteTileMatrixBytes(int head_dim);
size_t RouteTileSmemBytes(int head_dim, int k_blocks);
cudaError_t LaunchRouteTiles(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                             Sla2Workspace::Buffers& w, cudaStream_t s);
// The linear stage in two parts: the per-key-block states (after kPrepare;
// decides w.linear_form) and the per-query-tile part (after kRoute too).
cudaError_t LaunchLinearStates(const Sla2Problem& p, const Sla2Dims& d,
                               Sla2Workspace::Buffers& w, cudaStream_t s, bool zeroed = false);
cudaError_t LaunchLinearTiles(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                              Sla2Workspace::Buffers& w, cudaStream_t s);
cudaError_t LaunchQuantize(const Sla2Problem& p, const Sla2Dims& d, Sla2Workspace::Buffers& w,
                           cudaStream_t s);
cudaError_t LaunchSparseBf16(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                             Sla2Workspace::Buffers& w, cudaStream_t s);
cudaError_t LaunchSparseLowBit(const Sla2Problem& p, const Sla2Dims& d, int64_t lut_capacity,
                               Sla2Workspace::Buffers& w, cudaStream_t s);

namespace detail {

// Programmatic dependent launch (sm_90). A kernel launched with the
// programmatic-serialisation attribute (LaunchProgrammatic) may start while
// the kernel before it in the stream still runs; it must call
// WaitForPriorGrids before it touches global memory that kernel (or any
// before it) writes or reads. AllowDependentLaunch lets the next kernel's
// CTAs launch before this kernel's have all exited. Both are no-ops for a
// kernel launched the ordinary way.
__device__ __forceinline__ void WaitForPriorGrids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void AllowDependentLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// 16-byte streaming load (read once: no L1 allocation). volatile keeps a
// group of them issued together ahead of the arithmetic that uses them,
// which is what keeps enough bytes in flight in the memory-bound stages
// (ncu on PoolKernel: plain loads were interleaved with the sums and the
// kernel stalled on each).
__device__ __forceinline__ uint4 LoadStream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Copies kRows rows of kRowBytes bytes (row r at gbase + r * row_stride_bytes)
// into a swizzled shared tile; rows >= valid_rows become zeros.
template <int kRows, int kRowBytes, int kThreads>
__device__ __forceinline__ void LoadTileAsync(uint32_t smem_base, const char* gbase,
                                              int64_t row_stride_bytes, int valid_rows) {
  constexpr int kChunks = kRowBytes / 16;
  constexpr int kTotal = kRows * kChunks;
  for (int idx = threadIdx.x; idx < kTotal; idx += kThreads) {
    const int row = idx / kChunks;
    const int chunk = idx % kChunks;
    const bool valid = row < valid_rows;
    const char* src = valid ? gbase + row * row_stride_bytes + chunk * 16 : gbase;
    CpAsync16(smem_base + SwizzledOffset<kRowBytes>(row, chunk), src, valid);
  }
}

}  // namespace detail
}  // namespace sparsevid::kernels::cuda
