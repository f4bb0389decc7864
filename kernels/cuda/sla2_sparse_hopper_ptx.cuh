// Inline-PTX layer for the Hopper (sm_90a) sparse kernels: mbarriers, TMA
// tensor loads, wgmma (warpgroup MMA) and its shared-memory matrix
// descriptors. Written from the PTX ISA; every tile these wrappers see is
// a TMA box stored with the swizzle of its row length (rows of 128 bytes:
// 128-byte swizzle, tile bases 1024-byte aligned; rows of 64 bytes: 64-byte
// swizzle, bases 512-byte aligned).
#pragma once

#include <cstdint>

namespace sparsevid::kernels::cuda::hopper {

// ------------------------------------------------------------- mbarrier

__device__ __forceinline__ void MbarInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Makes the initialised barriers visible to the async proxy (TMA).
__device__ __forceinline__ void FenceBarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// One arrival that also announces `bytes` of TMA traffic for this phase.
__device__ __forceinline__ void MbarArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}

// Spins until the phase with the given parity has completed.
__device__ __forceinline__ void MbarWait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}

// ------------------------------------------------------------- TMA

// Box load of a 4-D tensor map (c0 innermost) into shared memory; completion
// is counted in bytes on `bar`. Out-of-range elements arrive as zeros.
__device__ __forceinline__ void TmaLoad4d(uint32_t dst, const void* tmap, uint32_t bar, int c0,
                                          int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
      : "memory");
}

// Box load of a 2-D tensor map (c0 innermost).
__device__ __forceinline__ void TmaLoad2d(uint32_t dst, const void* tmap, uint32_t bar, int c0,
                                          int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}

// L2 policies for TMA loads: K/V blocks are re-read by the other CTAs of the
// head (keep them), Q is read once (let it go first).
__device__ __forceinline__ uint64_t L2EvictLast() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}
__device__ __forceinline__ uint64_t L2EvictFirst() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// TmaLoad4d with an L2 eviction policy from L2EvictLast/L2EvictFirst.
__device__ __forceinline__ void TmaLoad4dHint(uint32_t dst, const void* tmap, uint32_t bar, int c0,
                                              int c1, int c2, int c3, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint"
      " [%0], [%1, {%2, %3, %4, %5}], [%6], %7;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(tmap)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar),
      "l"(policy)
      : "memory");
}

// Plain bulk copy of `bytes` (a multiple of 16, both addresses 16-byte
// aligned) from global to shared memory, counted on `bar` like a box load.
__device__ __forceinline__ void BulkLoad(uint32_t dst, const void* src, uint32_t bytes,
                                         uint32_t bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::
          "r"(dst),
      "l"(src), "r"(bytes), "r"(bar)
      : "memory");
}

// Box store of shared memory into a 4-D tensor map; with kAdd the box is
// added to what global memory holds (an element-wise reduction done by the
// TMA unit). Out-of-range elements are not written. The issuing thread tracks
// completion through bulk groups (BulkCommit / BulkWaitRead / BulkWait).
template <bool kAdd>
__device__ __forceinline__ void TmaStore4d(const void* tmap, uint32_t src, int c0, int c1, int c2,
                                           int c3) {
  if constexpr (kAdd) {
    asm volatile(
        "cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group"
        " [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(reinterpret_cast<uint64_t>(tmap)),
        "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
        : "memory");
  } else {
    asm volatile(
        "cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group"
        " [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(reinterpret_cast<uint64_t>(tmap)),
        "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
        : "memory");
  }
}
__device__ __forceinline__ void BulkCommit() {
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
// The committed stores, all but the newest kPending groups, have read their
// shared memory (it may be rewritten).
template <int kPending = 0>
__device__ __forceinline__ void BulkWaitRead() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(kPending) : "memory");
}
// The committed stores are complete.
__device__ __forceinline__ void BulkWait() {
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
}
// Adds `bytes` (a multiple of 16, both addresses 16-byte aligned) of fp32
// from shared memory to global memory element-wise (a reduction done by the
// TMA unit, in the issuing thread's bulk group).
__device__ __forceinline__ void BulkReduceAddF32(float* dst, uint32_t src, uint32_t bytes) {
  asm volatile(
      "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n" ::"l"(dst),
      "r"(src), "r"(bytes)
      : "memory");
}

