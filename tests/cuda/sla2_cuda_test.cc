// GPU test of the SLA2 CUDA operator against the CPU reference of the same
// masked operator (tests/cuda/sla2_reference.h). Argument validation is
// checked everywhere; the GPU cases print "SKIPPED: no CUDA device" and exit 77 (ctest: skipped)
// on machines without a GPU (CI), and run through scripts/gpu_test.sh on the
// GPU machine.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/sla2_cuda.h"
#include "kernels/cuda/sla2_persistent_grid.h"
#include "tests/cuda/sla2_reference.h"

namespace sv = sparsevid::kernels::cuda;
namespace ref = sparsevid::kernels::cuda::testing;

namespace {

int g_failures = 0;

void Check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "[ OK ]  " : "[FAIL]  ", what.c_str());
  if (!ok) ++g_failures;
}

uint16_t ToBf16(float f) {  // round to nearest even
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float FromBf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#define CUDA_OK(expr)                                                                   \
  do {                                                                                  \
    const cudaError_t e_ = (expr);                                                      \
    if (e_ != cudaSuccess) {                                                            \
      std::printf("[FAIL]  CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, \
                  __LINE__);                                                            \
      ++g_failures;                                                                     \
      return;                                                                           \
    }                                                                                   \
  } while (0)

// ---------------------------------------------------------------- validation

void ValidationTests() {
  alignas(16) static uint8_t fake[64];  // never dereferenced: validation only
  sv::Sla2Problem good;
  good.batch = 1;
  good.seq_len = 1000;
  good.heads = 2;
  good.head_dim = 64;
  good.q = good.k = good.v = fake;
  good.out = fake + 16;
  good.stride_l = 2 * 64;
  good.stride_h = 64;
  good.stride_b = 1000 * 128;
  Check(sv::ValidateSla2Problem(good).ok(), "validation accepts a well-formed problem");
  auto expect_error = [&](sv::Sla2Problem p, const char* keyword, const char* what) {
    const sv::Sla2Status st = sv::ValidateSla2Problem(p);
    Check(!st.ok() && st.message.find(keyword) != std::string::npos,
          std::string("validation rejects ") + what + " (" + st.message + ")");
  };
  sv::Sla2Problem p = good;
  p.head_dim = 96;
  expect_error(p, "head_dim", "head_dim 96");
  p = good;
  p.q = nullptr;
  expect_error(p, "device pointers", "a null q");
  p = good;
  p.keep_ratio = 0.f;
  expect_error(p, "keep_ratio", "keep_ratio 0");
  p = good;
  p.keep_ratio = std::nanf("");
  expect_error(p, "keep_ratio", "keep_ratio NaN");
  p = good;
  p.block_k = 128;
  expect_error(p, "block_q=128", "an unsupported block size");
  p = good;
  p.q = fake + 2;
  expect_error(p, "aligned", "a misaligned q");
  p = good;
  p.proj_q = reinterpret_cast<const float*>(fake + 4);
  expect_error(p, "proj_q", "a misaligned proj_q");
  p = good;
  p.batch = 300;
  p.heads = 300;
  expect_error(p, "batch * heads", "batch * heads over 65535");
  p = good;
  p.stride_l = 130;
  expect_error(p, "multiples of 8", "a stride that is not a multiple of 8");
  p = good;
  p.seq_len = 0;
  expect_error(p, "seq_len", "seq_len 0");
  p = good;
  p.out = const_cast<void*>(p.q);
  expect_error(p, "alias", "out aliasing q");
  sv::Sla2Workspace ws;
  p = good;
  p.head_dim = 32;
  const sv::Sla2Status st = ws.Reserve(p);
  Check(!st.ok(), "workspace reserve reports an invalid problem instead of allocating");
}

// ---------------------------------------------------------------- GPU cases

// kConstantKeys: random Q and V, K constant per channel, so smoothing leaves
// K~ = 0 and every router score is exactly 0 (all ties).
enum class Inputs { kRandom, kCorrelated, kConstantKeys };
enum class Layout { kBLHD, kBHLD };
enum class MaskKind { kRouter, kRandomEdges, kRandomShared };

struct Case {
  std::string name;
  int batch, heads, dim;
  int64_t len;
  float keep;
  bool low_bit, alpha, proj;
  Layout layout;
  Inputs inputs;
  MaskKind mask;
  // > 0: SLA2_HOPPER_MAX_CTAS for this case, so each CTA of the persistent
  // Hopper kernel runs many tiles (phases carried across tiles).
  int max_ctas = 0;
  // "NAME=VALUE" set for this case only, e.g. SLA2_FUSED_LINEAR=0 (the
  // stand-alone linear kernels instead of the linear branch fused into the
  // Hopper sparse kernel) or SLA2_OVERLAP=0 (stages in sequence).
  const char* env = nullptr;
  bool shared_ws = false;    // run on the workspace the previous shared case used
  bool check_stale = false;  // the sparse stage refuses a linear stage of another problem
  bool route_only = false;   // prepare and route only: the block lists are what is checked
  int proj_only = 0;         // with proj: 1 = proj_q alone, 2 = proj_k alone
};

// Sets an environment variable for a scope and restores what was there.
class ScopedEnv {
 public:
  ScopedEnv(const std::string& name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name.c_str())) old_ = old, had_ = true;
    if (value) setenv(name.c_str(), value, 1);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

bool EnvIs(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string(v) == value;
}

bool g_hopper = false;  // device is sm_90: the fused path is expected where it applies

// Values in logical [B, L, H, D] order, bf16-representable.
void MakeInputs(const Case& c, std::mt19937_64& rng, std::vector<float>& q,
                std::vector<float>& k, std::vector<float>& v) {
  const size_t n = static_cast<size_t>(c.batch) * c.len * c.heads * c.dim;
  q.resize(n);
  k.resize(n);
  v.resize(n);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> bias(c.dim), freq(c.dim), phase(c.dim);
  for (int d = 0; d < c.dim; ++d) {
    bias[d] = 3.f * nd(rng);  // K channel offsets: what smoothing removes
    freq[d] = 0.002f + 0.05f * std::abs(nd(rng));
    phase[d] = 6.28f * std::abs(nd(rng));
  }
  size_t idx = 0;
  for (int b = 0; b < c.batch; ++b)
    for (int64_t l = 0; l < c.len; ++l)
      for (int h = 0; h < c.heads; ++h)
        for (int d = 0; d < c.dim; ++d, ++idx) {
          float qv, kv, vv;
          if (c.inputs == Inputs::kRandom || c.inputs == Inputs::kConstantKeys) {
            qv = 1.5f * nd(rng);
            kv = c.inputs == Inputs::kRandom ? nd(rng) : bias[d];
            vv = nd(rng);
          } else {  // smooth in token order with noise, like video features
            const float wave = std::sin(freq[d] * l + phase[d] + h);
            qv = 2.f * wave + 0.4f * nd(rng);
            kv = bias[d] + 1.5f * std::sin(freq[d] * l * 1.3f + phase[d]) + 0.4f * nd(rng);
            vv = std::cos(freq[d] * l + h) + 0.3f * nd(rng);
          }
          q[idx] = FromBf16(ToBf16(qv));
          k[idx] = FromBf16(ToBf16(kv));
          v[idx] = FromBf16(ToBf16(vv));
        }
}

struct Strides {
  int64_t b, l, h;
};
Strides StridesOf(const Case& c) {
  if (c.layout == Layout::kBLHD)
    return {c.len * c.heads * c.dim, int64_t{c.heads} * c.dim, c.dim};
  return {c.len * c.heads * c.dim, c.dim, c.len * c.dim};
}

std::vector<uint16_t> ToDeviceLayout(const Case& c, const std::vector<float>& x) {
  const Strides s = StridesOf(c);
  std::vector<uint16_t> out(x.size());
  size_t idx = 0;
  for (int b = 0; b < c.batch; ++b)
    for (int64_t l = 0; l < c.len; ++l)
      for (int h = 0; h < c.heads; ++h)
        for (int d = 0; d < c.dim; ++d, ++idx) out[b * s.b + l * s.l + h * s.h + d] = ToBf16(x[idx]);
  return out;
}

double RelL2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// The routing the workspace holds, as a mask: its block lists well formed,
// and against the CPU router (differences only at near-ties) or the
// external mask. gpu_mask gets the routing as a [rows][T_n] mask.
void CheckBlockLists(const Case& c, const ref::RefProblem& rp, const std::vector<float>& q,
                     const std::vector<float>& k, const ref::BlockMask& ext,
                     const sv::Sla2Workspace& ws, ref::BlockMask& gpu_mask) {
  // Block lists back as a mask; check their form.
  const int tm = rp.q_blocks(), tn = rp.k_blocks();
  const size_t rows = static_cast<size_t>(c.batch) * c.heads * tm;
  std::vector<int32_t> lut(rows * ws.lut_capacity()), counts(rows);
  CUDA_OK(cudaMemcpy(lut.data(), ws.lut(), lut.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(counts.data(), ws.counts(), counts.size() * 4, cudaMemcpyDeviceToHost));
  gpu_mask.assign(rows * tn, 0);
  bool well_formed = true;
  for (size_t r = 0; r < rows; ++r) {
    if (counts[r] < 0 || counts[r] > ws.lut_capacity()) {
      well_formed = false;
      continue;
    }
    for (int x = 0; x < counts[r]; ++x) {
      const int j = lut[r * ws.lut_capacity() + x];
      if (j < 0 || j >= tn || (x > 0 && j <= lut[r * ws.lut_capacity() + x - 1])) well_formed = false;
      else gpu_mask[r * tn + j] = 1;
    }
  }
  Check(well_formed, c.name + ": block lists ascending, in range, counts valid");

  if (c.mask == MaskKind::kRouter) {
    std::vector<double> scores;
    const ref::BlockMask cpu_mask = ref::RouteReference(rp, q, k, &scores);
    const int keep = rp.keep_count();
    int differing = 0, bad = 0;
    bool counts_ok = true;
    for (size_t r = 0; r < rows; ++r) {
      counts_ok = counts_ok && counts[r] == keep;
      if (std::equal(cpu_mask.begin() + r * tn, cpu_mask.begin() + (r + 1) * tn,
                     gpu_mask.begin() + r * tn))
        continue;
      ++differing;
      // A differing selection is acceptable only at a near-tie of scores.
      std::vector<double> row(scores.begin() + r * tn, scores.begin() + (r + 1) * tn);
      std::vector<double> sorted = row;
      std::sort(sorted.begin(), sorted.end(), std::greater<double>());
      const double kth = sorted[keep - 1];
      const double tol = 1e-4 * (std::abs(sorted[0]) + std::abs(sorted[tn - 1]) + 1e-6);
      for (int j = 0; j < tn; ++j)
        if (gpu_mask[r * tn + j] && row[j] < kth - tol) ++bad;
    }
    Check(counts_ok, c.name + ": router keeps k = " + std::to_string(keep) + " blocks per row");
    Check(bad == 0, c.name + ": router top-k matches the CPU router (" +
                        std::to_string(differing) + " of " + std::to_string(rows) +
                        " rows differ, all at near-ties)");
    if (c.inputs == Inputs::kConstantKeys)
      Check(differing == 0, c.name + ": all scores tie: the lowest block indices are kept, as "
                                     "the CPU router keeps them");
  } else {
    ref::BlockMask want(rows * tn);
    for (int b = 0; b < c.batch; ++b) {
      const size_t src = c.mask == MaskKind::kRandomShared ? 0 : static_cast<size_t>(b);
      std::copy(ext.begin() + src * c.heads * tm * tn, ext.begin() + (src + 1) * c.heads * tm * tn,
                want.begin() + static_cast<size_t>(b) * c.heads * tm * tn);
    }
    Check(want == gpu_mask, c.name + ": external mask converted to identical block lists");
  }
}

void RunCase(const Case& c, uint64_t seed) {
  std::printf("--- %s: B%d H%d D%d L%lld keep %.3f %s%s%s%s\n", c.name.c_str(), c.batch,
              c.heads, c.dim, static_cast<long long>(c.len), c.keep, c.low_bit ? "low-bit" : "bf16",
              c.alpha ? " +alpha" : "",
              !c.proj ? "" : c.proj_only == 1 ? " +proj_q" : c.proj_only == 2 ? " +proj_k" : " +proj",
              c.route_only ? " (route only)" : "");
  std::mt19937_64 rng(seed);
  std::vector<float> q, k, v;
  MakeInputs(c, rng, q, k, v);
  ref::RefProblem rp;
  rp.batch = c.batch;
  rp.heads = c.heads;
  rp.head_dim = c.dim;
  rp.seq_len = c.len;
  rp.keep_ratio = c.keep;
  rp.low_bit = c.low_bit;
  const int tm = rp.q_blocks(), tn = rp.k_blocks();
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.15f, 0.9f);
  std::vector<float> wq(c.dim * c.dim), wk(c.dim * c.dim), alpha(c.heads * tm);
  for (int i = 0; i < c.dim; ++i)
    for (int j = 0; j < c.dim; ++j) {
      wq[i * c.dim + j] = (i == j) + 0.2f * nd(rng) / std::sqrt(float(c.dim));
      wk[i * c.dim + j] = (i == j) + 0.2f * nd(rng) / std::sqrt(float(c.dim));
    }
  for (float& a : alpha) a = ud(rng);
  const bool use_wq = c.proj && c.proj_only != 2, use_wk = c.proj && c.proj_only != 1;
  if (use_wq) rp.proj_q = &wq;
  if (use_wk) rp.proj_k = &wk;
  if (c.alpha) rp.alpha = &alpha;

  ref::BlockMask ext;
  if (c.mask != MaskKind::kRouter) {
    const int mb = c.mask == MaskKind::kRandomShared ? 1 : c.batch;
    ext.assign(static_cast<size_t>(mb) * c.heads * tm * tn, 0);
    std::bernoulli_distribution keep(0.3);
    for (auto& x : ext) x = keep(rng);
    // Edge rows: all blocks kept (linear branch must be 0), only the
    // partial last block, and none (sparse branch 0).
    for (int j = 0; j < tn; ++j) ext[j] = 1;
    if (tm > 1)
      for (int j = 0; j < tn; ++j) ext[tn + j] = (j == tn - 1);
    if (tm > 2)
      for (int j = 0; j < tn; ++j) ext[2 * tn + j] = 0;
  }

  // Device buffers.
  const size_t n = q.size();
  void *dq, *dk, *dv, *dout;
  float *dwq, *dwk, *dalpha;
  uint8_t* dmask = nullptr;
  CUDA_OK(cudaMalloc(&dq, n * 2));
  CUDA_OK(cudaMalloc(&dk, n * 2));
  CUDA_OK(cudaMalloc(&dv, n * 2));
  CUDA_OK(cudaMalloc(&dout, n * 2));
  CUDA_OK(cudaMalloc(&dwq, wq.size() * 4));
  CUDA_OK(cudaMalloc(&dwk, wk.size() * 4));
  CUDA_OK(cudaMalloc(&dalpha, alpha.size() * 4));
  CUDA_OK(cudaMemcpy(dq, ToDeviceLayout(c, q).data(), n * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dk, ToDeviceLayout(c, k).data(), n * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dv, ToDeviceLayout(c, v).data(), n * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemset(dout, 0xff, n * 2));  // NaN poison: every element must be written
  CUDA_OK(cudaMemcpy(dwq, wq.data(), wq.size() * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dwk, wk.data(), wk.size() * 4, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dalpha, alpha.data(), alpha.size() * 4, cudaMemcpyHostToDevice));
  if (!ext.empty()) {
    CUDA_OK(cudaMalloc(&dmask, ext.size()));
    CUDA_OK(cudaMemcpy(dmask, ext.data(), ext.size(), cudaMemcpyHostToDevice));
  }

  sv::Sla2Problem p;
  p.batch = c.batch;
  p.heads = c.heads;
  p.head_dim = c.dim;
  p.seq_len = c.len;
  p.q = dq;
  p.k = dk;
  p.v = dv;
  p.out = dout;
  const Strides s = StridesOf(c);
  p.stride_b = s.b;
  p.stride_l = s.l;
  p.stride_h = s.h;
  p.keep_ratio = c.keep;
  p.proj_q = use_wq ? dwq : nullptr;
  p.proj_k = use_wk ? dwk : nullptr;
  p.alpha = c.alpha ? dalpha : nullptr;
  p.low_bit = c.low_bit;
  p.block_mask = dmask;
  p.mask_stride_b = c.mask == MaskKind::kRandomShared ? 0 : int64_t{c.heads} * tm * tn;

  static sv::Sla2Workspace shared;
  sv::Sla2Workspace own;
  sv::Sla2Workspace& ws = c.shared_ws ? shared : own;
  const std::string env = c.env ? c.env : "";
  std::optional<ScopedEnv> case_env;
  if (const size_t eq = env.find('='); eq != std::string::npos)
    case_env.emplace(env.substr(0, eq), env.c_str() + eq + 1);
  ScopedEnv ctas_env("SLA2_HOPPER_MAX_CTAS",
                     c.max_ctas > 0 ? std::to_string(c.max_ctas).c_str() : nullptr);
  auto free_all = [&] {
    for (void* ptr : {dq, dk, dv, dout, static_cast<void*>(dwq), static_cast<void*>(dwk),
                      static_cast<void*>(dalpha), static_cast<void*>(dmask)})
      if (ptr) cudaFree(ptr);
  };
  if (c.route_only) {
    sv::Sla2Status st = sv::Sla2RunStage(sv::Sla2Stage::kPrepare, p, ws);
    if (st.ok()) st = sv::Sla2RunStage(sv::Sla2Stage::kRoute, p, ws);
    Check(st.ok(), c.name + ": prepare and route return OK " + st.message);
    CUDA_OK(cudaDeviceSynchronize());
    const char* want_route = EnvIs("SLA2_ROUTE_KERNEL", "generic") ? "generic" : "tiles";
    Check(std::string(ws.route_kernel()) == want_route,
          c.name + ": route ran as \"" + want_route + "\" (ran \"" + ws.route_kernel() + "\")");
    ref::BlockMask gpu_mask;
    CheckBlockLists(c, rp, q, k, ext, ws, gpu_mask);
    free_all();
    return;
  }
  const sv::Sla2Status st = sv::Sla2Forward(p, ws);
  Check(st.ok(), c.name + ": forward returns OK " + st.message);
  const char* kernel_env = std::getenv("SLA2_SPARSE_KERNEL");
  const bool hopper_selected = !kernel_env || !*kernel_env || std::string(kernel_env) == "hopper";
  const bool want_fused = g_hopper && hopper_selected && c.alpha && !c.low_bit &&
                          !EnvIs("SLA2_FUSED_LINEAR", "0");
  Check(ws.linear_fused() == want_fused,
        c.name + (want_fused ? ": linear branch ran fused into the Hopper kernel"
                             : ": linear branch ran in its own kernels"));
  const bool hopper_path = g_hopper && hopper_selected;
  const bool single_steps = EnvIs("SLA2_HOPPER_PAIRS", "0");
  const std::string want_kernel = c.low_bit    ? (!hopper_path    ? "lowbit-mma"
                                                  : single_steps ? "lowbit-hopper"
                                                                 : "lowbit-hopper-pairs")
                                  : want_fused ? "hopper-fused"
                                  : hopper_path ? (single_steps ? "hopper" : "hopper-pairs")
                                                : "mma";
  const bool hopper_linear = hopper_path && !EnvIs("SLA2_FUSED_LINEAR", "0");
  const std::string want_linear = !c.alpha        ? ""
                                  : !hopper_linear ? "own"
                                  : c.low_bit      ? "hopper"
                                                   : "fused";
  Check(ws.linear_kernel() == want_linear, c.name + ": linear stage ran as \"" + want_linear +
                                               "\" (ran \"" + ws.linear_kernel() + "\")");
  Check(ws.sparse_kernel() == want_kernel,
        c.name + ": sparse stage ran the " + want_kernel + " kernel (ran " + ws.sparse_kernel() + ")");
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaGetLastError());

  ref::BlockMask gpu_mask;
  CheckBlockLists(c, rp, q, k, ext, ws, gpu_mask);

  std::vector<uint16_t> raw(n);
  CUDA_OK(cudaMemcpy(raw.data(), dout, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> out(n);
  size_t idx = 0, non_finite = 0;
  for (int b = 0; b < c.batch; ++b)
    for (int64_t l = 0; l < c.len; ++l)
      for (int h = 0; h < c.heads; ++h)
        for (int d = 0; d < c.dim; ++d, ++idx) {
          out[idx] = FromBf16(raw[b * s.b + l * s.l + h * s.h + d]);
          if (!std::isfinite(out[idx])) ++non_finite;
        }
  Check(non_finite == 0, c.name + ": every output element written and finite (" +
                             std::to_string(non_finite) + " not)");
  if (c.check_stale && want_fused) {
    // Nothing is launched on a refusal, so the output checked below stays.
    sv::Sla2Problem other = p;
    other.seq_len = p.seq_len - 1;
    sv::Sla2Status st2 = sv::Sla2RunStage(sv::Sla2Stage::kSparse, other, ws);
    Check(!st2.ok() && st2.message.find("another problem") != std::string::npos,
          c.name + ": sparse stage refuses the fused inputs of another problem (" + st2.message +
              ")");
    sv::Sla2Problem same_len = p;
    same_len.alpha = dwq;  // another alpha buffer: another problem
    st2 = sv::Sla2RunStage(sv::Sla2Stage::kSparse, same_len, ws);
    Check(!st2.ok() && st2.message.find("another problem") != std::string::npos,
          c.name + ": sparse stage refuses them for another alpha");
  }
  const std::vector<float> want = ref::Sla2Reference(rp, q, k, v, gpu_mask);
  const double err = RelL2(out, want);
  const double tol = c.low_bit ? 3e-2 : 1e-2;
  char buf[160];
  std::snprintf(buf, sizeof buf, ": rel L2 vs fp32 reference %.3e (limit %.0e)", err, tol);
  Check(err <= tol, c.name + buf);
  if (c.low_bit) {  // informative: distance to the unquantised operator
    ref::RefProblem hp = rp;
    hp.low_bit = false;
    std::printf("        rel L2 of low-bit vs bf16 operator: %.3e\n",
                RelL2(out, ref::Sla2Reference(hp, q, k, v, gpu_mask)));
  }
  free_all();
}

// ------------------------------------------------- quantisation, bit-exact
// The quantise stage against the CPU on the same inputs, byte for byte:
// INT8 Q and K~ (round half away of x / s), FP8-E4M3 V^T (v / s_v, nearest
// even), with the K mean and V scales the prepare stage computed. Besides
// random values, some blocks hold values crafted so that x * (1 / s) rounds
// otherwise than x / s, which a multiply-only kernel would get wrong.

// The key at position p of a 32-key chunk of V^T: the layout contract of
// Fp8KeyOfPosition in kernels/cuda/mma_sm80.cuh (a device header), restated.
constexpr int KeyOfPosition(int p) {
  return (p / 16) * 16 + ((p % 4) / 2) * 8 + 2 * ((p % 16) / 4) + (p % 2);
}

float DecodeE4m3(uint8_t byte) {
  const int e = (byte >> 3) & 15, m = byte & 7;
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -9)
                           : std::ldexp(1.f + static_cast<float>(m) / 8.f, e - 7);
  return (byte & 0x80) ? -mag : mag;
}

// Positive bf16 values x <= amax (amax itself bf16) whose quantised value
// from x * (1 / s) differs from the one from x / s, s = scale_of(amax); up
// to `want` amax values in [1, 4) that have any, with their values.
template <typename Scale, typename Quant>
std::vector<std::pair<float, std::vector<float>>> Crafted(Scale scale_of, Quant quant, int want) {
  std::vector<std::pair<float, std::vector<float>>> out;
  for (uint16_t a = ToBf16(1.f); a < ToBf16(4.f) && static_cast<int>(out.size()) < want; ++a) {
    const float amax = FromBf16(a), scale = scale_of(amax), inv = 1.f / scale;
    std::vector<float> xs;
    for (uint16_t x = 1; x <= a; ++x) {
      const float xf = FromBf16(x);
      if (quant(xf * inv) != quant(xf / scale)) xs.push_back(xf);
    }
    if (!xs.empty()) out.emplace_back(amax, std::move(xs));
  }
  return out;
}

// A problem on [B, L, H, D] tensors, keep 10 %, everything else default.
sv::Sla2Problem BlhdProblem(int batch, int heads, int dim, int64_t len, void* q, void* k, void* v,
                            void* out) {
  sv::Sla2Problem p;
  p.batch = batch;
  p.heads = heads;
  p.head_dim = dim;
  p.seq_len = len;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.stride_l = int64_t{heads} * dim;
  p.stride_h = dim;
  p.stride_b = len * p.stride_l;
  p.keep_ratio = 0.1f;
  return p;
}

void QuantizeExactCase(int batch, int heads, int dim, int64_t len, uint64_t seed,
                       bool pool_loads = false, int max_ctas = 0) {
  const std::string name = "quantize-exact D" + std::to_string(dim) + " B" +
                           std::to_string(batch) + " H" + std::to_string(heads) + " L" +
                           std::to_string(len) + (pool_loads ? " SLA2_POOL_TMA=0" : "") +
                           (max_ctas > 0 ? " " + std::to_string(max_ctas) + " CTAs" : "");
  // The low-bit pooling pass by TMA on Hopper (default) or by PoolKernel's
  // own loads; few CTAs: each of the TMA pass's walks many query blocks.
  ScopedEnv pool_env("SLA2_POOL_TMA", pool_loads ? "0" : nullptr);
  ScopedEnv ctas_env("SLA2_HOPPER_MAX_CTAS", max_ctas > 0 ? std::to_string(max_ctas).c_str() : nullptr);
  const int64_t tm = (len + 127) / 128, tn = (len + 63) / 64;
  const int64_t n = int64_t{batch} * len * heads * dim;
  auto at = [&](int b, int64_t l, int h, int c) { return ((b * len + l) * heads + h) * dim + c; };
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<uint16_t> hq(n), hk(n), hv(n);
  for (int64_t i = 0; i < n; ++i) {
    hq[i] = ToBf16(normal(rng));
    hk[i] = ToBf16(normal(rng) + 0.3f);
    hv[i] = ToBf16(std::clamp(normal(rng), -1.f, 1.f));
  }
  // INT8: query blocks 0.. of (batch 0, head 0) made of one amax and its crafted values.
  const auto int8 =
      Crafted(ref::Int8Scale, ref::RoundToInt8, static_cast<int>(std::min<int64_t>(tm, 4)));
  int64_t crafted_int8 = 0, crafted_fp8 = 0;
  for (size_t blk = 0; blk < int8.size(); ++blk) {
    const auto& [amax, xs] = int8[blk];
    for (int64_t r = 0; r < 128 && int64_t(blk) * 128 + r < len; ++r)
      for (int c = 0; c < dim; ++c) {
        const int64_t e = r * dim + c;
        const float x = e == 0 ? amax : xs[e % xs.size()] * ((e & 1) ? -1.f : 1.f);
        hq[at(0, int64_t(blk) * 128 + r, 0, c)] = ToBf16(x);
        crafted_int8 += e != 0;
      }
  }
  // FP8: channels 0.. of V at (batch 0, head 0), all rows, likewise (|v| <= 1 elsewhere).
  const auto fp8 = Crafted(ref::Fp8Scale, ref::RoundToE4m3, std::min(dim, 4));
  for (size_t c = 0; c < fp8.size(); ++c) {
    const auto& [amax, xs] = fp8[c];
    for (int64_t l = 0; l < len; ++l) {
      const float x = l == 0 ? amax : xs[l % xs.size()] * ((l & 1) ? -1.f : 1.f);
      hv[at(0, l, 0, static_cast<int>(c))] = ToBf16(x);
      crafted_fp8 += l != 0;
    }
  }
  Check(crafted_int8 > 0 && crafted_fp8 > 0,
        name + ": crafted values next to rounding boundaries (" + std::to_string(crafted_int8) +
            " INT8, " + std::to_string(crafted_fp8) + " FP8)");

  void *dq = nullptr, *dk = nullptr, *dv = nullptr, *dout = nullptr;
  CUDA_OK(cudaMalloc(&dq, n * 2));
  CUDA_OK(cudaMalloc(&dk, n * 2));
  CUDA_OK(cudaMalloc(&dv, n * 2));
  CUDA_OK(cudaMalloc(&dout, n * 2));
  CUDA_OK(cudaMemcpy(dq, hq.data(), n * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dk, hk.data(), n * 2, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(dv, hv.data(), n * 2, cudaMemcpyHostToDevice));
  sv::Sla2Problem p = BlhdProblem(batch, heads, dim, len, dq, dk, dv, dout);
  p.low_bit = true;
  sv::Sla2Workspace ws;
  const sv::Sla2Status st1 = sv::Sla2RunStage(sv::Sla2Stage::kPrepare, p, ws);
  const sv::Sla2Status st2 = sv::Sla2RunStage(sv::Sla2Stage::kQuantize, p, ws);
  Check(st1.ok() && st2.ok(), name + ": prepare and quantise ran");
  CUDA_OK(cudaDeviceSynchronize());
  const sv::Sla2Workspace::Quantized qz = ws.quantized();
  const int64_t bh = int64_t{batch} * heads;
  std::vector<int8_t> q8(bh * tm * 128 * dim), k8(bh * tn * 64 * dim);
  std::vector<uint8_t> vt8(bh * tn * dim * 64);
  std::vector<float> qscale(bh * tm), kscale(bh * tn), kmean(bh * dim), vscale(bh * dim);
  CUDA_OK(cudaMemcpy(q8.data(), qz.q8, q8.size(), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(k8.data(), qz.k8, k8.size(), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(vt8.data(), qz.vt8, vt8.size(), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(qscale.data(), qz.qscale, qscale.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(kscale.data(), qz.kscale, kscale.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(kmean.data(), qz.kmean, kmean.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(vscale.data(), qz.vscale, vscale.size() * 4, cudaMemcpyDeviceToHost));
  for (void* ptr : {dq, dk, dv, dout}) cudaFree(ptr);

  // One INT8 block [rows of `block`] per (b, h, index): scale and bytes.
  int64_t bad_scale = 0, bad_q = 0, bad_k = 0, bad_v = 0;
  auto int8_block = [&](const std::vector<uint16_t>& x, const float* shift, int block, int b,
                        int h, int64_t index, float gpu_scale, const int8_t* gpu) {
    const int64_t r0 = index * block, valid = std::min<int64_t>(block, len - r0);
    auto value = [&](int64_t r, int c) {
      const float f = FromBf16(x[at(b, r0 + r, h, c)]);
      return shift ? f - shift[c] : f;
    };
    float amax = 0.f;
    for (int64_t r = 0; r < valid; ++r)
      for (int c = 0; c < dim; ++c) amax = std::max(amax, std::fabs(value(r, c)));
    const float scale = ref::Int8Scale(amax);
    bad_scale += scale != gpu_scale;
    int64_t bad = 0;
    for (int64_t r = 0; r < block; ++r)
      for (int c = 0; c < dim; ++c) {
        const float want = r < valid ? ref::RoundToInt8(value(r, c) / scale) : 0.f;
        bad += static_cast<float>(gpu[r * dim + c]) != want;
      }
    return bad;
  };
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h) {
      const int64_t bhi = int64_t{b} * heads + h;
      for (int64_t i = 0; i < tm; ++i)
        bad_q += int8_block(hq, nullptr, 128, b, h, i, qscale[bhi * tm + i],
                            q8.data() + (bhi * tm + i) * 128 * dim);
      for (int64_t j = 0; j < tn; ++j)
        bad_k += int8_block(hk, kmean.data() + bhi * dim, 64, b, h, j, kscale[bhi * tn + j],
                            k8.data() + (bhi * tn + j) * 64 * dim);
      for (int c = 0; c < dim; ++c) {
        float amax = 0.f;
        for (int64_t l = 0; l < len; ++l) amax = std::max(amax, std::fabs(FromBf16(hv[at(b, l, h, c)])));
        const float s = vscale[bhi * dim + c];
        bad_scale += s != ref::Fp8Scale(amax);
        for (int64_t j = 0; j < tn; ++j)
          for (int pos = 0; pos < 64; ++pos) {
            const int64_t key = j * 64 + pos / 32 * 32 + KeyOfPosition(pos % 32);
            const float want = key < len ? ref::RoundToE4m3(FromBf16(hv[at(b, key, h, c)]) / s) : 0.f;
            bad_v += DecodeE4m3(vt8[((bhi * tn + j) * dim + c) * 64 + pos]) != want;
          }
      }
    }
  // The K mean (the pooling pass's K total over its copies, in fp32 atomics)
  // against the CPU's mean in double.
  int64_t bad_mean = 0;
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h)
      for (int c = 0; c < dim; ++c) {
        double sum = 0;
        for (int64_t l = 0; l < len; ++l) sum += FromBf16(hk[at(b, l, h, c)]);
        bad_mean += std::fabs(kmean[(int64_t{b} * heads + h) * dim + c] - sum / len) > 1e-5;
      }
  Check(bad_mean == 0, name + ": K mean within 1e-5 of the CPU's (" + std::to_string(bad_mean) +
                           " channels differ)");
  Check(bad_scale == 0, name + ": INT8 block scales and V scales equal the CPU's (" +
                            std::to_string(bad_scale) + " differ)");
  Check(bad_q == 0, name + ": INT8 Q bytes equal the CPU's (" + std::to_string(bad_q) + " differ)");
  Check(bad_k == 0, name + ": INT8 K~ bytes equal the CPU's with the same K mean (" +
                        std::to_string(bad_k) + " differ)");
  Check(bad_v == 0, name + ": FP8 V^T bytes equal the CPU's with the same V scales (" +
                        std::to_string(bad_v) + " differ)");
}

void GpuCases() {
  QuantizeExactCase(1, 2, 128, 1000, 7);
  QuantizeExactCase(2, 2, 64, 600, 8);
  QuantizeExactCase(1, 2, 128, 1000, 7, /*pool_loads=*/true);
  QuantizeExactCase(2, 3, 128, 3000, 9, /*pool_loads=*/false, /*max_ctas=*/5);
  QuantizeExactCase(2, 2, 64, 1900, 10, /*pool_loads=*/false, /*max_ctas=*/3);

  // Lengths 4216 and 3920 have the tails of 32760 and 75600 (mod 128 and 64).
  const std::vector<Case> cases = {
      {"bf16-d128-router", 1, 2, 128, 3000, 0.1f, false, true, true, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRouter},
      {"bf16-d64-batch2-bhld-sparse-only", 2, 3, 64, 1000, 0.2f, false, false, false,
       Layout::kBHLD, Inputs::kRandom, MaskKind::kRouter},
      {"bf16-d128-correlated-tail32760", 1, 2, 128, 4216, 0.05f, false, true, true,
       Layout::kBLHD, Inputs::kCorrelated, MaskKind::kRouter},
      {"bf16-d128-external-mask-edges", 1, 2, 128, 777, 0.03f, false, true, false,
       Layout::kBLHD, Inputs::kRandom, MaskKind::kRandomEdges},
      {"lowbit-d128-router", 1, 2, 128, 3000, 0.1f, true, true, true, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRouter},
      {"lowbit-d64-correlated-batch2-tail75600", 2, 2, 64, 3920, 0.15f, true, true, false,
       Layout::kBHLD, Inputs::kCorrelated, MaskKind::kRouter},
      {"lowbit-d128-correlated-tail32760", 1, 3, 128, 4216, 0.05f, true, true, true,
       Layout::kBLHD, Inputs::kCorrelated, MaskKind::kRouter},
      {"lowbit-d64-shared-mask-edges", 2, 2, 64, 777, 0.03f, true, true, false, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRandomShared},
      {"bf16-d64-one-token", 1, 1, 64, 1, 0.03f, false, true, false, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRouter},
      {"lowbit-d128-129-tokens", 1, 2, 128, 129, 0.5f, true, true, true, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRouter},
      // Few CTAs: the persistent bf16 kernel walks many tiles per CTA, with
      // varying block counts (random mask: empty, partial-only, all-kept rows).
      {"bf16-d128-persistent-router", 1, 4, 128, 4216, 0.05f, false, true, true, Layout::kBLHD,
       Inputs::kCorrelated, MaskKind::kRouter, 5},
      {"bf16-d64-persistent-mask-edges", 2, 2, 64, 777, 0.03f, false, true, false,
       Layout::kBHLD, Inputs::kRandom, MaskKind::kRandomEdges, 2},
      {"bf16-d128-persistent-shared-mask", 2, 3, 128, 1000, 0.03f, false, false, false,
       Layout::kBLHD, Inputs::kRandom, MaskKind::kRandomShared, 3},
      // The Hopper low-bit kernel over many tiles per CTA (empty, partial-only
      // and all-kept rows; the router with batch 2 at D = 64), and the
      // mma.sync low-bit kernel that runs where the Hopper one does not.
      {"lowbit-d128-persistent-mask-edges", 1, 3, 128, 1000, 0.03f, true, true, false,
       Layout::kBLHD, Inputs::kRandom, MaskKind::kRandomEdges, 3},
      {"lowbit-d64-persistent-router-batch2-bhld", 2, 2, 64, 3920, 0.1f, true, true, true,
       Layout::kBHLD, Inputs::kCorrelated, MaskKind::kRouter, 5},
      {"lowbit-d128-correlated-tail32760-mma", 1, 2, 128, 4216, 0.05f, true, true, true,
       Layout::kBLHD, Inputs::kCorrelated, MaskKind::kRouter, 0, "SLA2_SPARSE_KERNEL=mma"},
      // The bare bf16 kernel with one and two kept blocks per row (its
      // prologue / epilogue only, one loop step) and the low-bit Hopper
      // kernel with one block per row.
      {"bf16-d128-one-block-per-row-bare", 1, 2, 128, 3000, 0.02f, false, false, true,
       Layout::kBLHD, Inputs::kRandom, MaskKind::kRouter},
      {"bf16-d64-two-blocks-per-row-bare", 1, 3, 64, 3000, 0.05f, false, false, false,
       Layout::kBHLD, Inputs::kCorrelated, MaskKind::kRouter, 4},
      {"lowbit-d128-one-block-per-row", 1, 2, 128, 3000, 0.02f, true, true, true,
       Layout::kBLHD, Inputs::kCorrelated, MaskKind::kRouter, 3},
      // Low-bit with the linear branch in its own kernels (SLA2_FUSED_LINEAR=0)
      // instead of the Hopper kernel's linear part.
      {"lowbit-d64-mask-edges-own-linear", 2, 2, 64, 777, 0.03f, true, true, false, Layout::kBHLD,
       Inputs::kRandom, MaskKind::kRandomEdges, 2, "SLA2_FUSED_LINEAR=0"},
      // The stand-alone linear kernels (fallback where the fused kernel does not run).
      {"bf16-d128-correlated-tail32760-unfused-linear", 1, 2, 128, 4216, 0.05f, false, true,
       true, Layout::kBLHD, Inputs::kCorrelated, MaskKind::kRouter, 0, "SLA2_FUSED_LINEAR=0"},
      {"bf16-d64-persistent-mask-edges-unfused-linear", 2, 2, 64, 777, 0.03f, false, true, false,
       Layout::kBHLD, Inputs::kRandom, MaskKind::kRandomEdges, 2, "SLA2_FUSED_LINEAR=0"},
      // The bf16 kernel in steps of one block (SLA2_HOPPER_PAIRS=0) instead
      // of two: many tiles per CTA with empty, odd, even and all-kept rows.
      {"bf16-d128-persistent-shared-mask-single-steps", 2, 3, 128, 1000, 0.03f, false, false,
       false, Layout::kBLHD, Inputs::kRandom, MaskKind::kRandomShared, 3, "SLA2_HOPPER_PAIRS=0"},
      {"bf16-d64-mask-edges-single-steps", 1, 2, 64, 777, 0.03f, false, false, false,
       Layout::kBHLD, Inputs::kRandom, MaskKind::kRandomEdges, 2, "SLA2_HOPPER_PAIRS=0"},
      // The same for the low-bit Hopper kernel (the default steps in pairs).
      {"lowbit-d128-persistent-mask-edges-single-steps", 1, 3, 128, 1000, 0.03f, true, true,
       false, Layout::kBLHD, Inputs::kRandom, MaskKind::kRandomEdges, 3, "SLA2_HOPPER_PAIRS=0"},
      {"lowbit-d64-router-batch2-single-steps", 2, 2, 64, 3920, 0.1f, true, true, true,
       Layout::kBHLD, Inputs::kCorrelated, MaskKind::kRouter, 5, "SLA2_HOPPER_PAIRS=0"},
      // Stages in sequence (no side stream for the linear states).
      {"bf16-d128-router-sequential", 1, 2, 128, 3000, 0.1f, false, true, true, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRouter, 0, "SLA2_OVERLAP=0"},
      // One workspace for two problems: a small one, then a larger one that
      // grows every buffer; the second also checks the stale-input refusal.
      {"bf16-d64-shared-workspace-small", 1, 2, 64, 700, 0.1f, false, true, false, Layout::kBLHD,
       Inputs::kRandom, MaskKind::kRouter, 0, nullptr, true},
      // Fused, batch 2 and a [B,H,L,D] layout with the router at D = 128.
      {"bf16-d128-batch2-bhld-correlated-shared-workspace", 2, 3, 128, 3920, 0.05f, false, true,
       true, Layout::kBHLD, Inputs::kCorrelated, MaskKind::kRouter, 7, nullptr, true, true},
  };
  uint64_t seed = 20261117;
  for (const Case& c : cases) RunCase(c, seed++);

  // The router alone: more than 512 key blocks (the tensor-core route then
  // holds 48 keys a lane instead of 16), one projection without the other,
  // keep <= 16 (lane maxima bound the candidates), 16 < keep <= 64 (pairs),
  // all scores tied, and the generic FP32 route (SLA2_ROUTE_KERNEL=generic;
  // it runs by itself past kRouteTileMaxKeyBlocks).
  auto route_case = [](const char* name, int batch, int heads, int dim, int64_t len, float keep,
                       Inputs in, int proj_only, bool proj = true, const char* env = nullptr) {
    Case r{name, batch, heads, dim, len, keep, false, false, proj, Layout::kBLHD, in,
           MaskKind::kRouter};
    r.route_only = true;
    r.proj_only = proj_only;
    r.env = env;
    return r;
  };
  for (const Case& c :
       {route_case("router-long-d64", 1, 2, 64, 40037, 0.03f, Inputs::kRandom, 0),
        route_case("router-long-d128-proj-q-only", 1, 1, 128, 33001, 0.05f, Inputs::kCorrelated,
                   1),
        route_case("router-d128-proj-k-only-batch2", 2, 2, 128, 3000, 0.1f, Inputs::kRandom, 2),
        route_case("router-d128-no-proj-14b-keys", 1, 1, 128, 75600, 0.03f, Inputs::kCorrelated,
                   0, false),
        route_case("router-d128-constant-keys-ties", 1, 2, 128, 3000, 0.1f,
                   Inputs::kConstantKeys, 0),
        // More tied candidates than a warp ranks, and keep > 64: the
        // selection by bisection over the whole row.
        route_case("router-d128-constant-keys-ties-bisection", 1, 1, 128, 10000, 0.1f,
                   Inputs::kConstantKeys, 0),
        route_case("router-long-d64-keep-20pct-bisection", 1, 2, 64, 40037, 0.2f,
                   Inputs::kCorrelated, 0),
        route_case("router-d64-constant-keys-ties-generic", 1, 2, 64, 3000, 0.1f,
                   Inputs::kConstantKeys, 0, true, "SLA2_ROUTE_KERNEL=generic"),
        route_case("router-long-d128-generic", 1, 2, 128, 40037, 0.03f, Inputs::kRandom, 0, true,
                   "SLA2_ROUTE_KERNEL=generic")})
    RunCase(c, seed++);
}

}  // namespace

// Sla2Workspace's forward timeline: off by default, then each stage boundary
// of the last call in order, for the overlapped and the sequential forward.
void TimelineCase() {
  const int heads = 2, dim = 128;
  const int64_t len = 3000, n = len * heads * dim;
  void *q, *k, *v, *out;
  float* alpha;
  for (void** ptr : {&q, &k, &v, &out}) CUDA_OK(cudaMalloc(ptr, n * 2));
  CUDA_OK(cudaMalloc(&alpha, heads * ((len + 127) / 128) * 4));
  for (void* ptr : {q, k, v}) CUDA_OK(cudaMemset(ptr, 0, n * 2));  // bf16 zeros
  CUDA_OK(cudaMemset(alpha, 0, heads * ((len + 127) / 128) * 4));
  sv::Sla2Problem p = BlhdProblem(1, heads, dim, len, q, k, v, out);
  p.alpha = alpha;
  sv::Sla2Workspace ws;
  Check(sv::Sla2Forward(p, ws).ok(), "timeline: forward runs");
  Check(!ws.forward_timeline().valid, "timeline: off by default");
  ws.set_timeline(true);
  Check(!ws.forward_timeline().valid, "timeline: not valid before a call records it");
  for (const char* overlap : {"1", "0"}) {
    ScopedEnv env("SLA2_OVERLAP", overlap);
    Check(sv::Sla2Forward(p, ws).ok(), std::string("timeline: forward runs, SLA2_OVERLAP=") + overlap);
    const sv::Sla2Workspace::Timeline t = ws.forward_timeline();
    std::printf("        SLA2_OVERLAP=%s: prepared %.3f states %.3f routed %.3f linear %.3f end %.3f ms\n",
                overlap, t.prepared, t.states, t.routed, t.linear, t.end);
    Check(t.valid && t.prepared >= 0.f && t.prepared <= t.routed && t.routed <= t.end &&
              t.prepared <= t.states && t.states <= t.linear && t.linear <= t.end && t.end > 0.f,
          std::string("timeline: stage boundaries in order, SLA2_OVERLAP=") + overlap);
  }
  ws.set_timeline(false);
  Check(!ws.forward_timeline().valid, "timeline: off again");
  for (void* ptr : {q, k, v, out, static_cast<void*>(alpha)}) cudaFree(ptr);
}

// The persistent grid's size (host arithmetic, checked without a GPU too).
void GridTests() {
  using sparsevid::kernels::cuda::HeadAlignedGrid;
  Check(HeadAlignedGrid(132, 256) == 128, "grid: 256 query blocks on 132 SMs -> 128 CTAs (2 waves a head)");
  Check(HeadAlignedGrid(132, 264) == 132, "grid: 264 query blocks on 132 SMs -> 132 CTAs");
  Check(HeadAlignedGrid(132, 130) == 130, "grid: 130 query blocks on 132 SMs -> 130 CTAs (a head a wave)");
  Check(HeadAlignedGrid(132, 591) == 132, "grid: 591 query blocks (14B shape) -> one CTA per SM");
  Check(HeadAlignedGrid(132, 64) == 132, "grid: 64 query blocks -> one CTA per SM (2 heads a wave)");
  Check(HeadAlignedGrid(114, 256) == 114, "grid: 256 query blocks on 114 SMs -> 114 (85 would idle 25 %)");
  Check(HeadAlignedGrid(132, 0) == 132, "grid: no query blocks -> unchanged");
}

int main() {
  ValidationTests();
  GridTests();
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    std::printf("SKIPPED: no CUDA device - the SLA2 GPU cases did not run "
                "(argument validation above did)\n");
    // 77 = ctest's SKIP_RETURN_CODE, so the skip shows in the ctest summary.
    return g_failures == 0 ? 77 : 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount);
  g_hopper = prop.major == 9 && prop.minor == 0;
  GpuCases();
  TimelineCase();
  std::printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "PASSED", g_failures);
  return g_failures == 0 ? 0 : 1;
}
