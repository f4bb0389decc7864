// CudaBackend against CpuBackend, op by op, on random inputs at the shapes
// the models use (and odd ones). Without a GPU the op tests are skipped
// (GTEST_SKIP: ctest lists them as skipped) and only the factory's error
// paths run.
//
// Tolerances (relative L2 of GPU vs CPU output):
//  - f32 ops: 1e-5 (same formulas; only the summation order and the exp/tanh
//    implementations differ; f32 GEMMs are full-f32 cuBLAS, no TF32);
//  - Linear with bf16 weights: 1e-2 (x is rounded to bf16, 2^-9 relative);
//    f16 weights: 2e-3 (2^-12);
//  - SLA2: 1e-2 (P and out in bf16 on the GPU, f32 on the CPU; inputs are
//    bf16-exact for both), low-bit 3e-2 (docs/cuda-kernels.md), with routing
//    made unambiguous by planted query/key block affinities.
#include "kernels/cuda/cuda_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "kernels/backend.h"

namespace sparsevid::kernels {
namespace {

double RelL2(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::vector<float> Random(int64_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

Tensor RandomHost(const Shape& shape, uint64_t seed, float scale = 1.f) {
  return Tensor::FromVector(Random(NumElements(shape), seed, scale), shape);
}

// Host tensor of the given 16-bit dtype rounded from f32 values.
Tensor Host16(const Tensor& f32, DType dtype) {
  Tensor t = Tensor::Empty(f32.shape(), dtype);
  const float* src = f32.f32();
  uint16_t* dst = t.data<uint16_t>();
  for (int64_t i = 0; i < f32.numel(); ++i) {
    dst[i] = dtype == DType::kBF16 ? FloatToBf16(src[i]) : FloatToF16(src[i]);
  }
  return t;
}

TEST(CudaBackendFactory, NegativeIndexIsInvalidArgument) {
  auto b = cuda::CreateCudaBackend(-1);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << b.status();
}

TEST(CudaBackendFactory, MissingGpuOrIndexIsAClearStatus) {
  auto b = cuda::CreateCudaBackend(0);
  if (!b.ok()) {  // no GPU (or driver) on this machine
    EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
    EXPECT_NE(std::string(b.status().message()).find("no usable CUDA device"), std::string::npos)
        << b.status();
    return;
  }
  EXPECT_EQ((*b)->device(), DeviceKind::kCuda);
  auto far = cuda::CreateCudaBackend(4096);
  EXPECT_EQ(far.status().code(), absl::StatusCode::kInvalidArgument) << far.status();
}

class CudaBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto b = cuda::CreateCudaBackend(0);
    if (b.ok()) gpu_ = b->release();
    cpu_ = CreateCpuBackend(2).release();
  }
  static void TearDownTestSuite() {
    delete gpu_;
    delete cpu_;
    gpu_ = cpu_ = nullptr;
  }
  void SetUp() override {
    if (!gpu_) GTEST_SKIP() << "no CUDA device";
  }
  static Tensor Dev(const Tensor& host) { return gpu_->ToDevice(host); }
  static std::vector<float> Back(const Tensor& dev) { return gpu_->ToHost(dev).ToVector(); }
  // Runs f on both backends with inputs `in` (host) and compares output 0.
  static Backend* gpu_;
  static Backend* cpu_;
};
Backend* CudaBackendTest::gpu_ = nullptr;
Backend* CudaBackendTest::cpu_ = nullptr;

TEST_F(CudaBackendTest, MemoryRoundTripFillCopyConvertAndPeak) {
  gpu_->ResetPeakBytes();
  const int64_t base = gpu_->PeakBytes();
  const Tensor h = RandomHost({7, 33}, 1);
  Tensor d = Dev(h);
  EXPECT_EQ(d.device(), DeviceKind::kCuda);
  EXPECT_EQ(Back(d), h.ToVector());
  EXPECT_GE(gpu_->PeakBytes() - base, static_cast<int64_t>(h.nbytes()));
  Tensor e = gpu_->Empty({7, 33});
  gpu_->Copy(d, e);
  EXPECT_EQ(Back(e), h.ToVector());
  for (DType t : {DType::kF32, DType::kBF16, DType::kF16, DType::kI32, DType::kU8, DType::kI8}) {
    Tensor z = gpu_->Empty({5, 3}, t);
    gpu_->Fill(z, 3.f);
    EXPECT_EQ(Back(gpu_->ToF32(z)), std::vector<float>(15, 3.f)) << DTypeName(t);
    Tensor zc = gpu_->Zeros({4}, t);
    EXPECT_EQ(Back(gpu_->ToF32(zc)), std::vector<float>(4, 0.f)) << DTypeName(t);
  }
  const Tensor b16 = Host16(h, DType::kBF16);
  EXPECT_EQ(Back(gpu_->ToF32(Dev(b16))), b16.ToVector());
  // Host <-> device Copy in both directions.
  Tensor host_dst = Tensor::Empty({7, 33});
  gpu_->Copy(d, host_dst);
  EXPECT_EQ(host_dst.ToVector(), h.ToVector());
  // Views (Narrow0) share storage.
  Tensor rows = d.Narrow0(2, 3);
  EXPECT_EQ(Back(rows), h.Narrow0(2, 3).ToVector());
}

// Linear, f32 / bf16 / f16 weights, with and without bias, odd sizes.
TEST_F(CudaBackendTest, Linear) {
  struct Case {
    int64_t m, n, k;
    DType wt;
    bool bias;
    double tol;
  };
  for (const Case& c : {Case{2304, 768, 256, DType::kF32, true, 1e-5},
                        Case{37, 65, 129, DType::kF32, false, 1e-5},
                        Case{1, 1536, 256, DType::kF32, true, 1e-5},
                        Case{77, 200, 96, DType::kBF16, true, 1e-2},
                        Case{300, 64, 33, DType::kF16, false, 2e-3}}) {
    const Tensor x = RandomHost({c.m, c.k}, 2);
    const Tensor w32 = RandomHost({c.n, c.k}, 3, 0.1f);
    const Tensor w = c.wt == DType::kF32 ? w32 : Host16(w32, c.wt);
    const Tensor b = RandomHost({c.n}, 4);
    Tensor yc = Tensor::Empty({c.m, c.n});
    cpu_->Linear(x, w, c.bias ? &b : nullptr, yc);
    Tensor yg = gpu_->Empty({c.m, c.n});
    const Tensor bd = Dev(b);
    gpu_->Linear(Dev(x), Dev(w), c.bias ? &bd : nullptr, yg);
    EXPECT_LT(RelL2(Back(yg), yc.ToVector()), c.tol)
        << c.m << "x" << c.n << "x" << c.k << " " << DTypeName(c.wt);
  }
}

TEST_F(CudaBackendTest, Norms) {
  for (auto [rows, d] : std::vector<std::pair<int64_t, int64_t>>{{2304, 256}, {7, 1000}, {3, 5}}) {
    const Tensor x = RandomHost({rows, d}, 5, 3.f);
    const Tensor g = RandomHost({d}, 6), b = RandomHost({d}, 7);
    const Tensor xd = Dev(x), gd = Dev(g), bd = Dev(b);
    Tensor yc = Tensor::Empty({rows, d});
    Tensor yg = gpu_->Empty({rows, d});
    cpu_->LayerNorm(x, &g, &b, 1e-6f, yc);
    gpu_->LayerNorm(xd, &gd, &bd, 1e-6f, yg);
    EXPECT_LT(RelL2(Back(yg), yc.ToVector()), 1e-5) << "LayerNorm " << rows << "x" << d;
    cpu_->LayerNorm(x, nullptr, nullptr, 1e-6f, yc);
    Tensor in_place = Dev(x);
    gpu_->LayerNorm(in_place, nullptr, nullptr, 1e-6f, in_place);
    EXPECT_LT(RelL2(Back(in_place), yc.ToVector()), 1e-5) << "LayerNorm in place";
    cpu_->RmsNorm(x, &g, 1e-6f, yc);
    gpu_->RmsNorm(xd, &gd, 1e-6f, yg);
    EXPECT_LT(RelL2(Back(yg), yc.ToVector()), 1e-5) << "RmsNorm";
    cpu_->RmsNorm(x, nullptr, 1e-6f, yc);
    gpu_->RmsNorm(xd, nullptr, 1e-6f, yg);
    EXPECT_LT(RelL2(Back(yg), yc.ToVector()), 1e-5) << "RmsNorm no gamma";
  }
  const Tensor x = RandomHost({24, 3, 17, 19}, 8);
  const Tensor g = RandomHost({24}, 9);
  Tensor yc = Tensor::Empty(x.shape());
  Tensor yg = gpu_->Empty(x.shape());
  cpu_->ChannelRmsNorm(x, g, yc);
  gpu_->ChannelRmsNorm(Dev(x), Dev(g), yg);
  EXPECT_LT(RelL2(Back(yg), yc.ToVector()), 1e-5) << "ChannelRmsNorm";
}

TEST_F(CudaBackendTest, Elementwise) {
  const Shape s{513, 257};
  const Tensor a = RandomHost(s, 10, 3.f), b = RandomHost(s, 11);
  const Tensor sh = RandomHost({257}, 12), sc = RandomHost({257}, 13);
  const Tensor ad = Dev(a), bd = Dev(b), shd = Dev(sh), scd = Dev(sc);
  Tensor yc = Tensor::Empty(s);
  Tensor yg = gpu_->Empty(s);
  auto check = [&](const char* what) {
    EXPECT_LT(RelL2(Back(yg), yc.ToVector()), 1e-5) << what;
  };
  cpu_->GeluTanh(a, yc); gpu_->GeluTanh(ad, yg); check("GeluTanh");
  cpu_->Silu(a, yc); gpu_->Silu(ad, yg); check("Silu");
  cpu_->Add(a, b, yc); gpu_->Add(ad, bd, yg); check("Add");
  cpu_->Mul(a, b, yc); gpu_->Mul(ad, bd, yg); check("Mul");
  cpu_->Scale(a, -0.37f, yc); gpu_->Scale(ad, -0.37f, yg); check("Scale");
  cpu_->Clamp(a, -1.f, 0.5f, yc); gpu_->Clamp(ad, -1.f, 0.5f, yg); check("Clamp");
  cpu_->Modulate(a, sh, sc, yc); gpu_->Modulate(ad, shd, scd, yg); check("Modulate");
  cpu_->Softmax(a, yc); gpu_->Softmax(ad, yg); check("Softmax");
  // In place (y aliases x), as the DiT calls them.
  Tensor xg = Dev(a);
  gpu_->GeluTanh(xg, xg);
  cpu_->GeluTanh(a, yc);
  EXPECT_LT(RelL2(Back(xg), yc.ToVector()), 1e-5) << "GeluTanh in place";
  // AddGated with and without a gate.
  for (bool gated : {true, false}) {
    Tensor xc = a.Clone();
    Tensor xd = Dev(a);
    cpu_->AddGated(xc, b, gated ? &sh : nullptr);
    gpu_->AddGated(xd, bd, gated ? &shd : nullptr);
    EXPECT_LT(RelL2(Back(xd), xc.ToVector()), 1e-5) << "AddGated " << gated;
  }
  // Softmax of a fully masked row is zeros, a partly masked row ignores -inf.
  std::vector<float> m(2 * 5, -std::numeric_limits<float>::infinity());
  m[5] = 1.f;
  m[6] = 2.f;
  const Tensor mh = Tensor::FromVector(m, {2, 5});
  Tensor mc = Tensor::Empty({2, 5});
  Tensor mg = gpu_->Empty({2, 5});
  cpu_->Softmax(mh, mc);
  gpu_->Softmax(Dev(mh), mg);
  const std::vector<float> got = Back(mg);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i], 0.f);
  EXPECT_LT(RelL2(got, mc.ToVector()), 1e-6);
}

