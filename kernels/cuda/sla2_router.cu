// Stage kRoute: router projections, pooled block scores, exact per-row top-k
// (ties -> lower block index) written as ascending block lists; or an
// external block mask turned into the same lists. The scores and top-k run
// on tensor cores (sla2_router_tiles.cu) where RouteTilesApply; the FP32
// kernels here are the generic path (any number of key blocks, any GPU).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_router_common.cuh"

namespace sparsevid::kernels::cuda {
namespace {

constexpr int kProjRows = 32;

// One projection job: y[r, :] = x[r, :] W^T for `rows` rows of `dim`.
struct ProjJob {
  const float* x;
  const float* w;  // null: no job
  float* y;
  int64_t rows;
};

// Both router projections in one launch: CTAs [0, q_ctas) walk the query
// rows, the rest the key rows, kProjRows at a time, one thread per output
// channel. W^T is staged once per CTA in shared memory (row stride D + 1:
// the per-channel reads are conflict-free), the rows' inputs are broadcast
// from shared memory four channels at a time. Staging loads go out in
// batches of 8 float4 per thread (a load-store loop would wait on each).
template <int D>
__global__ void __launch_bounds__(D) ProjectKernel(ProjJob qjob, ProjJob kjob, int q_ctas) {
  extern __shared__ float sm[];
  float* wt = sm;                // [D][D + 1], wt[kk][c] = W[c][kk]
  float* xs = sm + D * (D + 1);  // [kProjRows][D]
  constexpr int kBatch = 8;
  const bool is_q = static_cast<int>(blockIdx.x) < q_ctas;
  const ProjJob job = is_q ? qjob : kjob;
  const int cta = is_q ? blockIdx.x : blockIdx.x - q_ctas;
  const int ctas = is_q ? q_ctas : gridDim.x - q_ctas;
  const float4* w4 = reinterpret_cast<const float4*>(job.w);
#pragma unroll
  for (int b0 = 0; b0 < D / 4; b0 += kBatch) {
    float4 r[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) r[u] = w4[(b0 + u) * D + threadIdx.x];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int idx = 4 * ((b0 + u) * D + threadIdx.x);
      float* col = wt + (idx % D) * (D + 1) + idx / D;
      col[0] = r[u].x;
      col[D + 1] = r[u].y;
      col[2 * (D + 1)] = r[u].z;
      col[3 * (D + 1)] = r[u].w;
    }
  }
  const int c = threadIdx.x;
  for (int64_t r0 = static_cast<int64_t>(cta) * kProjRows; r0 < job.rows;
       r0 += static_cast<int64_t>(ctas) * kProjRows) {
    const int nr = static_cast<int>(MinI64(kProjRows, job.rows - r0));
    __syncthreads();  // W^T staged / the previous rows consumed
    constexpr int kPer = kProjRows * D / 4 / D;  // float4 per thread
    float4 xr[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int idx4 = u * D + threadIdx.x;
      xr[u] = idx4 * 4 < nr * D ? reinterpret_cast<const float4*>(job.x + r0 * D)[idx4]
                                : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) reinterpret_cast<float4*>(xs)[u * D + threadIdx.x] = xr[u];
    __syncthreads();
    float acc[kProjRows];
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) acc[r] = 0.f;
#pragma unroll 4
    for (int k4 = 0; k4 < D; k4 += 4) {
      const float w0 = wt[k4 * (D + 1) + c], w1 = wt[(k4 + 1) * (D + 1) + c];
      const float w2 = wt[(k4 + 2) * (D + 1) + c], w3 = wt[(k4 + 3) * (D + 1) + c];
#pragma unroll
      for (int r = 0; r < kProjRows; ++r) {
        const float4 xv = *reinterpret_cast<const float4*>(xs + r * D + k4);
        acc[r] = fmaf(xv.x, w0, fmaf(xv.y, w1, fmaf(xv.z, w2, fmaf(xv.w, w3, acc[r]))));
      }
    }
#pragma unroll
    for (int r = 0; r < kProjRows; ++r) {
      if (r < nr) job.y[(r0 + r) * D + c] = acc[r];
    }
  }
}

using detail::OrderedKey;

// Writes, in ascending index order, the indices j < n with keep(j) true.
// Called by a full warp; returns the number written.
template <typename Keep>
__device__ __forceinline__ int WarpCompact(int n, Keep keep, int32_t* out) {
  const int lane = threadIdx.x & 31;
  const uint32_t lower = (1u << lane) - 1u;
  int written = 0;
  for (int base = 0; base < n; base += 32) {
    const int j = base + lane;
    const bool kept = j < n && keep(j);
    const uint32_t ballot = __ballot_sync(0xffffffffu, kept);
    if (kept) out[written + __popc(ballot & lower)] = j;
    written += __popc(ballot);
  }
  return written;
}

constexpr int kTopkThreads = 256;
constexpr int kTopkWarps = kTopkThreads / 32;
constexpr int kMaxRowsPerCta = 16;

