// The GEMM-shaped ops of CudaBackend on cuBLAS: Linear, Conv3d (im2col +
// strided-batched GEMM) and dense Attention (batched GEMMs around a row
// softmax). f32 products run as full-f32 SGEMM (cuBLAS default math, no
// TF32) so they match the CPU's OpenBLAS to f32 rounding.
//
// cuBLAS is column-major: a row-major [r, c] matrix with leading dimension
// ld is the column-major [c, r] matrix with the same ld, so row-major
// C = A B is computed as column-major C^T = B^T A^T.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <cuda_bf16.h>

#include "kernels/cuda/cuda_backend_impl.h"
#include "kernels/cuda/cuda_backend_ops.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cuda {
namespace {

// Scratch caps (floats): the conv column matrix and the attention scores
// are processed in chunks that stay under 256 MiB.
constexpr int64_t kMaxColumnFloats = int64_t{1} << 26;
constexpr int64_t kMaxScoreFloats = int64_t{1} << 26;

// Messages of the shared shape contract start with this (op_shapes.h).
constexpr char kWho[] = "CudaBackend ";

}  // namespace

void CudaBackend::Gemm(const char* op, int64_t m, int64_t n, int64_t k, float alpha,
                       const float* x, int64_t ldx, const float* w, int64_t ldw, float beta,
                       float* y, int64_t ldy) {
  // y[m,n] = x[m,k] w[n,k]^T  <=>  y^T[n,m] = w[n,k] x^T[k,m] (column-major).
  SV_CUBLAS_CHECK(op, cublasSgemm(dev_->cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                  static_cast<int>(m), static_cast<int>(k), &alpha, w,
                                  static_cast<int>(ldw), x, static_cast<int>(ldx), &beta, y,
                                  static_cast<int>(ldy)));
}

void CudaBackend::Linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  CheckDevice(x, "Linear");
  CheckDevice(w, "Linear");
  CheckDevice(y, "Linear");
  const op_shapes::LinearDims dims = op_shapes::CheckLinear(kWho, x, w, bias, y);
  const int64_t m = dims.m, n = dims.n, k = dims.k;
  SV_CHECK(w.dtype() == DType::kF32 || w.dtype() == DType::kBF16 || w.dtype() == DType::kF16,
           "CudaBackend Linear: weight dtype %s", DTypeName(w.dtype()));
  SV_CHECK(m < (int64_t{1} << 31) && n < (int64_t{1} << 31) && k < (int64_t{1} << 31),
           "CudaBackend Linear: dimensions beyond cuBLAS's 32-bit range");
  if (m == 0 || n == 0) return;
  // The bias is broadcast into y first and the GEMM accumulates onto it.
  float beta = 0.f;
  if (bias) {
    const Tensor b = AsF32(*bias, "Linear");
    LaunchBroadcastRows(b.f32(), y.f32(), m, n, stream());
    CheckLaunch("Linear");
    beta = 1.f;
  } else if (k == 0) {
    Fill(y, 0.f);
  }
  if (k == 0) return;
  const float one = 1.f;
  if (w.dtype() == DType::kF32) {
    Gemm("Linear", m, n, k, 1.f, x.f32(), k, w.f32(), k, beta, y.f32(), n);
    return;
  }
  // 16-bit weights: tensor-core GEMM with x rounded to the weight's type,
  // f32 accumulation and output.
  Tensor x16 = Scratch(x.shape(), w.dtype(), "Linear");
  if (w.dtype() == DType::kBF16) {
    LaunchF32ToBf16(x.f32(), x16.raw(), x.numel(), stream());
  } else {
    LaunchF32ToF16(x.f32(), x16.raw(), x.numel(), stream());
  }
  CheckLaunch("Linear");
  const cudaDataType_t t = w.dtype() == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
  SV_CUBLAS_CHECK("Linear", cublasGemmEx(dev_->cublas, CUBLAS_OP_T, CUBLAS_OP_N,
                                         static_cast<int>(n), static_cast<int>(m),
                                         static_cast<int>(k), &one, w.raw(), t,
                                         static_cast<int>(k), x16.raw(), t, static_cast<int>(k),
                                         &beta, y.raw(), CUDA_R_32F, static_cast<int>(n),
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::Conv3d(const Tensor& x, const Tensor& w, const Tensor* bias, int pad_h,
                         int pad_w, Tensor& y) {
  CheckDevice(x, "Conv3d");
  CheckDevice(w, "Conv3d");
  CheckDevice(y, "Conv3d");
  const op_shapes::Conv3dGeometry g = op_shapes::CheckConv3d(kWho, x, w, bias, pad_h, pad_w, y);
  const int64_t C = g.C, T = g.T, H = g.H, W = g.W;
  const int64_t O = g.O, kt = g.kt, kh = g.kh, kw = g.kw;
  const int64_t To = g.To, Ho = g.Ho, Wo = g.Wo;
  const int64_t K = C * kt * kh * kw;
  const int64_t plane_out = Ho * Wo;
  const Tensor wf = AsF32(w, "Conv3d");
  const Tensor bf = bias ? AsF32(*bias, "Conv3d") : Tensor();
  // Narrow layers: the direct kernel (SPARSEVID_CONV3D=im2col forces the
  // GEMM path, for comparisons and tests).
  const char* path = std::getenv("SPARSEVID_CONV3D");
  const bool pointwise = kt == 1 && kh == 1 && kw == 1 && pad_h == 0 && pad_w == 0;
  if (!pointwise && !(path && std::strcmp(path, "im2col") == 0) &&
      Conv3dDirectApplies(O, C, kh, kw, To, Ho, Wo)) {
    const Conv3dDirectShape sh{static_cast<int>(C),  static_cast<int>(T),     static_cast<int>(H),
                               static_cast<int>(W),  static_cast<int>(O),     static_cast<int>(kt),
                               pad_h,                pad_w,                   static_cast<int>(To),
                               static_cast<int>(Ho), static_cast<int>(Wo)};
    LaunchConv3dDirect(x.f32(), wf.f32(), bias ? bf.f32() : nullptr, y.f32(), sh,
                       static_cast<int>(kh), static_cast<int>(kw), stream());
    CheckLaunch("Conv3d");
    return;
  }
  float beta = 0.f;
  if (bias) {
    LaunchBroadcastChannels(bf.f32(), y.f32(), O, To * plane_out, stream());
    CheckLaunch("Conv3d");
    beta = 1.f;
  }
  const float one = 1.f;
  if (pointwise) {
    // y[O, T*H*W] = w[O, C] x[C, T*H*W]: one GEMM, no column matrix.
    const int64_t n = T * H * W;
    SV_CUBLAS_CHECK("Conv3d", cublasSgemm(dev_->cublas, CUBLAS_OP_N, CUBLAS_OP_N,
                                          static_cast<int>(n), static_cast<int>(O),
                                          static_cast<int>(C), &one, x.f32(), static_cast<int>(n),
                                          wf.f32(), static_cast<int>(C), &beta, y.f32(),
                                          static_cast<int>(n)));
    return;
  }
  // Chunks of whole frames (tb) or, for huge frames, of output rows.
  const int64_t frame_floats = K * plane_out;
  int64_t tb = std::max<int64_t>(1, std::min(To, kMaxColumnFloats / std::max<int64_t>(1, frame_floats)));
  const int64_t rows_per_chunk =
      frame_floats <= kMaxColumnFloats
          ? Ho
          : std::max<int64_t>(1, kMaxColumnFloats / std::max<int64_t>(1, K * Wo));
  if (rows_per_chunk < Ho) tb = 1;
  Tensor col = Scratch({tb * K * rows_per_chunk * Wo}, DType::kF32, "Conv3d");
  const Im2ColShape sh{C, T, H, W, kt, kh, kw, pad_h, pad_w, Wo};
  for (int64_t t0 = 0; t0 < To; t0 += tb) {
    const int64_t nt = std::min(tb, To - t0);
    for (int64_t r0 = 0; r0 < Ho; r0 += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, Ho - r0);
      const int64_t n = rows * Wo;
      LaunchIm2Col(x.f32(), col.f32(), sh, t0, nt, r0, rows, stream());
      CheckLaunch("Conv3d");
      // Per frame t: y[o, t, r0.., :] (rows strided by To*plane_out) = w[O, K] col_t[K, n].
      SV_CUBLAS_CHECK("Conv3d",
                      cublasSgemmStridedBatched(
                          dev_->cublas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n),
                          static_cast<int>(O), static_cast<int>(K), &one, col.f32(),
                          static_cast<int>(n), K * n, wf.f32(), static_cast<int>(K), 0, &beta,
                          y.f32() + t0 * plane_out + r0 * Wo, static_cast<int>(To * plane_out),
                          plane_out, static_cast<int>(nt)));
    }
  }
}