// ------------------------------------------------------------- wgmma

// Shared-memory matrix descriptor with the 128-byte swizzle. For K-major
// tiles (rows of 128 bytes along the reduction dimension) the stride byte
// offset is the step between 8-row groups and the leading offset is unused;
// for MN-major tiles the leading offset steps between 64-element chunks of
// the M/N dimension and the stride offset between 8-row groups along K.
// swizzle_bytes: 128 or 64, the swizzle the tile was stored with.
__device__ __forceinline__ uint64_t SmemDesc(uint32_t addr, uint32_t lead_bytes,
                                             uint32_t stride_bytes, int swizzle_bytes = 128) {
  const uint64_t layout = swizzle_bytes == 128 ? 1 : 2;  // descriptor codes of the two swizzles
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>((lead_bytes >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((stride_bytes >> 4) & 0x3FFF) << 32) | (layout << 62);
}

// The descriptor of the tile `bytes` (a multiple of 16) further on: only the
// start-address field in the low word moves, and shared addresses stay below
// 2^18, so nothing carries into the other fields. Built once per tile and
// advanced per k-step, a descriptor costs one 32-bit add per wgmma instead
// of the mask, shift and or of SmemDesc (the loops are issue-bound).
__device__ __forceinline__ uint64_t DescAdvance(uint64_t desc, uint32_t bytes) {
  const uint32_t lo = static_cast<uint32_t>(desc) + (bytes >> 4);
  return (desc & 0xFFFFFFFF00000000ull) | lo;
}

// The descriptor of the tile `index` strides of kStrideBytes further on (a
// ring's stage or slot): one multiply-add on the low word.
template <uint32_t kStrideBytes>
__device__ __forceinline__ uint64_t DescStep(uint64_t desc, int index) {
  static_assert(kStrideBytes % 16 == 0, "descriptors address 16-byte units");
  const uint32_t lo = static_cast<uint32_t>(desc) + static_cast<uint32_t>(index) * (kStrideBytes >> 4);
  return (desc & 0xFFFFFFFF00000000ull) | lo;
}

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}

