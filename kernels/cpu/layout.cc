#include "kernels/cpu/layout.h"

#include <cstring>

#include "kernels/check.h"
#include "kernels/cpu/convert.h"

namespace sparsevid::kernels::cpu {

void Permute(const CpuContext& ctx, const Tensor& x, const std::vector<int>& perm, Tensor& y) {
  const int n = x.ndim();
  SV_CHECK(static_cast<int>(perm.size()) == n, "Permute: perm of size %zu for a %d-d tensor",
           perm.size(), n);
  SV_CHECK(x.dtype() == y.dtype(), "Permute: dtype mismatch");
  std::vector<bool> seen(n, false);
  Shape expect(n);
  for (int i = 0; i < n; ++i) {
    SV_CHECK(perm[i] >= 0 && perm[i] < n && !seen[perm[i]], "Permute: invalid perm");
    seen[perm[i]] = true;
    expect[i] = x.shape()[perm[i]];
  }
  SV_CHECK(y.shape() == expect, "Permute: y %s, expected %s", ShapeString(y.shape()).c_str(),
           ShapeString(expect).c_str());
  if (x.numel() == 0) return;
  SV_CHECK(x.raw() != y.raw(), "Permute cannot run in place");
  if (n == 0) {
    std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  const size_t es = DTypeSize(x.dtype());
  // Input strides (elements) seen in output-dim order.
  std::vector<int64_t> in_stride(n), istride(n, 1);
  for (int i = n - 2; i >= 0; --i) istride[i] = istride[i + 1] * x.shape()[i + 1];
  for (int i = 0; i < n; ++i) in_stride[i] = istride[perm[i]];
  const int64_t inner = expect[n - 1];
  const int64_t outer = y.numel() / inner;
  const int64_t inner_stride = in_stride[n - 1];
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
  const int threads = ThreadsFor(ctx, x.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t row = 0; row < outer; ++row) {
    // Decompose the output row index into its coordinates (dims 0..n-2).
    int64_t rem = row, offset = 0;
    for (int i = n - 2; i >= 0; --i) {
      const int64_t c = rem % expect[i];
      rem /= expect[i];
      offset += c * in_stride[i];
    }
    char* out = dst + row * inner * es;
    if (inner_stride == 1) {
      std::memcpy(out, src + offset * es, inner * es);
    } else {
      for (int64_t j = 0; j < inner; ++j) {
        std::memcpy(out + j * es, src + (offset + j * inner_stride) * es, es);
      }
    }
  }
}

void Concat(const CpuContext& ctx, const std::vector<Tensor>& xs, int dim, Tensor& y) {
  SV_CHECK(!xs.empty(), "Concat of no tensors");
  const int n = y.ndim();
  const int d = dim < 0 ? dim + n : dim;
  SV_CHECK(d >= 0 && d < n, "Concat: dim %d for a %d-d output", dim, n);
  int64_t total = 0;
  for (const Tensor& x : xs) {
    SV_CHECK(x.ndim() == n && x.dtype() == y.dtype(), "Concat: input %s %s vs output %s %s",
             ShapeString(x.shape()).c_str(), DTypeName(x.dtype()), ShapeString(y.shape()).c_str(),
             DTypeName(y.dtype()));
    for (int i = 0; i < n; ++i) {
      SV_CHECK(i == d || x.shape()[i] == y.shape()[i], "Concat: input %s vs output %s",
               ShapeString(x.shape()).c_str(), ShapeString(y.shape()).c_str());
    }
    total += x.shape()[d];
  }
  SV_CHECK(total == y.shape()[d], "Concat: sizes along dim %d sum to %lld, output has %lld", d,
           static_cast<long long>(total), static_cast<long long>(y.shape()[d]));
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < d; ++i) outer *= y.shape()[i];
  for (int i = d + 1; i < n; ++i) inner *= y.shape()[i];
  const size_t es = DTypeSize(y.dtype());
  const size_t out_row = static_cast<size_t>(y.shape()[d] * inner) * es;
  char* dst = static_cast<char*>(y.raw());
  size_t col = 0;  // byte offset of the current input inside an output row
  for (const Tensor& x : xs) {
    const size_t row = static_cast<size_t>(x.shape()[d] * inner) * es;
    const char* src = static_cast<const char*>(x.raw());
    if (row > 0) {
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_row + col, src + o * row, row);
    }
    col += row;
  }
}

void Embedding(const CpuContext& ctx, const Tensor& table, const std::vector<int32_t>& ids,
               Tensor& y) {
  SV_CHECK(table.ndim() == 2, "Embedding: table %s must be 2-d", ShapeString(table.shape()).c_str());
  const int64_t vocab = table.dim(0), d = table.dim(1);
  SV_CHECK(y.dtype() == DType::kF32 && y.numel() == static_cast<int64_t>(ids.size()) * d,
           "Embedding: y %s for %zu ids of width %lld", ShapeString(y.shape()).c_str(), ids.size(),
           static_cast<long long>(d));
  const size_t es = DTypeSize(table.dtype());
  for (size_t i = 0; i < ids.size(); ++i) {
    SV_CHECK(ids[i] >= 0 && ids[i] < vocab, "Embedding: id %d outside the table of %lld rows",
             ids[i], static_cast<long long>(vocab));
    // A one-row view of the table converts like any tensor.
    Tensor row(table.storage(), table.byte_offset() + ids[i] * d * es, {d}, table.dtype());
    ConvertToF32(CpuContext{1, nullptr}, row, y.f32() + i * d);
  }
}

void UpsampleNearest2x(const CpuContext& ctx, const Tensor& x, Tensor& y) {
  SV_CHECK(x.ndim() == 4 && x.dtype() == DType::kF32 && y.dtype() == DType::kF32,
           "UpsampleNearest2x: x %s must be f32 [C, T, H, W]", ShapeString(x.shape()).c_str());
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  SV_CHECK((y.shape() == Shape{x.dim(0), x.dim(1), 2 * h, 2 * w}),
           "UpsampleNearest2x: y %s for x %s", ShapeString(y.shape()).c_str(),
           ShapeString(x.shape()).c_str());
  const float* in = x.f32();
  float* out = y.f32();
  const int threads = ThreadsFor(ctx, y.numel());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < planes * h; ++r) {
    const float* src = in + r * w;
    float* dst0 = out + r * 4 * w;  // output rows 2r and 2r+1 of the same plane
    for (int64_t j = 0; j < w; ++j) dst0[2 * j] = dst0[2 * j + 1] = src[j];
    std::memcpy(dst0 + 2 * w, dst0, 2 * w * sizeof(float));
  }
}

}  // namespace sparsevid::kernels::cpu
