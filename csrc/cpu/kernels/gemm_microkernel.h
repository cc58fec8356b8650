// Internal interface of the CPU GEMM building blocks: packed panel layouts, the
// register-blocked microkernel and its fused epilogue, the packing routines and the
// cache blocking. Shared by the GEMM driver (gemm_driver.cpp) and by any kernel that
// wants to reuse them (implicit-GEMM convolution packs its own B panels on the fly in
// the layout below and calls the same microkernel).
//
// USAGE: in a csrc/cpu/kernels/*.cpp file, include <cstdint> and "fastnn/activation.h"
// with the other headers, then "cpu/isa_begin.h", then this header. It declares the
// variant of the current ISA level (namespace fastnn::cpu::isa_{generic,avx2,avx512})
// and its kGemmMR / kGemmNR constants, so the same source compiles for every level.
//
// ---------------------------------------------------------------------------------
// Packed layouts (float32, zero-padded, so the microkernel never sees a partial panel)
//
//   A block (mc x kc) -> ceil(mc / MR) micro-panels, one after the other, each MR x kc
//     stored k-major:   Ap[panel][p][i] = A(panel*MR + i, p),  i < MR, p < kc
//     i.e. panel base + p*MR + i. Rows >= mc are zero. Panel stride = kc*MR floats.
//
//   B block (kc x nc) -> ceil(nc / NR) micro-panels, each kc x NR, stored k-major:
//                     Bp[panel][p][j] = B(p, panel*NR + j),  j < NR, p < kc
//     i.e. panel base + p*NR + j. Columns >= nc are zero. Panel stride = kc*NR floats.
//
//   Both buffers should be 64-byte aligned (cpu_allocator gives that); the microkernel
//   uses unaligned loads, so alignment is a performance matter only.
//
// MR x NR per ISA (from the register budget; the microkernel keeps the whole MR x NR
// tile of C in registers and streams one column of Ap (MR broadcasts) and one row of
// Bp (NR/vector-width loads) per k step):
//   avx512 : MR = 12, NR = 32  (24 zmm accumulators + 2 zmm for B + broadcasts; 32 zmm)
//   avx2   : MR =  6, NR = 16  (12 ymm accumulators + 2 ymm B + 1 broadcast;   16 ymm)
//   generic: MR =  4, NR =  8  (portable C++, auto-vectorised to SSE2)
//
// ---------------------------------------------------------------------------------
// Microkernel
//
//   gemm_microkernel(kc, ap, bp, c, c_rs, c_cs, m_valid, n_valid, ep)
//
//   acc(i, j) = sum_{p < kc} ap[p*MR + i] * bp[p*NR + j]          (kc may be 0)
//   then, for i < m_valid, j < n_valid (element C(i, j) at c[i*c_rs + j*c_cs]):
//     v = ep.alpha * acc(i, j)
//     if ep.beta != 0:  v += ep.beta * C(i, j)     (beta == 0: C is not read, BLAS rule)
//     if ep.bias_col:   v += ep.bias_col[j]        (pointer already offset to this tile)
//     if ep.bias_row:   v += ep.bias_row[i]
//     C(i, j) = activation(ep.act, v)
//   All of this happens while the tile is in registers. c_cs == 1 is the fast path;
//   other strides work (slower). m_valid <= MR and n_valid <= NR; rows/columns beyond
//   them are neither read nor written.
//
//   K-blocked callers (kc split into several blocks): first block with the user's
//   (alpha, beta), later blocks with (alpha, beta = 1); bias and activation only on
//   the last block (pass nullptr / Activation::none before).
//
// ---------------------------------------------------------------------------------
#pragma once
#ifndef FASTNN_ISA_NS
#error "include cpu/kernels/gemm_microkernel.h after cpu/isa_begin.h"
#endif

#if FASTNN_ISA_LEVEL == 2
constexpr int kGemmMR = 12;
constexpr int kGemmNR = 32;
#elif FASTNN_ISA_LEVEL == 1
constexpr int kGemmMR = 6;
constexpr int kGemmNR = 16;
#else
constexpr int kGemmMR = 4;
constexpr int kGemmNR = 8;
#endif

