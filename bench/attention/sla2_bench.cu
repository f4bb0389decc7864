// SLA2 CUDA benchmark at the Wan2.1 shapes: the sparse kernel alone and the
// whole module (router + linear + sparse + blend), bf16 and low-bit, keep 3 %
// and 5 %. Prints ms, effective TFLOPS (4 B H L^2 D / t) and percent of the
// ideal time of docs/kernels.md §4 (kept fraction of the dense work at the
// tensor-core peak: 989 TFLOPS bf16, 1979 TOPS 8-bit). Writes the block lists
// it routed (lut_<shape>_<keep>.bin) so bench/attention/peers.py can time
// FlexAttention on the same blocks in the same run. Times are GPU time, the
// median over --iters calls (see MedianMs / TimedMs; peers.py times the same
// way).
//
//   sla2_bench [--lut-dir DIR] [--iters N] [--shapes 1.3B,14B] [--sparse-only 1]
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/attention/check_cuda.h"
#include "kernels/cuda/sla2_cuda.h"

namespace sv = sparsevid::kernels::cuda;

// Built with -DSLA2_PROFILE_TILES: cycles per phase of the bf16 Hopper
// kernels' tiles (sla2_sparse_hopper.cu) for the rows that run them.
#ifdef SLA2_PROFILE_TILES
namespace sparsevid::kernels::cuda {
void Sla2TileProfileDump(const char* label);
}
#define PROFILE_RESET() sparsevid::kernels::cuda::Sla2TileProfileDump(nullptr)
#define PROFILE_DUMP(x) sparsevid::kernels::cuda::Sla2TileProfileDump(x)
#else
#define PROFILE_RESET() (void)0
#define PROFILE_DUMP(x) (void)0
#endif

namespace {

void CheckStatus(const sv::Sla2Status& st) {
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.message.c_str());
    std::exit(1);
  }
}

// Deterministic pseudo-normal bf16 values (sum of uniforms), no host pass.
__global__ void FillKernel(__nv_bfloat16* x, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ seed ^ static_cast<uint32_t>(i >> 32);
    float s = 0.f;
    for (int r = 0; r < 4; ++r) {
      h ^= h >> 15;
      h *= 0x2C1B3C6Du;
      h ^= h >> 12;
      h *= 0x297A2D39u;
      h ^= h >> 15;
      s += (h & 0xFFFFFF) * (1.f / 16777216.f);
    }
    x[i] = __float2bfloat16((s - 2.f) * 1.7320508f * scale);  // variance ~ scale^2
  }
}

struct Shape {
  const char* name;
  int batch, heads;
  int64_t len;
  int dim;
};

// Keeps the GPU busy for `cycles` so that the timed call's host-side work
// (tensor maps, launch) happens while the GPU still has queued work: the
// events then time GPU execution only, as nvbench does. peers.py times the
// PyTorch peers the same way (torch.cuda._sleep).
__global__ void SpinKernel(long long cycles) {
  const long long t0 = clock64();
  while (clock64() - t0 < cycles) {
  }
}