TEST_F(CudaBackendTest, Layout) {
  // Permute f32 and bf16 (16-bit path), u8 (8-bit path).
  const Tensor x = RandomHost({2, 3, 5, 7}, 14);
  const std::vector<int> perm{2, 0, 3, 1};
  Tensor yc = Tensor::Empty({5, 2, 7, 3});
  Tensor yg = gpu_->Empty({5, 2, 7, 3});
  cpu_->Permute(x, perm, yc);
  gpu_->Permute(Dev(x), perm, yg);
  EXPECT_EQ(Back(yg), yc.ToVector());
  const Tensor x16 = Host16(x, DType::kBF16);
  Tensor y16c = Tensor::Empty({5, 2, 7, 3}, DType::kBF16);
  Tensor y16g = gpu_->Empty({5, 2, 7, 3}, DType::kBF16);
  cpu_->Permute(x16, perm, y16c);
  gpu_->Permute(Dev(x16), perm, y16g);
  EXPECT_EQ(Back(y16g), y16c.ToVector());
  Tensor x8 = Tensor::Empty({4, 6}, DType::kU8);
  for (int i = 0; i < 24; ++i) x8.data<uint8_t>()[i] = static_cast<uint8_t>(i * 7);
  Tensor y8c = Tensor::Empty({6, 4}, DType::kU8);
  Tensor y8g = gpu_->Empty({6, 4}, DType::kU8);
  cpu_->Permute(x8, {1, 0}, y8c);
  gpu_->Permute(Dev(x8), {1, 0}, y8g);
  EXPECT_EQ(Back(y8g), y8c.ToVector());

  // Concat along dims 0, 1 and the last.
  const Tensor a = RandomHost({3, 4, 5}, 15), b = RandomHost({3, 2, 5}, 16);
  Tensor cc = Tensor::Empty({3, 6, 5});
  Tensor cg = gpu_->Empty({3, 6, 5});
  cpu_->Concat({a, b}, 1, cc);
  gpu_->Concat({Dev(a), Dev(b)}, 1, cg);
  EXPECT_EQ(Back(cg), cc.ToVector());
  const Tensor c = RandomHost({3, 4, 2}, 17);
  Tensor lc = Tensor::Empty({3, 4, 7});
  Tensor lg = gpu_->Empty({3, 4, 7});
  cpu_->Concat({a, c}, -1, lc);
  gpu_->Concat({Dev(a), Dev(c)}, -1, lg);
  EXPECT_EQ(Back(lg), lc.ToVector());
  Tensor fc = Tensor::Empty({6, 4, 5});
  Tensor fg = gpu_->Empty({6, 4, 5});
  cpu_->Concat({a, a}, 0, fc);
  gpu_->Concat({Dev(a), Dev(a)}, 0, fg);
  EXPECT_EQ(Back(fg), fc.ToVector());

  // Embedding from f32 and bf16 tables.
  const Tensor table = RandomHost({50, 33}, 18);
  const std::vector<int32_t> ids{0, 7, 49, 7, 3};
  for (DType t : {DType::kF32, DType::kBF16}) {
    const Tensor tab = t == DType::kF32 ? table : Host16(table, t);
    Tensor ec = Tensor::Empty({5, 33});
    Tensor eg = gpu_->Empty({5, 33});
    cpu_->Embedding(tab, ids, ec);
    gpu_->Embedding(Dev(tab), ids, eg);
    EXPECT_EQ(Back(eg), ec.ToVector()) << DTypeName(t);
  }

  // Nearest 2x upsampling.
  const Tensor u = RandomHost({3, 2, 5, 7}, 19);
  Tensor uc = Tensor::Empty({3, 2, 10, 14});
  Tensor ug = gpu_->Empty({3, 2, 10, 14});
  cpu_->UpsampleNearest2x(u, uc);
  gpu_->UpsampleNearest2x(Dev(u), ug);
  EXPECT_EQ(Back(ug), uc.ToVector());
}

