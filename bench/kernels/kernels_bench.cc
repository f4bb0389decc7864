// Kernel benchmark: prints tables (median of repeated runs after a warm-up).
//   1. GEMM: our Linear vs raw cblas_sgemm on the DiT's shapes (GFLOP/s, ratio).
//   2. Conv3d: ours vs raw cblas_sgemm on a prebuilt im2col (VAE shapes).
//   3. Attention: dense vs SLA2 (fp32 and low-bit) at video token counts
//      (ms, speedup) and the backend's peak bytes per call.
// Usage: kernels_bench [--threads N] [--quick]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/backend.h"

namespace sv = sparsevid::kernels;

namespace {

double MedianSeconds(int reps, const std::function<void()>& fn) {
  fn();  // warm-up: page faults, BLAS buffers, OpenMP pool
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

sv::Tensor Random(sv::Backend& be, const sv::Shape& shape, uint64_t seed, float lo, float hi) {
  sv::Tensor t = be.Empty(shape);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return t;
}

// Activations of a video DiT are spatially correlated; a smooth positional
// signal plus noise gives the router something realistic to choose from.
sv::Tensor Correlated(sv::Backend& be, int64_t L, int64_t H, int64_t d, uint64_t seed) {
  sv::Tensor t = Random(be, {L, H, d}, seed, -0.5f, 0.5f);
  for (int64_t n = 0; n < L; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t c = 0; c < d; ++c)
        t.f32()[(n * H + h) * d + c] += 2.f * std::sin(0.01f * n * (c % 5 + 1) + h + c);
  return t;
}

void BenchGemm(sv::Backend& be, int threads, int reps) {
  std::printf("\n== GEMM: y[M,N] = x[M,K] w[N,K]^T (f32) ==\n");
  std::printf("%6s %6s %6s | %12s %12s %7s\n", "M", "N", "K", "Linear GF/s", "sgemm GF/s", "ratio");
  const int shapes[][3] = {{576, 1536, 384}, {3328, 2048, 512}, {1024, 1024, 1024}};
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    sv::Tensor x = Random(be, {M, K}, 1, -1, 1), w = Random(be, {N, K}, 2, -1, 1);
    sv::Tensor y = be.Empty({M, N}), y2 = be.Empty({M, N});
    const double flop = 2.0 * M * N * K;
    const double t_lin = MedianSeconds(reps, [&] { be.Linear(x, w, nullptr, y); });
    // Raw OpenBLAS with its own thread pool (the backend keeps it at 1).
    openblas_set_num_threads(threads);
    const double t_raw = MedianSeconds(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, x.f32(), K, w.f32(), K,
                  0.f, y2.f32(), N);
    });
    openblas_set_num_threads(1);
    std::printf("%6d %6d %6d | %12.1f %12.1f %7.3f\n", M, N, K, flop / t_lin * 1e-9,
                flop / t_raw * 1e-9, t_raw / t_lin);
  }
}

// The VAE decoder's 3x3x3 convolutions at the default 256x256 video: our
// Conv3d (im2col in L2-sized tiles, one GEMM per tile) against one
// multi-threaded OpenBLAS sgemm over the whole im2col matrix built
// beforehand, i.e. against the GEMM alone of the untiled method, its im2col
// pass not even counted.
void BenchConv3d(sv::Backend& be, int threads, int reps) {
  std::printf("\n== Conv3d 3x3x3, pad 1 (VAE decoder shapes), x[C,T,H,W] ==\n");
  std::printf("%4s %4s %2s %4s %4s | %12s %12s %7s\n", "C", "O", "T", "H", "W", "Conv3d GF/s",
              "sgemm GF/s", "ratio");
  const int shapes[][5] = {{12, 12, 3, 256, 256}, {12, 3, 3, 256, 256}, {24, 24, 3, 128, 128},
                           {48, 48, 3, 64, 64}};
  for (const auto& s : shapes) {
    const int C = s[0], O = s[1], T = s[2], H = s[3], W = s[4];
    const int64_t K = int64_t{C} * 27, To = T - 2, N = To * H * W;
    sv::Tensor x = Random(be, {C, T, H, W}, 6, -1, 1), w = Random(be, {O, C, 3, 3, 3}, 7, -0.1f, 0.1f);
    sv::Tensor y = be.Empty({O, To, H, W});
    const double flop = 2.0 * O * K * N;
    const double t_conv = MedianSeconds(reps, [&] { be.Conv3d(x, w, nullptr, 1, 1, y); });
    std::vector<float> col(static_cast<size_t>(K * N)), y2(static_cast<size_t>(O * N));
    for (int64_t kk = 0; kk < K; ++kk) {  // im2col, untimed
      const int64_t dx = kk % 3, dy = (kk / 3) % 3, dt = (kk / 9) % 3, c = kk / 27;
      for (int64_t t = 0; t < To; ++t)
        for (int64_t oy = 0; oy < H; ++oy)
          for (int64_t ox = 0; ox < W; ++ox) {
            const int64_t iy = oy + dy - 1, ix = ox + dx - 1;
            col[kk * N + (t * H + oy) * W + ox] =
                iy < 0 || iy >= H || ix < 0 || ix >= W
                    ? 0.f
                    : x.f32()[((c * T + t + dt) * H + iy) * W + ix];
          }
    }
    openblas_set_num_threads(threads);
    const double t_raw = MedianSeconds(reps, [&] {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, N, K, 1.f, w.f32(), K, col.data(),
                  N, 0.f, y2.data(), N);
    });
    openblas_set_num_threads(1);
    std::printf("%4d %4d %2d %4d %4d | %12.1f %12.1f %7.3f\n", C, O, T, H, W, flop / t_conv * 1e-9,
                flop / t_raw * 1e-9, t_raw / t_conv);
  }
}