void CudaBackend::Attention(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                            const Tensor* bias, int64_t key_valid, Tensor& out) {
  for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &out}) {
    CheckDevice(*t, "Attention");
  }
  if (bias) CheckDevice(*bias, "Attention");
  const op_shapes::AttentionDims dims =
      op_shapes::CheckAttention(kWho, q, k, v, bias, key_valid, out);
  const int64_t Lq = dims.Lq, H = dims.heads, d = dims.head_dim, Lk = dims.Lk, nk = dims.keys;
  if (nk == 0 || Lq == 0 || d == 0) {  // no keys: the output is defined as 0
    if (out.nbytes()) Fill(out, 0.f);
    return;
  }
  // Query tiles so that the scores of all heads fit the cap.
  const int64_t tile = std::max<int64_t>(1, std::min(Lq, kMaxScoreFloats / (H * nk)));
  Tensor scores = Scratch({H, tile, nk}, DType::kF32, "Attention");
  const int ld = static_cast<int>(H * d);
  const float zero = 0.f, one = 1.f;
  for (int64_t r0 = 0; r0 < Lq; r0 += tile) {
    const int64_t rows = std::min(tile, Lq - r0);
    // S_h[rows, nk] = scale * Q_h K_h^T, one batch entry per head.
    SV_CUBLAS_CHECK("Attention",
                    cublasSgemmStridedBatched(
                        dev_->cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(nk),
                        static_cast<int>(rows), static_cast<int>(d), &scale, k.f32(), ld, d,
                        q.f32() + r0 * H * d, ld, d, &zero, scores.f32(), static_cast<int>(nk),
                        rows * nk, static_cast<int>(H)));
    LaunchSoftmax(scores.f32(), scores.f32(), H, rows, nk, bias ? bias->f32() + r0 * Lk : nullptr,
                  Lq * Lk, Lk, stream());
    CheckLaunch("Attention");
    // O_h[rows, d] = P_h[rows, nk] V_h[nk, d].
    SV_CUBLAS_CHECK("Attention",
                    cublasSgemmStridedBatched(
                        dev_->cublas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d),
                        static_cast<int>(rows), static_cast<int>(nk), &one, v.f32(), ld, d,
                        scores.f32(), static_cast<int>(nk), rows * nk, &zero,
                        out.f32() + r0 * H * d, ld, d, static_cast<int>(H)));
  }
}

}  // namespace sparsevid::kernels::cuda
