// Host side of the SLA2 CUDA operator: validation, workspace, stage order.
#include "kernels/cuda/sla2_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_sparse_hopper.cuh"

namespace sparsevid::kernels::cuda {

namespace {

// The shortest decimal that reads back as f ("0.03" for 0.03f), as a double:
// the value training/ (Python) multiplies with, so k matches its keep_count
// and the CPU backend's KeptBlocksPerRow (kernels/sla2/router.h).
double DecimalValue(float f) {
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return static_cast<double>(f);
}

}  // namespace

int64_t Sla2Problem::keep_count() const {
  const int64_t t_n = k_blocks();
  const auto k = static_cast<int64_t>(std::floor(DecimalValue(keep_ratio) * t_n));
  return std::max<int64_t>(1, std::min<int64_t>(t_n, k));
}

Sla2Dims MakeDims(const Sla2Problem& p) {
  Sla2Dims d{};
  d.batch = p.batch;
  d.heads = p.heads;
  d.head_dim = p.head_dim;
  d.seq_len = p.seq_len;
  d.q_blocks = static_cast<int>(p.q_blocks());
  d.k_blocks = static_cast<int>(p.k_blocks());
  d.stride_b = p.stride_b;
  d.stride_l = p.stride_l;
  d.stride_h = p.stride_h;
  return d;
}

namespace {

bool Aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// "SLA2 CUDA: <what> failed: <CUDA's reason>".
Sla2Status CudaFailure(const std::string& what, cudaError_t e) {
  return Sla2Status::Error("SLA2 CUDA: " + what + " failed: " + cudaGetErrorString(e));
}

// The top-k kernel keeps one row of T_n scores in shared memory.
constexpr int64_t kMaxKeyBlocks = 36 * 1024;

}  // namespace

Sla2Status ValidateSla2Problem(const Sla2Problem& p) {
  auto err = [](const std::string& m) { return Sla2Status::Error("SLA2 CUDA: " + m); };
  if (p.batch < 1 || p.batch > 65535) return err("batch must be in [1, 65535], got " + std::to_string(p.batch));
  if (p.heads < 1 || p.heads > 65535) return err("heads must be in [1, 65535], got " + std::to_string(p.heads));
  if (int64_t{p.batch} * p.heads > 65535)  // one grid dimension per (batch, head)
    return err("batch * heads must be at most 65535, got " +
               std::to_string(int64_t{p.batch} * p.heads));
  if (p.seq_len < 1) return err("seq_len must be positive, got " + std::to_string(p.seq_len));
  if (p.head_dim != 64 && p.head_dim != 128)
    return err("head_dim must be 64 or 128, got " + std::to_string(p.head_dim));
  if (p.block_q != kBlockQ || p.block_k != kBlockK)
    return err("only block_q=128, block_k=64 are built, got " + std::to_string(p.block_q) + "x" +
               std::to_string(p.block_k));
  if (p.k_blocks() > kMaxKeyBlocks)
    return err("seq_len " + std::to_string(p.seq_len) + " exceeds the router limit of " +
               std::to_string(kMaxKeyBlocks * kBlockK) + " tokens");
  if (!p.q || !p.k || !p.v || !p.out) return err("q, k, v and out must be device pointers");
  if (p.out == p.q || p.out == p.k || p.out == p.v) return err("out must not alias q, k or v");
  if (!Aligned16(p.q) || !Aligned16(p.k) || !Aligned16(p.v) || !Aligned16(p.out))
    return err("q, k, v and out must be 16-byte aligned");
  if ((p.proj_q && !Aligned16(p.proj_q)) || (p.proj_k && !Aligned16(p.proj_k)) ||
      (p.alpha && (reinterpret_cast<uintptr_t>(p.alpha) & 3u)))
    return err("proj_q and proj_k must be 16-byte aligned, alpha 4-byte aligned");
  if (p.stride_l <= 0 || p.stride_h <= 0 || (p.batch > 1 && p.stride_b <= 0))
    return err("strides must be positive (stride_b may be 0 only for batch 1)");
  if (p.stride_l % 8 || p.stride_h % 8 || p.stride_b % 8)
    return err("strides must be multiples of 8 elements (16-byte rows)");
  if (p.stride_h < p.head_dim && p.heads > 1) return err("stride_h is smaller than head_dim");
  if (p.block_mask == nullptr) {
    if (!std::isfinite(p.keep_ratio) || p.keep_ratio <= 0.f || p.keep_ratio > 1.f)
      return err("keep_ratio must be in (0, 1], got " + std::to_string(p.keep_ratio));
  } else if (p.mask_stride_b < 0) {
    return err("mask_stride_b must be >= 0");
  }
  return Sla2Status::Ok();
}

namespace {

// cudaMalloc-backed growable buffer.
template <typename T>
cudaError_t Grow(T*& ptr, size_t& have, size_t need) {
  if (need <= have) return cudaSuccess;
  if (ptr != nullptr) cudaFree(ptr);
  ptr = nullptr;
  have = 0;
  void* raw = nullptr;
  const cudaError_t e = cudaMalloc(&raw, need);
  if (e != cudaSuccess) return e;
  ptr = static_cast<T*>(raw);
  have = need;
  return cudaSuccess;
}

}  // namespace

Sla2Workspace::~Sla2Workspace() {
  if (buffers_ == nullptr) return;
  void* all[] = {buffers_->qbar,  buffers_->kbar,   buffers_->kmean,     buffers_->qproj,
                 buffers_->kproj, buffers_->lut,    buffers_->counts,    buffers_->vscale,
                 buffers_->q8,    buffers_->qscale, buffers_->k8,        buffers_->kscale,
                 buffers_->vt8,   buffers_->hblk,   buffers_->ktotal,    buffers_->zblk,
                 buffers_->phik,  buffers_->zi,     buffers_->htot16,    buffers_->route_m};
  // (vamax, htot and ztot lie in ktotal's allocation.)
  for (void* p : all) {
    if (p != nullptr) cudaFree(p);
  }
  if (buffers_->side != nullptr) cudaStreamDestroy(buffers_->side);
  if (buffers_->fork != nullptr) cudaEventDestroy(buffers_->fork);
  if (buffers_->join != nullptr) cudaEventDestroy(buffers_->join);
  if (buffers_->routed != nullptr) cudaEventDestroy(buffers_->routed);
  for (cudaEvent_t e : buffers_->timeline) {
    if (e != nullptr) cudaEventDestroy(e);
  }
  delete buffers_;
}

const int32_t* Sla2Workspace::lut() const { return buffers_ ? buffers_->lut : nullptr; }
const int32_t* Sla2Workspace::counts() const { return buffers_ ? buffers_->counts : nullptr; }
bool Sla2Workspace::linear_fused() const { return buffers_ && buffers_->linear_fused(); }
const char* Sla2Workspace::linear_kernel() const {
  using F = Buffers::LinearForm;
  switch (buffers_ ? buffers_->linear_form : F::kNone) {
    case F::kOwn: return "own";
    case F::kFused: return "fused";
    case F::kHopperTiles: return "hopper";
    case F::kNone: break;
  }
  return "";
}
Sla2Workspace::Quantized Sla2Workspace::quantized() const {
  if (buffers_ == nullptr) return {};
  const Buffers& w = *buffers_;
  return {w.q8, w.qscale, w.k8, w.kscale, w.vt8, w.kmean, w.vscale};
}

void Sla2Workspace::set_timeline(bool on) {
  if (buffers_ == nullptr) buffers_ = new Buffers();
  Buffers& w = *buffers_;
  bool ready = true;
  for (cudaEvent_t& e : w.timeline) {
    if (on && e == nullptr && cudaEventCreate(&e) != cudaSuccess) e = nullptr;
    ready = ready && e != nullptr;
  }
  cudaGetLastError();
  w.timeline_on = on && ready;
  w.timeline_recorded = false;
}

Sla2Workspace::Timeline Sla2Workspace::forward_timeline() const {
  Timeline t;
  if (buffers_ == nullptr || !buffers_->timeline_on || !buffers_->timeline_recorded) return t;
  const cudaEvent_t* ev = buffers_->timeline;
  using B = Buffers;
  if (cudaEventSynchronize(ev[B::kMarkEnd]) != cudaSuccess) {
    cudaGetLastError();
    return t;
  }
  float* out[] = {&t.prepared, &t.states, &t.routed, &t.linear, &t.end};
  const B::TimelineMark marks[] = {B::kMarkPrepared, B::kMarkStates, B::kMarkRouted,
                                   B::kMarkLinear, B::kMarkEnd};
  for (int i = 0; i < 5; ++i) {
    if (cudaEventElapsedTime(out[i], ev[B::kMarkStart], ev[marks[i]]) != cudaSuccess) {
      cudaGetLastError();
      return Timeline{};
    }
  }
  t.valid = true;
  return t;
}

const char* Sla2Workspace::route_kernel() const {
  return buffers_ ? buffers_->route_kernel : "";
}

const char* Sla2Workspace::sparse_kernel() const {
  return buffers_ ? buffers_->sparse_kernel : "";
}

Sla2Status Sla2Workspace::Reserve(const Sla2Problem& p) {
  if (Sla2Status st = ValidateSla2Problem(p); !st.ok()) return st;
  if (buffers_ == nullptr) buffers_ = new Buffers();
  Buffers& w = *buffers_;
  const size_t bh = static_cast<size_t>(p.batch) * p.heads;
  const size_t D = p.head_dim, tm = p.q_blocks(), tn = p.k_blocks();
  const size_t cap = p.block_mask ? tn : static_cast<size_t>(p.keep_count());
  size_t* s = w.sizes;
  cudaError_t e = cudaSuccess;
  auto grow = [&](auto*& ptr, int slot, size_t bytes) {
    if (e == cudaSuccess) e = Grow(ptr, s[slot], bytes);
  };
  grow(w.qbar, 0, bh * tm * D * 4);
  grow(w.kbar, 1, bh * tn * D * 4);
  grow(w.kmean, 2, bh * D * 4);
  {
    // The accumulators in one allocation: K total copies, V amax copies,
    // H_tot, z_tot (each at a 256-byte boundary; H_tot is a bulk-reduce
    // target).
    auto up = [](size_t x) { return (x + 255) / 256 * 256; };
    const size_t kt = up(kTotalCopies * bh * D * 4), va = up(kTotalCopies * bh * D * 4);
    const size_t ht = up(bh * D * D * 4), zt = up(bh * D * 4);
    grow(w.ktotal, 17, kt + va + ht + zt);
    if (e == cudaSuccess) {
      char* const base = reinterpret_cast<char*>(w.ktotal);
      w.vamax = reinterpret_cast<uint32_t*>(base + kt);
      w.htot = reinterpret_cast<float*>(base + kt + va);
      w.ztot = reinterpret_cast<float*>(base + kt + va + ht);
      w.accum_bytes = kt + va + ht + zt;
    }
  }
  if (p.proj_q || p.proj_k) {
    if (RouteTilesApply(p)) {
      grow(w.route_m, 22, RouteTileMatrixBytes(p.head_dim));
    } else {
      if (p.proj_q) grow(w.qproj, 3, bh * tm * D * 4);
      if (p.proj_k) grow(w.kproj, 4, bh * tn * D * 4);
    }
  }
  grow(w.lut, 5, bh * tm * cap * 4);
  grow(w.counts, 6, bh * tm * 4);
  grow(w.vscale, 8, bh * D * 4);
  if (p.low_bit) {
    grow(w.q8, 9, bh * tm * kBlockQ * D);
    grow(w.qscale, 10, bh * tm * 4);
    grow(w.k8, 11, bh * tn * kBlockK * D);
    grow(w.kscale, 12, bh * tn * 4);
    grow(w.vt8, 13, bh * tn * D * kBlockK);
  }
  if (p.alpha) {
    if (HopperLinearApplies(p)) {  // the phi(K~) form, bf16 fused or low-bit tiles
      grow(w.phik, 19, bh * tn * kBlockK * D * 2);
      grow(w.zi, 20, bh * tm * D * 4);
      grow(w.htot16, 21, bh * D * D * 2);
    } else {
      grow(w.hblk, 14, bh * tn * D * D * 2);
    }
    grow(w.zblk, 18, bh * tn * D * 4);
  }
  if (e != cudaSuccess)
    return CudaFailure("workspace allocation", e);
  lut_capacity_ = static_cast<int64_t>(cap);
  return Sla2Status::Ok();
}

namespace {

Sla2Workspace::Buffers::LinearKey LinearKeyOf(const Sla2Problem& p, uint64_t route_epoch) {
  return {p.q,        p.k,        p.v,        p.alpha,    p.batch,        p.heads,
          p.head_dim, p.seq_len,  p.stride_b, p.stride_l, p.stride_h, route_epoch};
}

}  // namespace

Sla2Status Sla2RunStage(Sla2Stage stage, const Sla2Problem& p, Sla2Workspace& ws,
                        Sla2Stream stream) {
  if (Sla2Status st = ws.Reserve(p); !st.ok()) return st;
  const Sla2Dims d = MakeDims(p);
  Sla2Workspace::Buffers& w = *ws.buffers();
  const int64_t cap = ws.lut_capacity();
  cudaError_t e = cudaSuccess;
  const char* name = "";
  switch (stage) {
    case Sla2Stage::kPrepare:
      name = "prepare";
      e = LaunchPrepare(p, d, w, stream);
      break;
    case Sla2Stage::kRoute:
      name = "route";
      ++w.route_epoch;
      e = LaunchRoute(p, d, cap, w, stream);
      break;
    case Sla2Stage::kLinear:
      name = "linear";
      e = LaunchLinearStates(p, d, w, stream);
      if (e == cudaSuccess) e = LaunchLinearTiles(p, d, cap, w, stream);
      w.fused_for = LinearKeyOf(p, w.route_epoch);
      break;
    case Sla2Stage::kQuantize:
      name = "quantize";
      e = LaunchQuantize(p, d, w, stream);
      break;
    case Sla2Stage::kSparse:
      name = "sparse";
      if (p.low_bit) {
        // The wgmma/TMA kernel where it applies (sm_90), in 128-key steps
        // unless SLA2_HOPPER_PAIRS=0, else the mma.sync one.
        const bool pairs = HopperPairsSelected();
        w.sparse_kernel = pairs ? "lowbit-hopper-pairs" : "lowbit-hopper";
        e = pairs ? LaunchSparseLowBitHopperPairs(p, d, cap, w, stream)
                  : LaunchSparseLowBitHopper(p, d, cap, w, stream);
        if (e == cudaErrorNotSupported && !SparseHopperRequired()) {
          w.sparse_kernel = "lowbit-mma";
          e = LaunchSparseLowBit(p, d, cap, w, stream);
        }
      } else if (p.alpha != nullptr && w.linear_fused()) {
        // The linear stage left phi(K~), H_tot and z_i for the fused kernel,
        // valid only for the problem and block lists it ran with.
        if (!(LinearKeyOf(p, w.route_epoch) == w.fused_for))
          return Sla2Status::Error(
              "SLA2 CUDA: sparse stage: the linear stage ran for another problem or other block "
              "lists; run kLinear for this problem after kRoute (stages in Sla2Forward's order)");
        w.sparse_kernel = "hopper-fused";
        e = LaunchSparseBf16HopperFused(p, d, cap, w, stream);
        if (e == cudaErrorNotSupported)
          return Sla2Status::Error(
              "SLA2 CUDA: sparse stage: the linear stage prepared the fused Hopper kernel, "
              "which cannot run on the current device");
      } else {
        // The wgmma/TMA kernel where it applies (sm_90), else the mma.sync one.
        // 128-key steps unless SLA2_HOPPER_PAIRS=0 (sla2_sparse_hopper_pairs.cu).
        const bool pairs = HopperPairsSelected();
        w.sparse_kernel = pairs ? "hopper-pairs" : "hopper";
        e = pairs ? LaunchSparseBf16HopperPairs(p, d, cap, w, stream)
                  : LaunchSparseBf16Hopper(p, d, cap, w, stream);
        if (e == cudaErrorNotSupported && !SparseHopperRequired()) {
          w.sparse_kernel = "mma";
          e = LaunchSparseBf16(p, d, cap, w, stream);
        }
      }
      break;
  }
  if (e != cudaSuccess)
    return CudaFailure(std::string(name) + " stage", e);
  return Sla2Status::Ok();
}

namespace {

// The side stream and events of Sla2Forward's overlap, created on first use.
bool SideStreamReady(Sla2Workspace::Buffers& w) {
  if (w.side == nullptr &&
      cudaStreamCreateWithFlags(&w.side, cudaStreamNonBlocking) != cudaSuccess) {
    w.side = nullptr;
  }
  if (w.fork == nullptr && cudaEventCreateWithFlags(&w.fork, cudaEventDisableTiming) != cudaSuccess)
    w.fork = nullptr;
  if (w.join == nullptr && cudaEventCreateWithFlags(&w.join, cudaEventDisableTiming) != cudaSuccess)
    w.join = nullptr;
  if (w.routed == nullptr &&
      cudaEventCreateWithFlags(&w.routed, cudaEventDisableTiming) != cudaSuccess)
    w.routed = nullptr;
  cudaGetLastError();
  return w.side != nullptr && w.fork != nullptr && w.join != nullptr && w.routed != nullptr;
}

}  // namespace

Sla2Status Sla2Forward(const Sla2Problem& p, Sla2Workspace& ws, Sla2Stream stream) {
  using B = Sla2Workspace::Buffers;
  if (Sla2Status st = ws.Reserve(p); !st.ok()) return st;
  Sla2Workspace::Buffers& w = *ws.buffers();
  w.Mark(B::kMarkStart, stream);
  const char* env = std::getenv("SLA2_OVERLAP");
  const bool overlap =
      p.alpha != nullptr && !(env && std::string(env) == "0") && SideStreamReady(w);
  if (!overlap) {
    for (Sla2Stage s : {Sla2Stage::kPrepare, Sla2Stage::kRoute, Sla2Stage::kLinear,
                        Sla2Stage::kQuantize, Sla2Stage::kSparse}) {
      if (Sla2Status st = Sla2RunStage(s, p, ws, stream); !st.ok()) return st;
      if (s == Sla2Stage::kPrepare) w.Mark(B::kMarkPrepared, stream);
      if (s == Sla2Stage::kRoute) w.Mark(B::kMarkRouted, stream);
      if (s == Sla2Stage::kLinear) {
        w.Mark(B::kMarkStates, stream);
        w.Mark(B::kMarkLinear, stream);
      }
    }
    w.Mark(B::kMarkEnd, stream);
    return Sla2Status::Ok();
  }
  // The linear states run on the side stream: they need only the pooling
  // pass (mu from the K total copies). Here FinishKernel and the route run
  // beside them. Forking before FinishKernel, not after it, brings the
  // states' end 20 us forward at the 1.3B shape. One memset zeroes every
  // accumulator of the pass and the states ahead of the pooling pass (three
  // memsets before, two of them between the fork and the states).
  const Sla2Dims d = MakeDims(p);
  cudaError_t e = cudaMemsetAsync(w.ktotal, 0, w.accum_bytes, stream);
  if (e == cudaSuccess) e = LaunchPool(p, d, w, stream, /*zeroed=*/true);
  if (e != cudaSuccess) return CudaFailure("prepare stage", e);
  w.Mark(B::kMarkPrepared, stream);  // the pooling pass; FinishKernel runs beside the states
  e = cudaEventRecord(w.fork, stream);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(w.side, w.fork, 0);
  if (e != cudaSuccess)
    return CudaFailure("fork to the side stream", e);
  cudaError_t linear = LaunchLinearStates(p, d, w, w.side, /*zeroed=*/true);
  w.Mark(B::kMarkStates, w.side);
  const cudaError_t finished = LaunchFinish(p, d, w, stream);
  const Sla2Status routed = finished != cudaSuccess
                                ? CudaFailure("prepare stage", finished)
                                : Sla2RunStage(Sla2Stage::kRoute, p, ws, stream);
  w.Mark(B::kMarkRouted, stream);
  if (linear == cudaSuccess && w.linear_fused()) {
    // Fused: the caller's stream waits for the states, then runs
    // KeptZKernel and the fused kernel back to back, the fused kernel
    // launched programmatically (its launch and set-up under KeptZKernel).
    // With the one memset: bf16 module 0.654 -> 0.652 ms at the 1.3B shape
    // (H200, same call); the same order without the programmatic launch
    // measured 0.656 (h200-v41-ab-memset-pdl.log).
    e = cudaEventRecord(w.join, w.side);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(stream, w.join, 0);  // always rejoin
    if (e != cudaSuccess) cudaStreamSynchronize(w.side);  // as below
    if (!routed.ok()) return routed;
    if (e != cudaSuccess)
      return CudaFailure("join of the side stream", e);
    linear = LaunchLinearTiles(p, d, ws.lut_capacity(), w, stream);
    w.Mark(B::kMarkLinear, stream);
    if (linear != cudaSuccess)
      return CudaFailure("linear stage", linear);
    w.fused_for = LinearKeyOf(p, w.route_epoch);
    const Sla2Status sparse = Sla2RunStage(Sla2Stage::kSparse, p, ws, stream);
    w.Mark(B::kMarkEnd, stream);
    return sparse;
  }
  // Otherwise the per-tile part runs on the side stream too, after the
  // route's event (only after a successful route), beside the (low-bit)
  // quantisation on the caller's stream; the join is queued whatever
  // happened, and the sparse stage adds alpha * O_s to the (1 - alpha) * O_l
  // the linear branch left in out.
  cudaError_t e_route = routed.ok() ? cudaEventRecord(w.routed, stream) : cudaSuccess;
  if (e_route == cudaSuccess && routed.ok()) e_route = cudaStreamWaitEvent(w.side, w.routed, 0);
  if (linear == cudaSuccess && routed.ok() && e_route == cudaSuccess)
    linear = LaunchLinearTiles(p, d, ws.lut_capacity(), w, w.side);
  w.Mark(B::kMarkLinear, w.side);
  if (routed.ok() && e_route == cudaSuccess && linear == cudaSuccess)
    w.fused_for = LinearKeyOf(p, w.route_epoch);
  const Sla2Status quantized =
      routed.ok() ? Sla2RunStage(Sla2Stage::kQuantize, p, ws, stream) : Sla2Status::Ok();
  e = cudaEventRecord(w.join, w.side);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(stream, w.join, 0);  // always rejoin
  // Without a join the side stream's kernels may still read q/k/v or write
  // out when the caller frees them: wait for them here instead.
  if (e != cudaSuccess) cudaStreamSynchronize(w.side);
  if (!routed.ok()) return routed;
  if (e_route != cudaSuccess)
    return CudaFailure("route event for the side stream", e_route);
  if (linear != cudaSuccess)
    return CudaFailure("linear stage", linear);
  if (!quantized.ok()) return quantized;
  if (e != cudaSuccess)
    return CudaFailure("join of the side stream", e);
  const Sla2Status sparse = Sla2RunStage(Sla2Stage::kSparse, p, ws, stream);
  w.Mark(B::kMarkEnd, stream);
  return sparse;
}

}  // namespace sparsevid::kernels::cuda
