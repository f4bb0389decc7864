// How fast this GPU's SMs can read data that is resident in L2: the
// ceiling behind the attention kernels' L2 argument (docs/cuda-kernels.md,
// "The fused kernel's L2 traffic"). The sparse kernels re-read each
// head's K/V blocks from L2 (a head's K and V fit in it), so their time is
// bounded below by bytes read / this rate.
//
// Two ways of reading, each over buffers that fit in L2, read many times:
//  - ldg: every thread issues 16-byte streaming loads (LoadStream16, as the
//    memory-bound stages do; no L1 allocation), four in flight, grid-stride;
//  - bulk: one thread per CTA keeps a ring of cp.async.bulk copies of one
//    chunk each into shared memory in flight, as the kernels' TMA producer
//    does (chunks of 8 KB = one K/V box, or 32 KB).
// Prints GB/s per variant and the best rate. Needs sm_90 (bulk copies).
//
// Then the DRAM ceilings, the rate behind the module's stages before the
// fused kernel (they stream Q, K and V from DRAM and write phi(K~)): the
// same ldg and bulk reads over a 4 GB buffer read once, and a 2 GB copy
// (16-byte loads and streaming stores; read plus written bytes over the
// time). bench/attention/targets.py divides the module's bytes by the best
// of them ("best DRAM rate").
//
//   l2_read_bench [--reps N]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/attention/check_cuda.h"
#include "kernels/cuda/sla2_internal.cuh"
#include "kernels/cuda/sla2_sparse_hopper_ptx.cuh"