// Keeps the compiler from moving reads/writes of registers that an
// in-flight wgmma owns across the wait that retires it.
template <int N>
__device__ __forceinline__ void RegFence(float (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
    asm volatile("" : "+f"(r[i][0]), "+f"(r[i][1]), "+f"(r[i][2]), "+f"(r[i][3])::"memory");
}
template <int N>
__device__ __forceinline__ void RegFence(int (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
    asm volatile("" : "+r"(r[i][0]), "+r"(r[i][1]), "+r"(r[i][2]), "+r"(r[i][3])::"memory");
}
template <int N>
__device__ __forceinline__ void RegFence(uint32_t (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
    asm volatile("" : "+r"(r[i][0]), "+r"(r[i][1]), "+r"(r[i][2]), "+r"(r[i][3])::"memory");
}

#define SV_F4(x, i) "+f"(x[i][0]), "+f"(x[i][1]), "+f"(x[i][2]), "+f"(x[i][3])
#define SV_F32(x)                                                                            \
  SV_F4(x, 0), SV_F4(x, 1), SV_F4(x, 2), SV_F4(x, 3), SV_F4(x, 4), SV_F4(x, 5), SV_F4(x, 6), \
      SV_F4(x, 7)
#define SV_F32_HI(x)                                                                     \
  SV_F4(x, 8), SV_F4(x, 9), SV_F4(x, 10), SV_F4(x, 11), SV_F4(x, 12), SV_F4(x, 13),      \
      SV_F4(x, 14), SV_F4(x, 15)

// The accumulator register lists of the m64n64 / m64n128 shapes.
#define SV_ACC64                                                                     \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "             \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
// d[64 x 64] (+)= A[64 x 16] * B[64 x 16]^T, bf16 in, fp32 accumulate, both
// operands K-major in shared memory. accumulate = 0 overwrites d.
__device__ __forceinline__ void WgmmaSS_N64(float (&d)[8][4], uint64_t a, uint64_t b,
                                            int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      SV_ACC64
      "%32, %33, acc, 1, 1, 0, 0;\n"
      "}\n"
      : SV_F32(d)
      : "l"(a), "l"(b), "r"(accumulate));
}

// d[64 x 64] (+)= A[64 x 16] (registers, mma.m16n8k16 A layout per warp) *
// B[16 x 64]; kTransB = 0: B K-major in shared memory (rows of K for Q K^T),
// 1: B MN-major (row-major V rows for P V). accumulate = 0 overwrites d.
template <int kTransB>
__device__ __forceinline__ void WgmmaRS_N64(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b,
                                            int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      SV_ACC64
      "{%32, %33, %34, %35}, %36, acc, 1, 1, %38;\n"
      "}\n"
      : SV_F32(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(kTransB));
}

#define SV_ACC128                                                                     \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "              \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "     \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "     \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "

// d[64 x 128] (+)= A[64 x 16] (registers) * B[16 x 128]; kTransB = 1: B
// MN-major (V rows for P V), 0: K-major (128 key rows for Q K^T).
// accumulate = 0 overwrites d.
template <int kTransB = 1>
__device__ __forceinline__ void WgmmaRS_N128(float (&d)[16][4], const uint32_t (&a)[4],
                                             uint64_t b, int accumulate = 1) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " SV_ACC128
      "{%64, %65, %66, %67}, %68, acc, 1, 1, %70;\n"
      "}\n"
      : SV_F32(d), SV_F32_HI(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(kTransB));
}

// d[64 x 128] += kScaleA * A[64 x 16] * B[16 x 128] (kScaleA = +1 or -1),
// both operands MN-major in shared memory (A stored as rows of K, i.e. A^T
// row-major: phi(K_j) for the linear branch's states; B like a V tile).
template <int kScaleA>
__device__ __forceinline__ void WgmmaSSTT_N128(float (&d)[16][4], uint64_t a, uint64_t b) {
  static_assert(kScaleA == 1 || kScaleA == -1, "wgmma scales A by +1 or -1");
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " SV_ACC128
      "%64, %65, acc, %67, 1, 1, 1;\n"
      "}\n"
      : SV_F32(d), SV_F32_HI(d)
      : "l"(a), "l"(b), "r"(1), "n"(kScaleA));
}

// The same with N = 64.
template <int kScaleA>
__device__ __forceinline__ void WgmmaSSTT_N64(float (&d)[8][4], uint64_t a, uint64_t b) {
  static_assert(kScaleA == 1 || kScaleA == -1, "wgmma scales A by +1 or -1");
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      SV_ACC64
      "%32, %33, acc, %35, 1, 1, 1;\n"
      "}\n"
      : SV_F32(d)
      : "l"(a), "l"(b), "r"(1), "n"(kScaleA));
}

// d[64 x 8] (+)= A[64 x 16] * B[16 x 8], A MN-major in shared memory (rows
// of K, as for WgmmaSSTT_N128), B K-major (8 rows of 16 K elements).
// accumulate = 0 overwrites d. With B all ones, d holds A's row sums (the
// column sums of phi(K_j)).
__device__ __forceinline__ void WgmmaSSTN_N8(float (&d)[1][4], uint64_t a, uint64_t b,
                                             int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %6, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, acc, 1, 1, 1, 0;\n"
      "}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3])
      : "l"(a), "l"(b), "r"(accumulate));
}

// ---- 8-bit operands (the low-bit kernel): k-steps of 32, both operands
// K-major; no transpose or negation exists for these types.
#define SV_I4(x, i) "+r"(x[i][0]), "+r"(x[i][1]), "+r"(x[i][2]), "+r"(x[i][3])
#define SV_I32(x)                                                                            \
  SV_I4(x, 0), SV_I4(x, 1), SV_I4(x, 2), SV_I4(x, 3), SV_I4(x, 4), SV_I4(x, 5), SV_I4(x, 6), \
      SV_I4(x, 7)