// GPU time of one call of fn, in ms (events around it, a spin ahead).
template <typename F>
float TimedMs(F& fn, cudaEvent_t a, cudaEvent_t b) {
  SpinKernel<<<1, 1>>>(2000000);  // ~1 ms
  CHECK_CUDA(cudaEventRecord(a));
  fn();
  CHECK_CUDA(cudaEventRecord(b));
  CHECK_CUDA(cudaEventSynchronize(b));
  float ms = 0.f;
  CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

template <typename F>
float MedianMs(F&& fn, int iters) {
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  // Warm-up: at least 3 calls and 50 ms of GPU work (clocks ramp up, L2
  // and TLBs reach their steady state); peers.py warms up the same way.
  float warm_ms = 0.f;
  for (int i = 0; i < 3 || warm_ms < 50.f; ++i) warm_ms += TimedMs(fn, a, b);
  std::vector<float> ts;
  for (int i = 0; i < iters; ++i) ts.push_back(TimedMs(fn, a, b));
  CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void WriteLut(const std::string& path, const sv::Sla2Problem& p, const sv::Sla2Workspace& ws) {
  const int64_t rows = int64_t{p.batch} * p.heads * p.q_blocks();
  std::vector<int32_t> counts(rows), lut(rows * ws.lut_capacity());
  CHECK_CUDA(cudaMemcpy(counts.data(), ws.counts(), counts.size() * 4, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(lut.data(), ws.lut(), lut.size() * 4, cudaMemcpyDeviceToHost));
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return;
  }
  const int32_t header[5] = {p.batch, p.heads, static_cast<int32_t>(p.q_blocks()),
                             static_cast<int32_t>(p.k_blocks()),
                             static_cast<int32_t>(ws.lut_capacity())};
  std::fwrite(header, 4, 5, f);
  std::fwrite(counts.data(), 4, counts.size(), f);
  std::fwrite(lut.data(), 4, lut.size(), f);
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  std::string lut_dir = ".";
  int iters = 20;
  std::string shapes = "1.3B,14B";
  bool sparse_only_run = false;  // only the bare sparse kernels (quick A/B runs)
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--lut-dir")) lut_dir = argv[i + 1];
    else if (!std::strcmp(argv[i], "--iters")) iters = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--sparse-only")) sparse_only_run = std::atoi(argv[i + 1]) != 0;
    else {
      std::fprintf(stderr,
                   "usage: %s [--lut-dir DIR] [--iters N] [--shapes 1.3B,14B] [--sparse-only 1]\n",
                   argv[0]);
      return 2;
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  const Shape all[] = {{"1.3B", 1, 12, 32760, 128}, {"14B", 1, 40, 75600, 128}};
  std::printf("%-5s %-8s %-5s %-9s %9s %10s %8s\n", "shape", "mode", "keep", "part", "ms",
              "eff_TFLOPS", "%ideal");
  for (const Shape& s : all) {
    if (shapes.find(s.name) == std::string::npos) continue;
    const size_t n = size_t(s.batch) * s.len * s.heads * s.dim;
    __nv_bfloat16 *q, *k, *v, *out;
    CHECK_CUDA(cudaMalloc(&q, n * 2));
    CHECK_CUDA(cudaMalloc(&k, n * 2));
    CHECK_CUDA(cudaMalloc(&v, n * 2));
    CHECK_CUDA(cudaMalloc(&out, n * 2));
    FillKernel<<<1024, 256>>>(q, n, 1u, 1.f);
    FillKernel<<<1024, 256>>>(k, n, 2u, 1.f);
    FillKernel<<<1024, 256>>>(v, n, 3u, 1.f);
    const int tm = static_cast<int>((s.len + 127) / 128);
    std::vector<float> eye(s.dim * s.dim, 0.f), alpha(size_t(s.heads) * tm, 0.7f);
    for (int i = 0; i < s.dim; ++i) eye[i * s.dim + i] = 1.f;
    float *proj, *dalpha;
    CHECK_CUDA(cudaMalloc(&proj, eye.size() * 4));
    CHECK_CUDA(cudaMalloc(&dalpha, alpha.size() * 4));
    CHECK_CUDA(cudaMemcpy(proj, eye.data(), eye.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dalpha, alpha.data(), alpha.size() * 4, cudaMemcpyHostToDevice));
    const double dense_flops = 4.0 * s.batch * s.heads * double(s.len) * s.len * s.dim;
    const int shape_iters = s.len > 50000 ? std::max(5, iters / 2) : iters;
    sv::Sla2Workspace ws;
    for (int low_bit = 0; low_bit < 2; ++low_bit) {
      for (float keep : {0.03f, 0.05f}) {
        sv::Sla2Problem p;
        p.batch = s.batch;
        p.heads = s.heads;
        p.seq_len = s.len;
        p.head_dim = s.dim;
        p.q = q;
        p.k = k;
        p.v = v;
        p.out = out;
        p.stride_l = int64_t{s.heads} * s.dim;
        p.stride_h = s.dim;
        p.stride_b = s.len * p.stride_l;
        p.keep_ratio = keep;
        p.proj_q = proj;
        p.proj_k = proj;
        p.alpha = dalpha;
        p.low_bit = low_bit;
        CheckStatus(ws.Reserve(p));
        const double density = double(p.keep_count()) / p.k_blocks();
        const double ideal_ms = density * dense_flops / (low_bit ? 1979e12 : 989e12) * 1e3;
        auto report = [&](const char* part, float ms) {
          std::printf("%-5s %-8s %-5.2f %-9s %9.3f %10.1f %7.1f%%\n", s.name,
                      low_bit ? "low-bit" : "bf16", keep, part, ms, dense_flops / (ms * 1e-3) / 1e12,
                      100.0 * ideal_ms / ms);
          std::fflush(stdout);
        };
        auto stage = [&](sv::Sla2Stage st, const sv::Sla2Problem& pp) {
          CheckStatus(sv::Sla2RunStage(st, pp, ws));
        };
        // Route once (and quantise) so the sparse kernel alone has its inputs.
        stage(sv::Sla2Stage::kPrepare, p);
        stage(sv::Sla2Stage::kRoute, p);
        stage(sv::Sla2Stage::kQuantize, p);
        CHECK_CUDA(cudaDeviceSynchronize());
        if (!low_bit) {
          char name[256];
          std::snprintf(name, sizeof name, "%s/lut_%s_%.2f.bin", lut_dir.c_str(), s.name, keep);
          WriteLut(name, p, ws);
        }
        sv::Sla2Problem sparse_only = p;
        sparse_only.alpha = nullptr;  // O = O_s: the bare sparse kernel, no blend read
        report("sparse", MedianMs([&] { stage(sv::Sla2Stage::kSparse, sparse_only); }, shape_iters));
        std::printf("%-5s %-8s %-5.2f sparse kernel: %s\n", s.name, low_bit ? "low-bit" : "bf16",
                    keep, ws.sparse_kernel());
        {
          // Both kernels in the same run: mma.sync (sm80 path) and the Hopper
          // wgmma/TMA kernel (SLA2_SPARSE_KERNEL picks, see sla2_host.cu).
          const char* prev = std::getenv("SLA2_SPARSE_KERNEL");
          const std::string saved = prev ? prev : "";
          for (const char* k : {"mma", "hopper"}) {
            setenv("SLA2_SPARSE_KERNEL", k, 1);
            report(k[0] == 'm' ? "sparse.mma" : "sparse.wg",
                   MedianMs([&] { stage(sv::Sla2Stage::kSparse, sparse_only); }, shape_iters));
          }
          if (prev) setenv("SLA2_SPARSE_KERNEL", saved.c_str(), 1);
          else unsetenv("SLA2_SPARSE_KERNEL");
          {
            // Same run, the Hopper kernel in steps of one kept block instead
            // of two (SLA2_HOPPER_PAIRS=0).
            setenv("SLA2_HOPPER_PAIRS", "0", 1);
            PROFILE_RESET();
            report("sparse.1blk",
                   MedianMs([&] { stage(sv::Sla2Stage::kSparse, sparse_only); }, shape_iters));
            PROFILE_DUMP("sparse.1blk");
            unsetenv("SLA2_HOPPER_PAIRS");
          }
        }
        if (sparse_only_run) continue;
        report("router", MedianMs([&] {
                 stage(sv::Sla2Stage::kPrepare, p);
                 stage(sv::Sla2Stage::kRoute, p);
               }, shape_iters));
        if (low_bit) report("quantize", MedianMs([&] { stage(sv::Sla2Stage::kQuantize, p); }, shape_iters));
        report("linear", MedianMs([&] { stage(sv::Sla2Stage::kLinear, p); }, shape_iters));
        // The sparse kernel with the blend (reads the linear branch's value).
        PROFILE_RESET();
        report("sparse+bl", MedianMs([&] { stage(sv::Sla2Stage::kSparse, p); }, shape_iters));
        PROFILE_DUMP("sparse+bl");
        report("module", MedianMs([&] { CheckStatus(sv::Sla2Forward(p, ws)); }, shape_iters));
        {
          // The same module call with its stage boundaries timed by events
          // (Sla2Workspace::set_timeline): ms from the call's start to each,
          // medians over the calls. Beside each other the route and the
          // linear states slow each other down, which the m.* rows below
          // (stages one after another) do not show.
          ws.set_timeline(true);
          std::vector<std::vector<float>> tl(5);
          for (int it = 0; it < shape_iters + 3; ++it) {
            SpinKernel<<<1, 1>>>(2000000);
            CheckStatus(sv::Sla2Forward(p, ws));
            const sv::Sla2Workspace::Timeline t = ws.forward_timeline();
            if (!t.valid) {
              std::fprintf(stderr, "forward timeline not recorded\n");
              return 1;
            }
            const float ms[] = {t.prepared, t.states, t.routed, t.linear, t.end};
            for (int i = 0; it >= 3 && i < 5; ++i) tl[i].push_back(ms[i]);
          }
          ws.set_timeline(false);
          const char* names[] = {"t.prepared", "t.states", "t.routed", "t.linear", "t.end"};
          for (int i = 0; i < 5; ++i) {
            std::sort(tl[i].begin(), tl[i].end());
            report(names[i], tl[i][tl[i].size() / 2]);
          }
        }
        const std::string linear = ws.linear_kernel();
        const bool fused = linear == "fused" || linear == "hopper";  // the phi(K~) form
        // Same run, the stages one after another (no side stream for the linear states).
        setenv("SLA2_OVERLAP", "0", 1);
        report("module.seq", MedianMs([&] { CheckStatus(sv::Sla2Forward(p, ws)); }, shape_iters));
        unsetenv("SLA2_OVERLAP");
        if (fused) {
          // Same run, the linear branch in its own kernels (SLA2_FUSED_LINEAR=0).
          setenv("SLA2_FUSED_LINEAR", "0", 1);
          report("module.unf", MedianMs([&] { CheckStatus(sv::Sla2Forward(p, ws)); }, shape_iters));
          unsetenv("SLA2_FUSED_LINEAR");
          CheckStatus(sv::Sla2Forward(p, ws));
        }
        std::printf("%-5s %-8s %-5.2f linear branch: %s\n", s.name, low_bit ? "low-bit" : "bf16",
                    keep,
                    linear == "fused"    ? "fused into the Hopper sparse kernel"
                    : linear == "hopper" ? "the Hopper kernel's linear part alone (low-bit)"
                                         : "own kernels");
        if (!low_bit && linear == "fused") {
          // The work of the module's two serial parts, for its floor on this
          // machine (targets.py divides it by the run's DRAM and GEMM
          // ceilings): the stages before the fused kernel move Q and K (the
          // pooling pass), K and V (the linear states) from DRAM and write
          // phi(K~) (padded key blocks); the fused kernel's tensor work is
          // Q K^T, P V and G over the kept blocks plus phi(Q) H_i per tile.
          const double elems = double(s.batch) * s.heads * s.len * s.dim;
          const double phik = double(s.batch) * s.heads * p.k_blocks() * 64 * s.dim;
          const double prefix_mb = (4 * elems + phik) * 2 / 1e6;
          const double tiles = double(s.batch) * s.heads * p.q_blocks();
          const double per_tile = double(p.keep_count()) * 3 * 2 * 128 * 64 * s.dim +
                                  2.0 * 128 * s.dim * s.dim;
          std::printf("floor-work %s bf16 %.2f prefix_MB %.1f fused_GFLOP %.1f\n", s.name, keep,
                      prefix_mb, tiles * per_tile / 1e9);
        }
        // Where the module's time goes: events between its stages, in
        // Sla2Forward's order.
        const sv::Sla2Stage order[] = {sv::Sla2Stage::kPrepare, sv::Sla2Stage::kRoute,
                                       sv::Sla2Stage::kLinear, sv::Sla2Stage::kQuantize,
                                       sv::Sla2Stage::kSparse};
        const char* names[] = {"m.prepare", "m.route", "m.linear", "m.quantize", "m.sparse"};
        cudaEvent_t ev[6];
        for (cudaEvent_t& e : ev) CHECK_CUDA(cudaEventCreate(&e));
        std::vector<std::vector<float>> split(5);
        for (int it = 0; it < shape_iters + 2; ++it) {
          CHECK_CUDA(cudaEventRecord(ev[0]));
          for (int st = 0; st < 5; ++st) {
            stage(order[st], p);
            CHECK_CUDA(cudaEventRecord(ev[st + 1]));
          }
          CHECK_CUDA(cudaEventSynchronize(ev[5]));
          for (int st = 0; it >= 2 && st < 5; ++st) {
            float ms = 0.f;
            CHECK_CUDA(cudaEventElapsedTime(&ms, ev[st], ev[st + 1]));
            split[st].push_back(ms);
          }
        }
        for (int st = 0; st < 5; ++st) {
          if (!low_bit && order[st] == sv::Sla2Stage::kQuantize) continue;
          std::sort(split[st].begin(), split[st].end());
          report(names[st], split[st][split[st].size() / 2]);
        }
        for (cudaEvent_t& e : ev) cudaEventDestroy(e);
      }
    }
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(out);
    cudaFree(proj);
    cudaFree(dalpha);
  }
  return 0;
}
