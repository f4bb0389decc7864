#include "kernels/cpu/layout.h"

#include <cstring>

#include "kernels/cpu/convert.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {

void Permute(const CpuContext& ctx, const Tensor& x, const std::vector<int>& perm, Tensor& y) {
  const op_shapes::PermuteGeometry g = op_shapes::CheckPermute("", x, perm, y);
  if (x.numel() == 0) return;
  const int n = x.ndim();
  if (n == 0) {
    std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  const size_t es = DTypeSize(x.dtype());
  const Shape& expect = g.out_shape;
  const std::vector<int64_t>& in_stride = g.in_stride;
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
  const op_shapes::ConcatGeometry g = op_shapes::CheckConcat("", xs, dim, y);
  char* dst = static_cast<char*>(y.raw());
  size_t col = 0;  // byte offset of the current input inside an output row
  for (size_t i = 0; i < xs.size(); ++i) {
    const size_t row = g.row_bytes[i];
    const char* src = static_cast<const char*>(xs[i].raw());
    if (row > 0) {
      for (int64_t o = 0; o < g.outer; ++o) {
        std::memcpy(dst + o * g.out_row_bytes + col, src + o * row, row);
      }
    }
    col += row;
  }
}

void Embedding(const CpuContext& ctx, const Tensor& table, const std::vector<int32_t>& ids,
               Tensor& y) {
  const int64_t d = op_shapes::CheckEmbedding("", table, ids, y).d;
  const size_t es = DTypeSize(table.dtype());
  for (size_t i = 0; i < ids.size(); ++i) {
    // A one-row view of the table converts like any tensor.
    Tensor row(table.storage(), table.byte_offset() + ids[i] * d * es, {d}, table.dtype());
    ConvertToF32(CpuContext{1, nullptr}, row, y.f32() + i * d);
  }
}

void UpsampleNearest2x(const CpuContext& ctx, const Tensor& x, Tensor& y) {
  const op_shapes::UpsampleDims dims = op_shapes::CheckUpsampleNearest2x("", x, y);
  const int64_t planes = dims.planes, h = dims.h, w = dims.w;
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