TEST_F(CudaBackendTest, Rope3d) {
  for (int64_t d : {32, 64, 128}) {
    const TokenGrid grid{3, 4, 5};
    const Tensor x = RandomHost({grid.tokens(), 4, d}, 20);
    Tensor xc = x.Clone();
    Tensor xg = Dev(x);
    cpu_->Rope3d(xc, grid);
    gpu_->Rope3d(xg, grid);
    EXPECT_LT(RelL2(Back(xg), xc.ToVector()), 1e-6) << "d " << d;
  }
}

// Both paths: the direct kernel (narrow layers, 3x3 or 1x1 spatial) and
// im2col + GEMM (SPARSEVID_CONV3D=im2col, and every layer the direct kernel
// does not take).
TEST_F(CudaBackendTest, Conv3d) {
  struct Case {
    Shape x, w;
    int pad;
    bool bias;
    DType wt;
    double tol;
  };
  for (const Case& c : {Case{{12, 6, 17, 19}, {24, 12, 3, 3, 3}, 1, true, DType::kF32, 1e-5},
                        Case{{16, 3, 8, 8}, {24, 16, 1, 1, 1}, 0, true, DType::kF32, 1e-5},
                        Case{{8, 2, 9, 11}, {4, 8, 1, 3, 3}, 1, false, DType::kF32, 1e-5},
                        Case{{5, 4, 7, 6}, {3, 5, 2, 3, 3}, 0, true, DType::kBF16, 1e-5},
                        // several tiles, channels not a multiple of 8, the VAE's kernels
                        Case{{12, 5, 40, 70}, {12, 12, 3, 3, 3}, 1, true, DType::kF32, 1e-5},
                        Case{{12, 5, 33, 35}, {3, 12, 3, 3, 3}, 1, true, DType::kF32, 1e-5},
                        Case{{8, 5, 33, 35}, {16, 8, 3, 1, 1}, 0, true, DType::kF32, 1e-5},
                        Case{{48, 3, 12, 10}, {48, 48, 3, 3, 3}, 1, false, DType::kF32, 1e-5},
                        // wider than the direct kernel takes
                        Case{{80, 3, 6, 5}, {72, 80, 3, 3, 3}, 1, true, DType::kF32, 1e-5}}) {
    const Tensor x = RandomHost(c.x, 21);
    const Tensor w32 = RandomHost(c.w, 22, 0.2f);
    const Tensor w = c.wt == DType::kF32 ? w32 : Host16(w32, c.wt);
    const Tensor b = RandomHost({c.w[0]}, 23);
    const Shape ys{c.w[0], c.x[1] - c.w[2] + 1, c.x[2] + 2 * c.pad - c.w[3] + 1,
                   c.x[3] + 2 * c.pad - c.w[4] + 1};
    Tensor yc = Tensor::Empty(ys);
    const Tensor bd = Dev(b);
    cpu_->Conv3d(x, w, c.bias ? &b : nullptr, c.pad, c.pad, yc);
    for (const bool im2col : {false, true}) {
      if (im2col) setenv("SPARSEVID_CONV3D", "im2col", 1);
      Tensor yg = gpu_->Empty(ys);
      gpu_->Fill(yg, 1e6f);  // every output element must be written
      gpu_->Conv3d(Dev(x), Dev(w), c.bias ? &bd : nullptr, c.pad, c.pad, yg);
      unsetenv("SPARSEVID_CONV3D");
      EXPECT_LT(RelL2(Back(yg), yc.ToVector()), c.tol)
          << ShapeString(c.w) << (im2col ? " im2col" : " default");
    }
  }
}

