#include "kernels/op_shapes.h"

#include "kernels/check.h"

namespace sparsevid::kernels::op_shapes {

void CheckF32(const char* who, const Tensor& t, const char* op) {
  SV_CHECK(t.defined() && t.dtype() == DType::kF32, "%s%s: f32 tensors only, got %s", who, op,
           DTypeName(t.dtype()));
}

void CheckSameSize(const char* who, const Tensor& a, const Tensor& b, const char* op) {
  CheckF32(who, a, op);
  CheckF32(who, b, op);
  SV_CHECK(a.numel() == b.numel(), "%s%s: %s vs %s", who, op, ShapeString(a.shape()).c_str(),
           ShapeString(b.shape()).c_str());
}

void CheckRowParam(const char* who, const Tensor& p, int64_t d, const char* what) {
  CheckF32(who, p, what);
  SV_CHECK(p.numel() == d, "%s%s has shape %s, expected %lld elements", who, what,
           ShapeString(p.shape()).c_str(), static_cast<long long>(d));
}

void CheckNormParam(const char* who, const Tensor* p, int64_t n, const char* what) {
  if (!p) return;
  SV_CHECK(p->numel() == n, "%s%s has %lld elements, expected %lld", who, what,
           static_cast<long long>(p->numel()), static_cast<long long>(n));
}

int64_t CheckChannelRmsNorm(const char* who, const Tensor& x, const Tensor& gamma) {
  SV_CHECK(x.ndim() >= 1, "%sChannelRmsNorm of a scalar", who);
  const int64_t c = x.dim(0);
  CheckNormParam(who, &gamma, c, "ChannelRmsNorm gamma");
  return c;
}

LinearDims CheckLinear(const char* who, const Tensor& x, const Tensor& w, const Tensor* bias,
                       const Tensor& y) {
  SV_CHECK(x.dtype() == DType::kF32 && y.dtype() == DType::kF32,
           "%sLinear: x and y must be f32", who);
  SV_CHECK(w.ndim() == 2 && x.ndim() >= 1, "%sLinear: weight %s must be [N, K]", who,
           ShapeString(w.shape()).c_str());
  LinearDims dims;
  dims.n = w.dim(0);
  dims.k = w.dim(1);
  SV_CHECK(x.dim(-1) == dims.k, "%sLinear: x %s vs weight %s", who,
           ShapeString(x.shape()).c_str(), ShapeString(w.shape()).c_str());
  dims.m = dims.k ? x.numel() / dims.k : 0;
  SV_CHECK(y.numel() == dims.m * dims.n && y.dim(-1) == dims.n,
           "%sLinear: y %s, expected [%lld, %lld]", who, ShapeString(y.shape()).c_str(),
           static_cast<long long>(dims.m), static_cast<long long>(dims.n));
  if (bias) {
    SV_CHECK(bias->numel() == dims.n, "%sLinear: bias %s for N=%lld", who,
             ShapeString(bias->shape()).c_str(), static_cast<long long>(dims.n));
  }
  // An empty product writes nothing, so only a non-empty one can clobber x.
  if (dims.m > 0 && dims.n > 0) {
    SV_CHECK(x.raw() != y.raw(), "%sLinear cannot write its output over its input", who);
  }
  return dims;
}

PermuteGeometry CheckPermute(const char* who, const Tensor& x, const std::vector<int>& perm,
                             const Tensor& y) {
  const int n = x.ndim();
  SV_CHECK(static_cast<int>(perm.size()) == n, "%sPermute: perm of size %zu for a %d-d tensor",
           who, perm.size(), n);
  SV_CHECK(x.dtype() == y.dtype(), "%sPermute: dtype mismatch", who);
  PermuteGeometry g;
  g.out_shape.resize(n);
  std::vector<bool> seen(n, false);
  for (int i = 0; i < n; ++i) {
    SV_CHECK(perm[i] >= 0 && perm[i] < n && !seen[perm[i]], "%sPermute: invalid perm", who);
    seen[perm[i]] = true;
    g.out_shape[i] = x.shape()[perm[i]];
  }
  SV_CHECK(y.shape() == g.out_shape, "%sPermute: y %s, expected %s", who,
           ShapeString(y.shape()).c_str(), ShapeString(g.out_shape).c_str());
  if (x.numel() > 0) SV_CHECK(x.raw() != y.raw(), "%sPermute cannot run in place", who);
  // Row-major strides of x, then listed in output-dim order.
  std::vector<int64_t> istride(n, 1);
  for (int i = n - 2; i >= 0; --i) istride[i] = istride[i + 1] * x.shape()[i + 1];
  g.in_stride.resize(n);
  for (int i = 0; i < n; ++i) g.in_stride[i] = istride[perm[i]];
  return g;
}

ConcatGeometry CheckConcat(const char* who, const std::vector<Tensor>& xs, int dim,
                           const Tensor& y) {
  SV_CHECK(!xs.empty(), "%sConcat of no tensors", who);
  const int n = y.ndim();
  const int d = dim < 0 ? dim + n : dim;
  SV_CHECK(d >= 0 && d < n, "%sConcat: dim %d for a %d-d output", who, dim, n);
  int64_t total = 0;
  for (const Tensor& x : xs) {
    SV_CHECK(x.ndim() == n && x.dtype() == y.dtype(), "%sConcat: input %s %s vs output %s %s",
             who, ShapeString(x.shape()).c_str(), DTypeName(x.dtype()),
             ShapeString(y.shape()).c_str(), DTypeName(y.dtype()));
    for (int i = 0; i < n; ++i) {
      SV_CHECK(i == d || x.shape()[i] == y.shape()[i], "%sConcat: input %s vs output %s", who,
               ShapeString(x.shape()).c_str(), ShapeString(y.shape()).c_str());
    }
    total += x.shape()[d];
  }
  SV_CHECK(total == y.shape()[d], "%sConcat: sizes along dim %d sum to %lld, output has %lld",
           who, d, static_cast<long long>(total), static_cast<long long>(y.shape()[d]));
  ConcatGeometry g;
  g.dim = d;
  int64_t inner = 1;
  for (int i = 0; i < d; ++i) g.outer *= y.shape()[i];
  for (int i = d + 1; i < n; ++i) inner *= y.shape()[i];
  const size_t es = DTypeSize(y.dtype());
  g.out_row_bytes = static_cast<size_t>(y.shape()[d] * inner) * es;
  g.row_bytes.reserve(xs.size());
  for (const Tensor& x : xs) g.row_bytes.push_back(static_cast<size_t>(x.shape()[d] * inner) * es);
  return g;
}

EmbeddingDims CheckEmbedding(const char* who, const Tensor& table, const std::vector<int32_t>& ids,
                             const Tensor& y) {
  SV_CHECK(table.ndim() == 2, "%sEmbedding: table %s must be 2-d", who,
           ShapeString(table.shape()).c_str());
  EmbeddingDims dims;
  dims.vocab = table.dim(0);
  dims.d = table.dim(1);
  SV_CHECK(y.dtype() == DType::kF32 && y.numel() == static_cast<int64_t>(ids.size()) * dims.d,
           "%sEmbedding: y %s for %zu ids of width %lld", who, ShapeString(y.shape()).c_str(),
           ids.size(), static_cast<long long>(dims.d));
  for (int32_t id : ids) {
    SV_CHECK(id >= 0 && id < dims.vocab, "%sEmbedding: id %d outside the table of %lld rows", who,
             id, static_cast<long long>(dims.vocab));
  }
  return dims;
}

RopeDims CheckRope3d(const char* who, const Tensor& x, const TokenGrid& grid) {
  SV_CHECK(x.ndim() == 3 && x.dtype() == DType::kF32, "%sRope3d: x %s must be f32 [L, H, d]", who,
           ShapeString(x.shape()).c_str());
  RopeDims dims{x.dim(0), x.dim(1), x.dim(2)};
  SV_CHECK(dims.tokens == grid.tokens(), "%sRope3d: %lld tokens vs grid %lldx%lldx%lld", who,
           static_cast<long long>(dims.tokens), static_cast<long long>(grid.frames),
           static_cast<long long>(grid.height), static_cast<long long>(grid.width));
  SV_CHECK(dims.head_dim % 2 == 0, "%sRope3d: odd head dim %lld", who,
           static_cast<long long>(dims.head_dim));
  return dims;
}

Conv3dGeometry CheckConv3d(const char* who, const Tensor& x, const Tensor& w, const Tensor* bias,
                           int pad_h, int pad_w, const Tensor& y) {
  SV_CHECK(x.ndim() == 4 && w.ndim() == 5 && x.dtype() == DType::kF32 &&
               y.dtype() == DType::kF32,
           "%sConv3d: x %s (f32 [C,T,H,W]), w %s ([O,C,kt,kh,kw])", who,
           ShapeString(x.shape()).c_str(), ShapeString(w.shape()).c_str());
  Conv3dGeometry g;
  g.C = x.dim(0), g.T = x.dim(1), g.H = x.dim(2), g.W = x.dim(3);
  g.O = w.dim(0), g.kt = w.dim(2), g.kh = w.dim(3), g.kw = w.dim(4);
  SV_CHECK(w.dim(1) == g.C, "%sConv3d: weight %s for %lld input channels", who,
           ShapeString(w.shape()).c_str(), static_cast<long long>(g.C));
  SV_CHECK(pad_h >= 0 && pad_w >= 0, "%sConv3d: negative padding", who);
  g.To = g.T - g.kt + 1;
  g.Ho = g.H + 2 * pad_h - g.kh + 1;
  g.Wo = g.W + 2 * pad_w - g.kw + 1;
  SV_CHECK(g.To >= 1 && g.Ho >= 1 && g.Wo >= 1, "%sConv3d: kernel %s larger than padded input %s",
           who, ShapeString(w.shape()).c_str(), ShapeString(x.shape()).c_str());
  SV_CHECK((y.shape() == Shape{g.O, g.To, g.Ho, g.Wo}),
           "%sConv3d: y %s, expected [%lld, %lld, %lld, %lld]", who,
           ShapeString(y.shape()).c_str(), static_cast<long long>(g.O),
           static_cast<long long>(g.To), static_cast<long long>(g.Ho),
           static_cast<long long>(g.Wo));
  if (bias) {
    SV_CHECK(bias->numel() == g.O, "%sConv3d: bias of %lld for %lld outputs", who,
             static_cast<long long>(bias->numel()), static_cast<long long>(g.O));
  }
  SV_CHECK(x.raw() != y.raw(), "%sConv3d cannot run in place", who);
  return g;
}

UpsampleDims CheckUpsampleNearest2x(const char* who, const Tensor& x, const Tensor& y) {
  SV_CHECK(x.ndim() == 4 && x.dtype() == DType::kF32 && y.dtype() == DType::kF32,
           "%sUpsampleNearest2x: x %s must be f32 [C, T, H, W]", who,
           ShapeString(x.shape()).c_str());
  UpsampleDims dims{x.dim(0) * x.dim(1), x.dim(2), x.dim(3)};
  SV_CHECK((y.shape() == Shape{x.dim(0), x.dim(1), 2 * dims.h, 2 * dims.w}),
           "%sUpsampleNearest2x: y %s for x %s", who, ShapeString(y.shape()).c_str(),
           ShapeString(x.shape()).c_str());
  return dims;
}

AttentionDims CheckAttention(const char* who, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor* bias, int64_t key_valid, const Tensor& out) {
  SV_CHECK(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3 && out.ndim() == 3,
           "%sAttention: q %s k %s v %s out %s must be [L, H, d]", who,
           ShapeString(q.shape()).c_str(), ShapeString(k.shape()).c_str(),
           ShapeString(v.shape()).c_str(), ShapeString(out.shape()).c_str());
  SV_CHECK(q.dtype() == DType::kF32 && k.dtype() == DType::kF32 && v.dtype() == DType::kF32 &&
               out.dtype() == DType::kF32,
           "%sAttention: f32 only", who);
  AttentionDims dims;
  dims.Lq = q.dim(0), dims.heads = q.dim(1), dims.head_dim = q.dim(2), dims.Lk = k.dim(0);
  SV_CHECK(k.shape() == v.shape() && k.dim(1) == dims.heads && k.dim(2) == dims.head_dim &&
               out.shape() == q.shape(),
           "%sAttention: q %s k %s v %s out %s", who, ShapeString(q.shape()).c_str(),
           ShapeString(k.shape()).c_str(), ShapeString(v.shape()).c_str(),
           ShapeString(out.shape()).c_str());
  SV_CHECK(key_valid >= -1 && key_valid <= dims.Lk, "%sAttention: key_valid %lld for %lld keys",
           who, static_cast<long long>(key_valid), static_cast<long long>(dims.Lk));
  if (bias) {
    SV_CHECK(bias->dtype() == DType::kF32 && (bias->shape() == Shape{dims.heads, dims.Lq, dims.Lk}),
             "%sAttention: bias %s, expected f32 [%lld, %lld, %lld]", who,
             ShapeString(bias->shape()).c_str(), static_cast<long long>(dims.heads),
             static_cast<long long>(dims.Lq), static_cast<long long>(dims.Lk));
  }
  SV_CHECK(out.raw() != q.raw() && out.raw() != k.raw() && out.raw() != v.raw(),
           "%sAttention: out must not alias q, k or v", who);
  dims.keys = key_valid < 0 ? dims.Lk : key_valid;
  return dims;
}

}  // namespace sparsevid::kernels::op_shapes