#define SV_I32_HI(x)                                                                      \
  SV_I4(x, 8), SV_I4(x, 9), SV_I4(x, 10), SV_I4(x, 11), SV_I4(x, 12), SV_I4(x, 13),      \
      SV_I4(x, 14), SV_I4(x, 15)

// d[64 x 64] (+)= A[64 x 32] (registers, mma.m16n8k32 A layout per warp) *
// B[64 x 32]^T (K-major in shared memory), s8 in, exact s32 accumulate.
__device__ __forceinline__ void WgmmaS8RS_N64(int (&d)[8][4], const uint32_t (&a)[4], uint64_t b,
                                              int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
      SV_ACC64
      "{%32, %33, %34, %35}, %36, acc;\n"
      "}\n"
      : SV_I32(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

// d[64 x 64] (+)= A[64 x 32] * B[64 x 32]^T, s8 in, exact s32 accumulate,
// both operands K-major in shared memory (Q and one K block).
__device__ __forceinline__ void WgmmaS8SS_N64(int (&d)[8][4], uint64_t a, uint64_t b,
                                              int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.s32.s8.s8 "
      SV_ACC64
      "%32, %33, acc;\n"
      "}\n"
      : SV_I32(d)
      : "l"(a), "l"(b), "r"(accumulate));
}

// d[64 x 128] (+)= A[64 x 32] * B[128 x 32]^T, s8 in, exact s32 accumulate,
// both operands K-major in shared memory (Q and a pair of K blocks).
__device__ __forceinline__ void WgmmaS8SS_N128(int (&d)[16][4], uint64_t a, uint64_t b,
                                               int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 " SV_ACC128
      "%64, %65, acc;\n"
      "}\n"
      : SV_I32(d), SV_I32_HI(d)
      : "l"(a), "l"(b), "r"(accumulate));
}

// d[64 x 64] (+)= A[64 x 32] (registers) * B[32 x 64], e4m3 in, fp32
// accumulate, B K-major (rows of B^T: V^T).
__device__ __forceinline__ void WgmmaE4m3RS_N64(float (&d)[8][4], const uint32_t (&a)[4],
                                                uint64_t b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k32.f32.e4m3.e4m3 "
      SV_ACC64
      "{%32, %33, %34, %35}, %36, acc, 1, 1;\n"
      "}\n"
      : SV_F32(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

// The same with N = 128.
__device__ __forceinline__ void WgmmaE4m3RS_N128(float (&d)[16][4], const uint32_t (&a)[4],
                                                 uint64_t b, int accumulate) {
  asm volatile(
      "{\n"
      ".reg .pred acc;\n"
      "setp.ne.b32 acc, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 " SV_ACC128
      "{%64, %65, %66, %67}, %68, acc, 1, 1;\n"
      "}\n"
      : SV_F32(d), SV_F32_HI(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate));
}

#undef SV_I32
#undef SV_I32_HI
#undef SV_I4
#undef SV_ACC128
#undef SV_ACC64

// Four 8 x 8 bf16 matrices to shared memory: lane l gives the address of
// row l % 8 of matrix l / 8 (16 bytes), and register j of every lane holds
// its two elements of matrix j in the mma accumulator layout.
__device__ __forceinline__ void StMatrixX4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2,
                                           uint32_t r3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr),
               "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
}

// Orders this thread's ordinary shared-memory writes before later reads by
// the async proxy (wgmma operands, TMA).
__device__ __forceinline__ void FenceProxyAsyncShared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

#undef SV_F32_HI
#undef SV_F32
#undef SV_F4

// Moves this warpgroup's register budget per thread to kRegs (grow: take
// from the pool the other warpgroups released; shrink: give to it).
template <int kRegs, bool kGrow>
__device__ __forceinline__ void SetMaxRegs() {
  if constexpr (kGrow) {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
  } else {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
  }
}

// Named barrier over `threads` threads (a warpgroup), ids 1.. (0 is
// __syncthreads).
__device__ __forceinline__ void NamedBarrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Arrives on a named barrier without waiting (the producer side of a
// turn hand-over).
__device__ __forceinline__ void NamedBarrierArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

}  // namespace sparsevid::kernels::cuda::hopper
