// The shape contract of the Backend ops: argument checks and output geometry
// that do not depend on the device, shared by CpuBackend and CudaBackend so
// both accept exactly the same shapes and say the same thing when a caller
// breaks the contract. Each Check* stops the process with SV_CHECK (a shape
// mismatch inside an op is a bug, see backend.h) and returns the sizes the
// compute path needs. Device checks (host vs device tensor) and
// backend-specific limits stay with the backend.
//
// `who` starts every message: "" on the CPU ("Conv3d: ..."), "CudaBackend "
// on the GPU ("CudaBackend Conv3d: ...").
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace sparsevid::kernels::op_shapes {

// Elementwise ops: a defined f32 tensor; two of the same element count; a
// per-channel f32 vector of d elements (Modulate shift/scale, AddGated gate).
void CheckF32(const char* who, const Tensor& t, const char* op);
void CheckSameSize(const char* who, const Tensor& a, const Tensor& b, const char* op);
void CheckRowParam(const char* who, const Tensor& p, int64_t d, const char* what);

// Optional norm parameter (gamma, beta): absent, or n elements of any dtype.
void CheckNormParam(const char* who, const Tensor* p, int64_t n, const char* what);
// ChannelRmsNorm: x [C, ...] and gamma [C]; returns C.
int64_t CheckChannelRmsNorm(const char* who, const Tensor& x, const Tensor& gamma);

// Linear: y[m, n] = x[m, k] w[n, k]^T (+ bias[n]); x and y f32.
struct LinearDims {
  int64_t m = 0, n = 0, k = 0;
};
LinearDims CheckLinear(const char* who, const Tensor& x, const Tensor& w, const Tensor* bias,
                       const Tensor& y);

// Permute: y has x's dims in perm order, same dtype, not in place.
struct PermuteGeometry {
  Shape out_shape;
  std::vector<int64_t> in_stride;  // input stride (elements) of each output dim
};
PermuteGeometry CheckPermute(const char* who, const Tensor& x, const std::vector<int>& perm,
                             const Tensor& y);

// Concat along dim (negative counts from the end): every output row of
// out_row_bytes is the inputs' rows of row_bytes[i] side by side, outer rows.
struct ConcatGeometry {
  int dim = 0;
  int64_t outer = 1;
  size_t out_row_bytes = 0;
  std::vector<size_t> row_bytes;  // one per input
};
ConcatGeometry CheckConcat(const char* who, const std::vector<Tensor>& xs, int dim,
                           const Tensor& y);

// Embedding: table [vocab, d], y f32 with ids.size()*d elements, every id
// inside the table.
struct EmbeddingDims {
  int64_t vocab = 0, d = 0;
};
EmbeddingDims CheckEmbedding(const char* who, const Tensor& table, const std::vector<int32_t>& ids,
                             const Tensor& y);

// Rope3d: x f32 [L, H, d] with L = grid.tokens() and d even.
struct RopeDims {
  int64_t tokens = 0, heads = 0, head_dim = 0;
};
RopeDims CheckRope3d(const char* who, const Tensor& x, const TokenGrid& grid);

// Conv3d (stride 1, no temporal padding): x f32 [C, T, H, W],
// w [O, C, kt, kh, kw], bias [O] or null, y f32 [O, To, Ho, Wo], not in place.
struct Conv3dGeometry {
  int64_t C = 0, T = 0, H = 0, W = 0;  // input
  int64_t O = 0, kt = 0, kh = 0, kw = 0;  // weight
  int64_t To = 0, Ho = 0, Wo = 0;      // output
};
Conv3dGeometry CheckConv3d(const char* who, const Tensor& x, const Tensor& w, const Tensor* bias,
                           int pad_h, int pad_w, const Tensor& y);

// UpsampleNearest2x: x f32 [C, T, H, W] -> y f32 [C, T, 2H, 2W].
struct UpsampleDims {
  int64_t planes = 0, h = 0, w = 0;  // planes = C*T
};
UpsampleDims CheckUpsampleNearest2x(const char* who, const Tensor& x, const Tensor& y);

// Dense attention: q/out f32 [Lq, H, d], k/v f32 [Lk, H, d], bias f32
// [H, Lq, Lk] or null, key_valid in [-1, Lk], out aliasing none of q/k/v.
struct AttentionDims {
  int64_t Lq = 0, heads = 0, head_dim = 0, Lk = 0;
  int64_t keys = 0;  // keys attended to: key_valid, or Lk for -1
};
AttentionDims CheckAttention(const char* who, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor* bias, int64_t key_valid, const Tensor& out);

}  // namespace sparsevid::kernels::op_shapes