TEST_F(CudaBackendTest, Attention) {
  struct Case {
    int64_t lq, lk, h, d, key_valid;
    bool bias;
  };
  for (const Case& c : {Case{2304, 2304, 4, 64, -1, false},  // dense self-attention
                        Case{300, 32, 4, 64, 20, false},     // cross-attention, padded text
                        Case{13, 13, 2, 16, -1, true},       // umT5 (relative bias)
                        Case{5, 7, 3, 8, 0, false}}) {       // no valid key -> zeros
    const Tensor q = RandomHost({c.lq, c.h, c.d}, 24), k = RandomHost({c.lk, c.h, c.d}, 25),
                 v = RandomHost({c.lk, c.h, c.d}, 26), bias = RandomHost({c.h, c.lq, c.lk}, 27);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.d));
    Tensor oc = Tensor::Empty({c.lq, c.h, c.d});
    Tensor og = gpu_->Empty({c.lq, c.h, c.d});
    const Tensor bd = Dev(bias);
    cpu_->Attention(q, k, v, scale, c.bias ? &bias : nullptr, c.key_valid, oc);
    gpu_->Attention(Dev(q), Dev(k), Dev(v), scale, c.bias ? &bd : nullptr, c.key_valid, og);
    const std::vector<float> got = Back(og);
    if (c.key_valid == 0) {
      EXPECT_EQ(got, std::vector<float>(got.size(), 0.f));
    } else {
      EXPECT_LT(RelL2(got, oc.ToVector()), 1e-5) << c.lq << "x" << c.lk;
    }
  }
}

