// SLA2 sparse-linear attention on CUDA (Hopper build, sm_90a), host API.
//
// Math: docs/conventions.md "SLA2 forward" and "Low-bit" (the CPU backend and
// training/sparsevid_ref/sla2.py follow the same text). All pointers are
// device pointers; everything runs on the given stream, nothing synchronises.
//
// Tensors q, k, v, out are bf16 [B, L, H, D] addressed by element strides
// (stride_b, stride_l, stride_h; the D channels are contiguous), so both the
// engine's [L, H, d] and PyTorch's [B, H, L, D] layouts work without copies.
//
// This header is plain C++ (no CUDA headers) so a CudaBackend can include it;
// errors come back as Sla2Status (the library is also built stand-alone on
// the GPU machine, where absl is not installed).
#pragma once

#include <cstdint>
#include <string>

struct CUstream_st;  // cudaStream_t without the CUDA headers

namespace sparsevid::kernels::cuda {

using Sla2Stream = CUstream_st*;

struct Sla2Status {
  std::string message;  // empty = OK
  bool ok() const { return message.empty(); }
  static Sla2Status Ok() { return {}; }
  static Sla2Status Error(std::string m) { return {std::move(m)}; }
};

struct Sla2Problem {
  int batch = 1;
  int64_t seq_len = 0;  // L (any length; partial last blocks are handled)
  int heads = 0;        // H
  int head_dim = 128;   // D: 64 or 128
  const void* q = nullptr;  // bf16
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;      // bf16, may not alias q/k/v
  int64_t stride_b = 0, stride_l = 0, stride_h = 0;  // elements, shared by q/k/v/out

  int block_q = 128;  // only 128 is built
  int block_k = 64;   // only 64 is built
  float keep_ratio = 0.03f;  // k = max(1, min(T_n, floor(keep_ratio * T_n)))
  const float* proj_q = nullptr;  // [D, D] fp32 (y = x W^T); null = identity
  const float* proj_k = nullptr;
  const float* alpha = nullptr;   // [H, T_m] fp32 in [0,1]; null = 1 (sparse only)
  bool low_bit = false;           // INT8 Q K^T, FP8-E4M3 P V
  // External block mask [B, H, T_m, T_n] u8 (1 = kept); replaces the router.
  // mask_stride_b = 0 shares one [H, T_m, T_n] mask across the batch.
  const uint8_t* block_mask = nullptr;
  int64_t mask_stride_b = 0;

  int64_t q_blocks() const { return (seq_len + block_q - 1) / block_q; }  // T_m
  int64_t k_blocks() const { return (seq_len + block_k - 1) / block_k; }  // T_n
  // Kept key blocks per query block with the router.
  int64_t keep_count() const;
};

// Checks shapes, pointers, alignment and options; names the first problem.
Sla2Status ValidateSla2Problem(const Sla2Problem& p);

// Device scratch for one problem size; grows on demand, frees on destruction.
class Sla2Workspace {
 public:
  Sla2Workspace() = default;
  ~Sla2Workspace();
  Sla2Workspace(const Sla2Workspace&) = delete;
  Sla2Workspace& operator=(const Sla2Workspace&) = delete;

  Sla2Status Reserve(const Sla2Problem& p);
  // Block lists of the last routing: int32 [B, H, T_m, lut_capacity()],
  // ascending key-block indices, first counts[b,h,i] entries valid.
  const int32_t* lut() const;
  const int32_t* counts() const;  // int32 [B, H, T_m]
  int64_t lut_capacity() const { return lut_capacity_; }
  // Whether the last linear stage ran for the fused Hopper kernel.
  bool linear_fused() const;
  // How the last linear stage ran: "fused" (O_l in the bf16 Hopper sparse
  // kernel), "hopper" (low-bit: the Hopper kernel's linear part alone),
  // "own" (StatesKernel + LinearKernel); "" without alpha or before the first.
  const char* linear_kernel() const;
  // The kernel the last sparse stage ran: "hopper-fused", "hopper-pairs"
  // (two kept blocks per step), "hopper" (one, SLA2_HOPPER_PAIRS=0) or "mma"
  // (bf16), "lowbit-hopper-pairs", "lowbit-hopper" (SLA2_HOPPER_PAIRS=0) or
  // "lowbit-mma"; "" before the first.
  const char* sparse_kernel() const;
  // The kernels the last route stage ran: "tiles" (scores on tensor cores),
  // "generic" (FP32; past 1536 key blocks or SLA2_ROUTE_KERNEL=generic) or
  // "mask" (an external block mask); "" before the first.
  const char* route_kernel() const;

  // What the last quantise stage wrote, for tests (device pointers, null
  // before a low-bit Reserve): INT8 Q [B,H,T_m*128,D] and K~ [B,H,T_n*64,D]
  // (rows past the sequence 0) with their block scales [B,H,T_m] and
  // [B,H,T_n]; FP8-E4M3 V^T [B,H,T_n,D,64] (keys of each 32-key chunk in
  // Fp8KeyOfPosition order, kernels/cuda/mma_sm80.cuh); and the K mean and V
  // scales [B,H,D] of the prepare stage that it used.
  struct Quantized {
    const int8_t* q8;
    const float* qscale;
    const int8_t* k8;
    const float* kscale;
    const uint8_t* vt8;
    const float* kmean;
    const float* vscale;
  };
  Quantized quantized() const;

  // Where one Sla2Forward's time goes with its stages overlapped. When
  // enabled, Sla2Forward records CUDA events at its stage boundaries (the
  // linear states on its side stream, and the per-tile part there too
  // unless the linear branch is fused; the rest on the caller's stream;
  // the events between KeptZKernel and the fused kernel cost that kernel its
  // programmatic launch), and forward_timeline() waits for the last call to end and
  // gives each boundary in ms since that call began. Stages in sequence
  // (SLA2_OVERLAP=0, no alpha): states = linear = the end of kLinear.
  // Overlapped, `prepared` is the end of the pooling pass (FinishKernel runs
  // beside the states). Off by default; valid is false when off or before a
  // call.
  struct Timeline {
    bool valid = false;
    float prepared = 0, states = 0, routed = 0, linear = 0, end = 0;
  };
  void set_timeline(bool on);
  Timeline forward_timeline() const;

  struct Buffers;  // defined in sla2_workspace.h (device code only)
  Buffers* buffers() const { return buffers_; }

 private:
  Buffers* buffers_ = nullptr;
  int64_t lut_capacity_ = 0;
};

// The stages of one forward, in order. Sla2Forward runs all of them; the
// benchmark and tests time or check them one by one.
enum class Sla2Stage {
  kPrepare,   // pooled Q/K, K mean (smoothing), V channel amax
  kRoute,     // projections, block scores, top-k -> LUT (or external mask -> LUT)
  kLinear,    // linear branch: per-block states, O_l, writes (1 - alpha) * O_l into out;
              // fused (bf16 on Hopper, SLA2_FUSED_LINEAR not 0): states only, O_l in kSparse
  kQuantize,  // low-bit only: INT8 Q, K~ per block, FP8 V^T per channel
  kSparse,    // sparse branch + blend: out = alpha * O_s (+ out from kLinear, or O_l fused)
};

Sla2Status Sla2RunStage(Sla2Stage stage, const Sla2Problem& p, Sla2Workspace& ws,
                        Sla2Stream stream = nullptr);
Sla2Status Sla2Forward(const Sla2Problem& p, Sla2Workspace& ws, Sla2Stream stream = nullptr);

}  // namespace sparsevid::kernels::cuda
