// Dense softmax attention. Work items are (head, query tile of <= 256 rows):
// one sgemm for the tile's scores against all keys, a row softmax, one sgemm
// for the output, all on one thread. Scratch is one tile per thread
// (tile x Lk floats), never L x L x H.
#pragma once

#include "kernels/cpu/cpu_context.h"

namespace sparsevid::kernels::cpu {

// q [Lq, H, d], k/v [Lk, H, d], out [Lq, H, d]; bias [H, Lq, Lk] or null;
// keys >= key_valid masked (-1 = all valid).
void Attention(const CpuContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
               float scale, const Tensor* bias, int64_t key_valid, Tensor& out);

}  // namespace sparsevid::kernels::cpu