// q/k with planted block affinities (query block i prefers key block
// (5 i + 3) mod T_n by a wide margin) and one kept block per row, so the
// GPU and CPU routers keep the same blocks.
struct Sla2Inputs {
  Tensor q, k, v, proj_q, proj_k;
};

Sla2Inputs PlantedSla2(int64_t L, int64_t H, int64_t d, uint64_t seed) {
  const int64_t T_m = (L + 127) / 128, T_n = (L + 63) / 64;
  const std::vector<float> dirs = Random(T_n * d, seed, 1.f);
  std::vector<float> q = Random(L * H * d, seed + 1, 0.3f), k = Random(L * H * d, seed + 2, 0.3f);
  for (int64_t t = 0; t < L; ++t) {
    const int64_t jq = (5 * (t / 128) + 3) % T_n, jk = t / 64;
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t c = 0; c < d; ++c) {
        q[(t * H + h) * d + c] += 2.f * dirs[jq * d + c];
        k[(t * H + h) * d + c] += 2.f * dirs[jk * d + c];
      }
    }
  }
  (void)T_m;
  // The GPU operator takes bf16 q/k/v: give both backends bf16-exact values,
  // so the comparison measures the operator, not the input rounding (which
  // the large planted logits would amplify).
  for (std::vector<float>* t : {&q, &k}) {
    for (float& x : *t) x = Bf16ToFloat(FloatToBf16(x));
  }
  std::vector<float> v = Random(L * H * d, seed + 5);
  for (float& x : v) x = Bf16ToFloat(FloatToBf16(x));
  std::vector<float> pq = Random(d * d, seed + 3, 0.01f), pk = Random(d * d, seed + 4, 0.01f);
  for (int64_t c = 0; c < d; ++c) pq[c * d + c] += 1.f, pk[c * d + c] += 1.f;
  return {Tensor::FromVector(q, {L, H, d}), Tensor::FromVector(k, {L, H, d}),
          Tensor::FromVector(v, {L, H, d}), Tensor::FromVector(pq, {d, d}),
          Tensor::FromVector(pk, {d, d})};
}