void BenchAttention(sv::Backend& be, int reps, bool quick) {
  std::printf("\n== Attention: dense vs SLA2 (b_q 128, b_k 64, random alpha in [0.3,0.9]) ==\n");
  std::printf("%5s %2s %4s %5s | %9s %9s %9s | %8s %8s | %9s %9s\n", "L", "H", "d", "keep",
              "dense ms", "sla2 ms", "lowbit ms", "speedup", "lb spdup", "dense MiB", "sla2 MiB");
  const std::vector<int64_t> Ls = quick ? std::vector<int64_t>{2304} : std::vector<int64_t>{2304, 4096};
  const std::vector<int64_t> Hs = quick ? std::vector<int64_t>{2} : std::vector<int64_t>{2, 4};
  for (int64_t L : Ls)
    for (int64_t H : Hs)
      for (int64_t d : {64, 128}) {
        sv::Tensor q = Correlated(be, L, H, d, 3), k = Correlated(be, L, H, d, 4);
        sv::Tensor v = Random(be, {L, H, d}, 5, -1, 1);
        sv::Tensor out = be.Empty({L, H, d});
        const int64_t Tm = (L + 127) / 128;
        sv::Tensor alpha = Random(be, {H, Tm}, 6, 0.3f, 0.9f);
        be.ResetPeakBytes();
        const int64_t base = be.PeakBytes();
        const double t_dense = MedianSeconds(reps, [&] {
          be.Attention(q, k, v, 1.f / std::sqrt(float(d)), nullptr, -1, out);
        });
        const double dense_mib = (be.PeakBytes() - base) / 1048576.0;
        for (float keep : {0.03f, 0.05f}) {
          sv::Sla2Params p;
          p.keep_ratio = keep;
          p.alpha = &alpha;
          be.ResetPeakBytes();
          const double t_sla2 = MedianSeconds(reps, [&] { be.Sla2Attention(q, k, v, p, out, nullptr); });
          const double sla2_mib = (be.PeakBytes() - base) / 1048576.0;
          p.low_bit = true;
          const double t_low = MedianSeconds(reps, [&] { be.Sla2Attention(q, k, v, p, out, nullptr); });
          std::printf("%5lld %2lld %4lld %4.0f%% | %9.2f %9.2f %9.2f | %7.1fx %7.1fx | %9.2f %9.2f\n",
                      static_cast<long long>(L), static_cast<long long>(H),
                      static_cast<long long>(d), keep * 100, t_dense * 1e3, t_sla2 * 1e3,
                      t_low * 1e3, t_dense / t_sla2, t_dense / t_low, dense_mib, sla2_mib);
        }
      }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 0;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--quick]\n", argv[0]);
      return 2;
    }
  }
  auto be = sv::CreateCpuBackend(threads);
  std::printf("backend: %s\n", be->name().c_str());
  BenchGemm(*be, threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()),
            quick ? 3 : 5);
  BenchConv3d(*be, threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()),
              quick ? 3 : 5);
  BenchAttention(*be, quick ? 2 : 3, quick);
  return 0;
}