// One CTA per (group of `rows` query blocks, batch*head). Scores of the
// group are computed into shared memory (fp32 dot products), then each warp
// runs an exact 4-pass radix select per row and an ordered compaction.
template <int D>
__global__ void __launch_bounds__(kTopkThreads) ScoreTopkKernel(
    const float* __restrict__ qp, const float* __restrict__ kp, int q_blocks, int k_blocks,
    int rows, int keep, int64_t lut_capacity, int32_t* __restrict__ lut,
    int32_t* __restrict__ counts) {
  extern __shared__ __align__(16) uint8_t smem[];
  float* qs = reinterpret_cast<float*>(smem);                 // [rows][D]
  uint32_t* keys = reinterpret_cast<uint32_t*>(qs + rows * D);  // [rows][k_blocks]
  uint32_t* hist = keys + static_cast<int64_t>(rows) * k_blocks;  // [warps][256]
  const int64_t bh = blockIdx.y;
  const int i0 = blockIdx.x * rows;
  const int nr = min(rows, q_blocks - i0);
  const float* qsrc = qp + (bh * q_blocks + i0) * D;
  for (int idx = threadIdx.x; idx < nr * D; idx += kTopkThreads) qs[idx] = qsrc[idx];
  __syncthreads();

  const float* kbase = kp + bh * k_blocks * D;
  for (int j = threadIdx.x; j < k_blocks; j += kTopkThreads) {
    float acc[kMaxRowsPerCta];
#pragma unroll
    for (int r = 0; r < kMaxRowsPerCta; ++r) acc[r] = 0.f;
    const float4* krow = reinterpret_cast<const float4*>(kbase + static_cast<int64_t>(j) * D);
#pragma unroll 4
    for (int c4 = 0; c4 < D / 4; ++c4) {
      const float4 kv = krow[c4];
#pragma unroll
      for (int r = 0; r < kMaxRowsPerCta; ++r) {
        if (r < nr) {
          const float4 qv = reinterpret_cast<const float4*>(qs + r * D)[c4];
          acc[r] = fmaf(qv.x, kv.x, acc[r]);
          acc[r] = fmaf(qv.y, kv.y, acc[r]);
          acc[r] = fmaf(qv.z, kv.z, acc[r]);
          acc[r] = fmaf(qv.w, kv.w, acc[r]);
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kMaxRowsPerCta; ++r) {
      if (r < nr) keys[static_cast<int64_t>(r) * k_blocks + j] = OrderedKey(acc[r]);
    }
  }
  __syncthreads();

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  uint32_t* h = hist + warp * 256;
  for (int r = warp; r < nr; r += kTopkWarps) {
    const uint32_t* row = keys + static_cast<int64_t>(r) * k_blocks;
    // Radix select of the keep-th largest key, 8 bits per pass.
    uint32_t prefix = 0, mask = 0;
    int remaining = keep;  // how many still to take at or below the current prefix
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int x = lane; x < 256; x += 32) h[x] = 0;
      __syncwarp();
      for (int j = lane; j < k_blocks; j += 32) {
        const uint32_t u = row[j];
        if ((u & mask) == prefix) atomicAdd(&h[(u >> shift) & 255u], 1u);
      }
      __syncwarp();
      // Lane owns bins [8*lane, 8*lane + 8); find the bin, from the top,
      // where the running count reaches `remaining`.
      int local[8];
      int total = 0;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        local[e] = static_cast<int>(h[lane * 8 + e]);
        total += local[e];
      }
      int suffix = total;  // inclusive count of bins >= 8*lane
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_down_sync(0xffffffffu, suffix, o);
        if (lane + o < 32) suffix += t;
      }
      const int above = suffix - total;  // count in higher lanes' bins
      const bool mine = above < remaining && remaining <= suffix;
      int bin = 0, new_remaining = 0;
      if (mine) {
        int cum = above;
#pragma unroll
        for (int e = 7; e >= 0; --e) {
          if (cum + local[e] >= remaining) {
            bin = lane * 8 + e;
            new_remaining = remaining - cum;
            break;
          }
          cum += local[e];
        }
      }
      const uint32_t who = __ballot_sync(0xffffffffu, mine);
      const int src = __ffs(who) - 1;
      bin = __shfl_sync(0xffffffffu, bin, src);
      remaining = __shfl_sync(0xffffffffu, new_remaining, src);
      prefix |= static_cast<uint32_t>(bin) << shift;
      mask |= 255u << shift;
      __syncwarp();
    }
    // prefix is the keep-th largest key; take everything above it and the
    // first `remaining` equal ones in index order.
    const int64_t out_row = bh * q_blocks + i0 + r;
    const int written = detail::WriteKeptBlocks(
        k_blocks, [&](int j) { return row[j]; }, prefix, remaining, lut + out_row * lut_capacity);
    if (lane == 0) counts[out_row] = written;
  }
}