TEST_F(CudaBackendTest, Sla2Attention) {
  struct Case {
    int64_t L, H, d;
    float keep;
    bool low_bit, alpha, resample_alpha, mask;
    double tol;
  };
  for (const Case& c : {Case{2304, 4, 64, 0.03f, false, true, false, false, 1e-2},  // shipped model
                        Case{2304, 4, 64, 0.03f, true, true, false, false, 3e-2},
                        Case{1000, 2, 128, 0.07f, false, true, true, false, 1e-2},
                        Case{700, 3, 64, 0.1f, false, false, false, false, 1e-2},
                        Case{700, 3, 64, 0.1f, false, true, false, true, 1e-2},
                        Case{300, 2, 32, 0.5f, false, true, false, false, 1e-5}}) {  // host path
    SCOPED_TRACE(::testing::Message() << "L " << c.L << " H " << c.H << " d " << c.d
                                      << (c.low_bit ? " low-bit" : "") << (c.mask ? " mask" : ""));
    const Sla2Inputs in = PlantedSla2(c.L, c.H, c.d, 100 + c.L);
    const int64_t T_m = (c.L + 127) / 128, T_n = (c.L + 63) / 64;
    const int64_t T_a = c.resample_alpha ? T_m + 3 : T_m;
    std::vector<float> a = Random(c.H * T_a, 30);
    for (float& x : a) x = 1.f / (1.f + std::exp(-x));
    const Tensor alpha = Tensor::FromVector(a, {c.H, T_a});
    Tensor mask = Tensor::Empty({c.H, T_m, T_n}, DType::kU8);
    std::mt19937 rng(31);
    for (int64_t i = 0; i < mask.numel(); ++i) mask.data<uint8_t>()[i] = (rng() % 4) == 0;
    for (int64_t i = 0; i < T_n; ++i) mask.data<uint8_t>()[i] = 1;  // one all-kept row

    Sla2Params pc;
    pc.keep_ratio = c.keep;
    pc.low_bit = c.low_bit;
    pc.proj_q = &in.proj_q;
    pc.proj_k = &in.proj_k;
    if (c.alpha) pc.alpha = &alpha;
    if (c.mask) pc.block_mask = &mask;
    Sla2Params pg = pc;
    const Tensor pqd = Dev(in.proj_q), pkd = Dev(in.proj_k), ad = Dev(alpha), md = Dev(mask);
    pg.proj_q = &pqd;
    pg.proj_k = &pkd;
    if (c.alpha) pg.alpha = &ad;
    if (c.mask) pg.block_mask = &md;

    Tensor oc = Tensor::Empty({c.L, c.H, c.d});
    Tensor og = gpu_->Empty({c.L, c.H, c.d});
    Sla2Stats sc, sg;
    cpu_->Sla2Attention(in.q, in.k, in.v, pc, oc, &sc);
    gpu_->Sla2Attention(Dev(in.q), Dev(in.k), Dev(in.v), pg, og, &sg);
    EXPECT_LT(RelL2(Back(og), oc.ToVector()), c.tol);
    EXPECT_EQ(sg.kept_blocks, sc.kept_blocks);
    EXPECT_EQ(sg.total_blocks, sc.total_blocks);
    EXPECT_NEAR(sg.alpha_mean, sc.alpha_mean, 1e-6);
  }
}

}  // namespace
// Statistics of several calls queued back to back complete when the queue
// drains (the engine reads a step's per-layer statistics once), and the span
// timer adds up the spans it was given without draining the queue itself.
TEST_F(CudaBackendTest, Sla2StatsCompleteWhenTheQueueDrainsAndSpansAddUp) {
  const int64_t L = 700, H = 3, d = 64, T_m = (L + 127) / 128;
  const Sla2Inputs in = PlantedSla2(L, H, d, 77);
  std::vector<float> a = Random(H * T_m, 78);
  for (float& x : a) x = 1.f / (1.f + std::exp(-x));
  const Tensor alpha = Tensor::FromVector(a, {H, T_m});
  const Tensor qd = Dev(in.q), kd = Dev(in.k), vd = Dev(in.v);
  const Tensor pqd = Dev(in.proj_q), pkd = Dev(in.proj_k), ad = Dev(alpha);
  const float keeps[3] = {0.05f, 0.2f, 0.5f};
  Sla2Stats want[3], got[3];
  std::unique_ptr<SpanTimer> timer = gpu_->NewSpanTimer();
  std::vector<Tensor> outs;
  for (int i = 0; i < 3; ++i) {
    Sla2Params pc;
    pc.keep_ratio = keeps[i];
    pc.proj_q = &in.proj_q;
    pc.proj_k = &in.proj_k;
    pc.alpha = &alpha;
    Tensor oc = Tensor::Empty({L, H, d});
    cpu_->Sla2Attention(in.q, in.k, in.v, pc, oc, &want[i]);
    Sla2Params pg = pc;
    pg.proj_q = &pqd;
    pg.proj_k = &pkd;
    pg.alpha = &ad;
    outs.push_back(gpu_->Empty({L, H, d}));
    timer->Begin();
    gpu_->Sla2Attention(qd, kd, vd, pg, outs.back(), &got[i]);
    timer->End();
  }
  gpu_->Synchronize();
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(::testing::Message() << "keep " << keeps[i]);
    EXPECT_GT(got[i].kept_blocks, 0);
    EXPECT_EQ(got[i].kept_blocks, want[i].kept_blocks);
    EXPECT_EQ(got[i].total_blocks, want[i].total_blocks);
    EXPECT_NEAR(got[i].alpha_mean, want[i].alpha_mean, 1e-6);
  }
  EXPECT_LT(got[0].kept_blocks, got[1].kept_blocks);
  const double seconds = timer->TakeSeconds();
  EXPECT_GT(seconds, 0.0);
  EXPECT_LT(seconds, 10.0);
  EXPECT_EQ(timer->TakeSeconds(), 0.0);  // the spans were taken
}

}  // namespace sparsevid::kernels
