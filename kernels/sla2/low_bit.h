// Low-bit numerics of the SLA2 sparse branch (docs/conventions.md
// "Low-bit"): INT8 Q and smoothed K per block, FP8-E4M3 P and V, fp32
// accumulation. Emulated exactly in fp32 on the CPU.
#pragma once

#include <cstdint>

namespace sparsevid::kernels::sla2 {

constexpr float kFp8E4M3Max = 448.f;

// Nearest FP8-E4M3 (OCP "e4m3fn": bias 7, 3 mantissa bits, subnormals down
// to 2^-9, no infinities) value of x, ties to even, saturating at +-448.
// NaN stays NaN.
float RoundToFp8E4M3(float x);

// Symmetric INT8 scale for a block with absolute maximum amax: amax/127,
// and 1 when amax is 0 (all values quantise to 0 either way).
float Int8Scale(float amax);
// round-half-away-from-zero(x / scale), clamped to [-127, 127].
int8_t QuantizeInt8(float x, float scale);

// Per-channel FP8 scale for V: amax/448, and 1 when amax is 0.
float Fp8Scale(float amax);

// Quantises rows [0, rows) of x [rows, d] as one INT8 block; returns its scale.
float QuantizeBlockInt8(const float* x, int64_t rows, int64_t d, int8_t* q);

// V [L, d] -> V_hat = fp8(V / s_v) per channel (stored as floats), s_v [d].
void QuantizeValuesFp8(const float* v, int64_t L, int64_t d, float* v_hat, float* s_v);

// Low-bit sparse branch of one query block (rows x d, INT8 with scale sq)
// against the kept key blocks (ascending order, which fixes the online-softmax
// order; softmax scale 1/sqrt(d)): k8 [L, d] INT8 with per-key-block scales sk, v_hat/s_v from
// QuantizeValuesFp8. Writes O_s [rows, d]; a row with no kept key is 0.
// scratch: LowBitScratchFloats(rows, block_k, d) floats.
int64_t LowBitScratchFloats(int64_t rows, int64_t block_k, int64_t d);
void LowBitSparseBlock(const int8_t* q8, float sq, int64_t rows, const int8_t* k8, const float* sk,
                       const float* v_hat, const float* s_v, int64_t L, int64_t d, int64_t block_k,
                       const int32_t* kept, int64_t n_kept, float* out, float* scratch);

}  // namespace sparsevid::kernels::sla2