// One warp per (batch, head, query block) row of an external u8 mask.
__global__ void MaskToLutKernel(const uint8_t* __restrict__ mask, int64_t mask_stride_b,
                                int heads, int q_blocks, int k_blocks, int64_t rows_total,
                                int64_t lut_capacity, int32_t* __restrict__ lut,
                                int32_t* __restrict__ counts) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (row >= rows_total) return;
  const int64_t per_batch = static_cast<int64_t>(heads) * q_blocks;
  const int64_t b = row / per_batch;
  const uint8_t* m = mask + b * mask_stride_b + (row % per_batch) * k_blocks;
  const int n = WarpCompact(k_blocks, [&](int j) { return m[j] != 0; }, lut + row * lut_capacity);
  if ((threadIdx.x & 31) == 0) counts[row] = n;
}

template <int D>
cudaError_t LaunchTopk(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                       Sla2Workspace::Buffers& w, const float* qsrc, const float* ksrc,
                       cudaStream_t s) {
  // Rows per CTA bounded by shared memory (scores of a row: 4 * T_n bytes).
  const size_t budget = 160 * 1024;
  const size_t per_row = static_cast<size_t>(d.k_blocks) * 4 + D * 4;
  const size_t fixed = kTopkWarps * 256 * 4;
  int rows = static_cast<int>(std::min<size_t>(kMaxRowsPerCta, (budget - fixed) / per_row));
  rows = std::max(1, std::min(rows, d.q_blocks));
  const size_t smem = fixed + rows * per_row;
  cudaError_t e = cudaFuncSetAttribute(ScoreTopkKernel<D>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid((d.q_blocks + rows - 1) / rows, d.batch * d.heads);
  ScoreTopkKernel<D><<<grid, kTopkThreads, smem, s>>>(
      qsrc, ksrc, d.q_blocks, d.k_blocks, rows, static_cast<int>(p.keep_count()), cap, w.lut,
      w.counts);
  return cudaGetLastError();
}

}  // namespace

bool RouteTilesApply(const Sla2Problem& p) {
  if (p.block_mask != nullptr || p.k_blocks() > kRouteTileMaxKeyBlocks) return false;
  const char* env = std::getenv("SLA2_ROUTE_KERNEL");
  if (env != nullptr && std::strcmp(env, "generic") == 0) return false;
  // Its score tile of 32 query rows must fit the device's shared memory.
  int device = 0, optin = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return RouteTileSmemBytes(p.head_dim, static_cast<int>(p.k_blocks())) <=
         static_cast<size_t>(optin);
}

cudaError_t LaunchRoute(const Sla2Problem& p, const Sla2Dims& d, int64_t cap,
                        Sla2Workspace::Buffers& w, cudaStream_t s) {
  const int64_t bh = static_cast<int64_t>(d.batch) * d.heads;
  if (p.block_mask != nullptr) {
    w.route_kernel = "mask";
    const int64_t rows = bh * d.q_blocks;
    const int threads = 256;
    const int64_t ctas = (rows * 32 + threads - 1) / threads;
    MaskToLutKernel<<<static_cast<unsigned>(ctas), threads, 0, s>>>(
        p.block_mask, p.mask_stride_b, d.heads, d.q_blocks, d.k_blocks, rows, cap, w.lut,
        w.counts);
    return cudaGetLastError();
  }
  if (RouteTilesApply(p)) {
    w.route_kernel = "tiles";
    return LaunchRouteTiles(p, d, cap, w, s);
  }
  w.route_kernel = "generic";
  const float* qsrc = w.qbar;
  const float* ksrc = w.kbar;
  if (p.proj_q != nullptr || p.proj_k != nullptr) {
    ProjJob qjob{w.qbar, p.proj_q, w.qproj, p.proj_q ? bh * d.q_blocks : 0};
    ProjJob kjob{w.kbar, p.proj_k, w.kproj, p.proj_k ? bh * d.k_blocks : 0};
    if (p.proj_q) qsrc = w.qproj;
    if (p.proj_k) ksrc = w.kproj;
    // About two CTAs per SM in all, split by rows; each stages W^T once.
    int device = 0, sms = 132;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    auto ctas_for = [&](int64_t rows) {
      const int64_t groups = (rows + kProjRows - 1) / kProjRows;
      const int64_t share = (2LL * sms * rows + qjob.rows + kjob.rows - 1) /
                            std::max<int64_t>(1, qjob.rows + kjob.rows);
      return static_cast<int>(std::min(groups, std::max<int64_t>(rows > 0, share)));
    };
    const int q_ctas = ctas_for(qjob.rows), k_ctas = ctas_for(kjob.rows);
    auto launch = [&](auto kernel, int dim) {
      const int smem = (dim * (dim + 1) + kProjRows * dim) * 4;
      cudaError_t e =
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
      if (e == cudaSuccess) kernel<<<q_ctas + k_ctas, dim, smem, s>>>(qjob, kjob, q_ctas);
      return e;
    };
    const cudaError_t e = d.head_dim == 64 ? launch(ProjectKernel<64>, 64)
                                           : launch(ProjectKernel<128>, 128);
    if (e != cudaSuccess) return e;
  }
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  return d.head_dim == 64 ? LaunchTopk<64>(p, d, cap, w, qsrc, ksrc, s)
                          : LaunchTopk<128>(p, d, cap, w, qsrc, ksrc, s);
}

}  // namespace sparsevid::kernels::cuda