namespace {

namespace sv = sparsevid::kernels::cuda;
namespace hop = sv::hopper;

// n16: buffer length in 16-byte words, a power of two. Pass r starts r
// words further on, so an SM does not read the same lines every pass.
__global__ void __launch_bounds__(512) LdgRead(const uint4* buf, long long n16, int passes,
                                               unsigned* sink) {
  const long long tid = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  const long long mask = n16 - 1;
  unsigned acc = 0;
  for (int r = 0; r < passes; ++r) {
    for (long long i = tid; i < n16; i += 4 * stride) {
      uint4 v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u)
        v[u] = sv::detail::LoadStream16(buf + ((i + u * stride + r) & mask));
#pragma unroll
      for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
  }
  if (acc == 0x9e3779b9u) sink[0] = acc;  // keeps the loads; never true for the zero buffer
}

// dst = src, 16-byte loads and streaming stores, four in flight per thread.
__global__ void __launch_bounds__(512) CopyStream(const uint4* src, uint4* dst, long long n16) {
  const long long tid = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
  for (long long i = tid; i < n16; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (i + u * stride < n16) v[u] = sv::detail::LoadStream16(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u)
      if (i + u * stride < n16) __stcs(dst + i + u * stride, v[u]);
  }
}

constexpr int kStages = 4;

// One thread per CTA: chunk c = blockIdx.x + i * gridDim.x (mod the buffer's
// chunk count, a power of two) into ring stage i % kStages.
__global__ void BulkRead(const char* buf, long long chunks, int chunk_bytes, int per_cta,
                         unsigned* sink) {
  extern __shared__ __align__(1024) unsigned char ring[];
  __shared__ __align__(8) unsigned long long bars[kStages];
  if (threadIdx.x != 0) return;
  const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
  const uint32_t bar_s = static_cast<uint32_t>(__cvta_generic_to_shared(bars));
  for (int s = 0; s < kStages; ++s) hop::MbarInit(bar_s + 8 * s, 1);
  hop::FenceBarrierInit();
  for (int i = 0; i < per_cta; ++i) {
    const int s = i % kStages;
    const uint32_t fill = static_cast<uint32_t>(i / kStages);
    if (fill > 0) hop::MbarWait(bar_s + 8 * s, (fill - 1) & 1);  // the stage's previous copy
    const long long c = (blockIdx.x + static_cast<long long>(i) * gridDim.x) & (chunks - 1);
    hop::MbarArriveExpectTx(bar_s + 8 * s, chunk_bytes);
    hop::BulkLoad(ring_s + s * chunk_bytes, buf + c * chunk_bytes, chunk_bytes, bar_s + 8 * s);
  }
  for (int i = per_cta > kStages ? per_cta - kStages : 0; i < per_cta; ++i)
    hop::MbarWait(bar_s + 8 * (i % kStages), static_cast<uint32_t>(i / kStages) & 1);
  if (ring[0] == 0xAB) sink[0] = ring[1];
}

template <typename F>
float MedianMs(F&& launch, int reps) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  launch();  // warm-up: the buffer is in L2 from here on
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    CHECK_CUDA(cudaEventRecord(a));
    launch();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float t = 0.f;
    CHECK_CUDA(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CHECK_CUDA(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--reps")) {
      reps = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "unknown option %s\nusage: %s [--reps N]\n", argv[i], argv[0]);
      return 2;
    }
  }
  if (reps < 1) {
    std::fprintf(stderr, "--reps must be at least 1\n");
    return 2;
  }
  int dev = 0, sms = 0, major = 0, l2 = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CHECK_CUDA(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  CHECK_CUDA(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, sms, l2 >> 20);
  if (major < 9) {
    std::printf("SKIPPED: bulk copies need sm_90\n");
    return 77;
  }
  unsigned* sink = nullptr;
  CHECK_CUDA(cudaMalloc(&sink, sizeof(unsigned)));
  std::printf("%-22s %9s %9s %9s\n", "variant", "buffer_MB", "chunk_KB", "GB/s");
  // GB/s of LdgRead over `bytes` of buf, `passes` times. Each thread's
  // last round issues 4 loads up to 3 grid strides past the end (wrapped
  // to the start; with an 8 MB buffer that is a second pass): count the
  // loads it issues, not the buffer.
  auto ldg_rate = [&](const char* buf, long long bytes, int passes, int threads) {
    const float ms = MedianMs(
        [&] {
          LdgRead<<<sms * (2048 / threads), threads>>>(reinterpret_cast<const uint4*>(buf),
                                                       bytes / 16, passes, sink);
        },
        reps);
    const long long stride = static_cast<long long>(sms) * 2048, n16 = bytes / 16;
    long long loads = 0;
    for (long long t = 0; t < stride; ++t) loads += 4 * ((n16 - t + 4 * stride - 1) / (4 * stride));
    return static_cast<double>(loads) * passes * 16 / (ms * 1e-3) / 1e9;
  };
  // GB/s of BulkRead: `chunk`-byte copies, ctas_per_sm CTAs an SM, `passes`
  // times over `bytes` of buf.
  auto bulk_rate = [&](const char* buf, long long bytes, int passes, int chunk, int ctas_per_sm) {
    const long long chunks = bytes / chunk;
    const int per_cta = static_cast<int>(chunks * passes / (sms * ctas_per_sm));
    const int smem = kStages * chunk;
    CHECK_CUDA(cudaFuncSetAttribute(BulkRead, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const float ms = MedianMs(
        [&] { BulkRead<<<sms * ctas_per_sm, 32, smem>>>(buf, chunks, chunk, per_cta, sink); },
        reps);
    return static_cast<double>(per_cta) * sms * ctas_per_sm * chunk / (ms * 1e-3) / 1e9;
  };
  double best = 0;
  for (const long long mb : {8LL, 16LL, 32LL}) {
    if ((mb << 20) > l2) continue;  // must stay L2-resident
    const long long bytes = mb << 20;
    char* buf = nullptr;
    CHECK_CUDA(cudaMalloc(&buf, bytes));
    CHECK_CUDA(cudaMemset(buf, 0, bytes));
    // ~4 GB per timed launch, so the launch itself is noise (8 passes over
    // 8 MB took ~16 us and measured half the rate).
    const int passes = static_cast<int>((4LL << 30) / bytes);
    for (const int threads : {256, 512}) {
      const double gbs = ldg_rate(buf, bytes, passes, threads);
      best = std::max(best, gbs);
      char name[32];
      std::snprintf(name, sizeof name, "ldg %dx%d", 2048 / threads, threads);
      std::printf("%-22s %9lld %9s %9.0f\n", name, mb, "-", gbs);
    }
    for (const int chunk_kb : {8, 32}) {
      for (const int ctas_per_sm : {1, 2}) {
        const double gbs = bulk_rate(buf, bytes, passes, chunk_kb << 10, ctas_per_sm);
        best = std::max(best, gbs);
        char name[32];
        std::snprintf(name, sizeof name, "bulk %d CTA/SM", ctas_per_sm);
        std::printf("%-22s %9lld %9d %9.0f\n", name, mb, chunk_kb, gbs);
      }
    }
    CHECK_CUDA(cudaFree(buf));
  }
  std::printf("best L2 read rate: %.2f TB/s\n", best / 1e3);

  // DRAM: buffers far beyond L2, each byte moved once per timed launch.
  double dram_best = 0;
  {
    const long long bytes = 4LL << 30;
    char* buf = nullptr;
    CHECK_CUDA(cudaMalloc(&buf, bytes));
    CHECK_CUDA(cudaMemset(buf, 1, bytes));
    for (const int threads : {256, 512}) {
      const double gbs = ldg_rate(buf, bytes, 1, threads);
      dram_best = std::max(dram_best, gbs);
      std::printf("dram ldg %dx%-11d %9lld %9s %9.0f\n", 2048 / threads, threads, bytes >> 20, "-",
                  gbs);
    }
    for (const int ctas_per_sm : {1, 2}) {
      const double gbs = bulk_rate(buf, bytes, 1, 32 << 10, ctas_per_sm);
      dram_best = std::max(dram_best, gbs);
      std::printf("dram bulk %d CTA/SM     %9lld %9d %9.0f\n", ctas_per_sm, bytes >> 20, 32, gbs);
    }
    // Copy: the first half into the second.
    const long long half16 = bytes / 32;
    const uint4* src = reinterpret_cast<const uint4*>(buf);
    uint4* dst = reinterpret_cast<uint4*>(buf) + half16;
    const float ms =
        MedianMs([&] { CopyStream<<<sms * 4, 512>>>(src, dst, half16); }, reps);
    const double gbs = static_cast<double>(bytes) / (ms * 1e-3) / 1e9;  // read + written
    dram_best = std::max(dram_best, gbs);
    std::printf("dram copy 4x512         %9lld %9s %9.0f\n", bytes >> 20, "-", gbs);
    CHECK_CUDA(cudaFree(buf));
  }
  std::printf("best DRAM rate: %.2f TB/s\n", dram_best / 1e3);
  CHECK_CUDA(cudaFree(sink));
  return 0;
}
