#include "kernels/cpu/attention_dense.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/gemm.h"
#include "kernels/op_shapes.h"

namespace sparsevid::kernels::cpu {
namespace {

// Scores scratch per tile: at most 4 Mi floats (16 MiB).
constexpr int64_t kMaxTileScores = int64_t{1} << 22;

}  // namespace

void Attention(const CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
               float scale, const Tensor* bias, int64_t key_valid, Tensor& out) {
  const op_shapes::AttentionDims dims =
      op_shapes::CheckAttention("", q, k, v, bias, key_valid, out);
  const int64_t Lq = dims.Lq, H = dims.heads, d = dims.head_dim, Lk = dims.Lk, nk = dims.keys;
  float* o = out.f32();
  if (nk == 0) {  // every key masked: no distribution, define the output as 0
    std::memset(o, 0, out.nbytes());
    return;
  }
  if (Lq == 0 || d == 0) {
    if (out.nbytes()) std::memset(o, 0, out.nbytes());
    return;
  }
  // Work items are (head, query tile); each runs start to finish on one
  // thread (serial sgemm, softmax, serial sgemm), so the whole call is one
  // parallel region without barriers.
  const int threads = ctx.threads;
  const int64_t tile =
      std::max<int64_t>(1, std::min<int64_t>({Lq, 256, kMaxTileScores / (nk * threads)}));
  const int64_t tiles = (Lq + tile - 1) / tile;
  Scratch scores(ctx, tile * nk * threads);
  const int64_t ld = H * d;
  const int item_threads = static_cast<int>(std::min<int64_t>(threads, H * tiles));
#pragma omp parallel for num_threads(item_threads) schedule(dynamic, 1)
  for (int64_t item = 0; item < H * tiles; ++item) {
    const int64_t h = item / tiles, r0 = (item % tiles) * tile;
    const int64_t rows = std::min(tile, Lq - r0);
    float* s = scores.data() + tile * nk * (item_threads > 1 ? omp_get_thread_num() : 0);
    const CpuContext serial{1, nullptr};
    Sgemm(serial, /*trans_b=*/true, rows, nk, d, scale, q.f32() + r0 * ld + h * d, ld,
          k.f32() + h * d, ld, 0.f, s, nk);
    const float* bh = bias ? bias->f32() + (h * Lq + r0) * Lk : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      float* row = s + r * nk;
      if (bh) {
        const float* br = bh + r * Lk;
        for (int64_t j = 0; j < nk; ++j) row[j] += br[j];
      }
      SoftmaxRow(row, nk);
    }
    Sgemm(serial, /*trans_b=*/false, rows, d, nk, 1.f, s, nk, v.f32() + h * d, ld, 0.f,
          o + r0 * ld + h * d, ld);
  }
}

}  // namespace sparsevid::kernels::cpu