// The large-product tile (gemm_microkernel_big and its packers): 8 x 48 on AVX-512 (fewer loads
// per FMA than 12 x 32, gemm_microkernel_avx512.cpp); the same tile as above on the other
// levels. Same packed layouts as above with MR, NR replaced by these.
#if FASTNN_ISA_LEVEL == 2
constexpr bool kGemmHasBig = true;
constexpr int kGemmBigMR = 8;
constexpr int kGemmBigNR = 48;
#else
constexpr bool kGemmHasBig = false;
constexpr int kGemmBigMR = kGemmMR;
constexpr int kGemmBigNR = kGemmNR;
#endif

struct GemmEpilogue {
  float alpha = 1.0f;
  float beta = 0.0f;                // 0: C is overwritten without being read
  const float* bias_col = nullptr;  // bias of the tile's first column (length >= n_valid)
  const float* bias_row = nullptr;  // bias of the tile's first row (length >= m_valid)
  Activation act = Activation::none;
};

// The register-blocked kernel (gemm_microkernel_<isa>.cpp). See above.
void gemm_microkernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs,
                      int64_t c_cs, int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep);

// The same contract for the kGemmBigMR x kGemmBigNR tile (the 12 x 32 / 6 x 16 / 4 x 8 kernel
// itself below AVX-512).
#if FASTNN_ISA_LEVEL == 2
void gemm_microkernel_big(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
                          int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep);
// And with A read in place (row i at a + i*lda, unit column stride) instead of a packed panel.
void gemm_microkernel_big_direct_a(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t c_rs,
                                   int64_t c_cs, int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep);
#else
inline void gemm_microkernel_big(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
                                 int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  gemm_microkernel(kc, ap, bp, c, c_rs, c_cs, m_valid, n_valid, ep);
}
#endif

// Variant with B read in place, for small problems where packing B would cost more than it
// saves (AVX-512 level only: kGemmHasDirect). Same tile and epilogue semantics and the same
// packed A micro-panel `ap`, but B row p = b + p*ldb with unit column stride, and the
// first 16 (n_valid <= 16) or 32 floats of each row are read: a partial panel at the edge
// of B must be packed (zero-padded) by the caller.
#if FASTNN_ISA_LEVEL == 2
constexpr bool kGemmHasDirect = true;
void gemm_microkernel_direct(int64_t kc, const float* ap, const float* b, int64_t ldb, float* c, int64_t c_rs,
                             int64_t c_cs, int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep);
// And with A read in place too (row i at a + i*lda, unit column stride), for a C of one
// column tile (n <= NR), where a packed A micro-panel would serve a single microkernel call.
void gemm_microkernel_direct_ab(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                                int64_t c_rs, int64_t c_cs, int64_t m_valid, int64_t n_valid,
                                const GemmEpilogue& ep);
#else
constexpr bool kGemmHasDirect = false;
#endif

// Packing (gemm_pack.cpp). Element (i, p) of A is a[i*rs + p*cs]; element (p, j) of B is
// b[p*rs + j*cs]; any strides (negative, zero). Unit-stride fast paths. `out` holds
// ceil(mc/MR)*MR*kc (resp. ceil(nc/NR)*NR*kc) floats.
void gemm_pack_a(int64_t mc, int64_t kc, const float* a, int64_t rs, int64_t cs, float* out);
void gemm_pack_b(int64_t kc, int64_t nc, const float* b, int64_t rs, int64_t cs, float* out);
// The same for the big tile's panels (kGemmBigMR rows of A, kGemmBigNR columns of B).
void gemm_pack_a_big(int64_t mc, int64_t kc, const float* a, int64_t rs, int64_t cs, float* out);
void gemm_pack_b_big(int64_t kc, int64_t nc, const float* b, int64_t rs, int64_t cs, float* out);

// Cache blocking, derived once from the cache sizes read at run time (sysconf / CPUID)
// (gemm_driver.cpp). kc: depth of a packed block (an A micro-panel MR x kc stays in L1);
// nc: columns of a packed B block (kc x nc stays in L2, one per thread);
// mc: rows of a packed A block (mc x kc, shared by the threads, lives in L3).
// mc is a multiple of MR, nc of NR.
struct GemmBlocking {
  int64_t mc, kc, nc;
  int64_t l2_bytes;  // per-core L2 (private A blocks of gemm_shared_b are sized from it)
};
GemmBlocking gemm_blocking();

// Applies the activation to one scalar (the reference the vector versions follow).
float gemm_activation_scalar(Activation act, float v);
