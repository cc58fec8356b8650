// AVX-512 GEMM microkernels: two register tiles of C from one template, both with 24 zmm
// accumulators, streaming packed B rows (prefetched 8 rows ahead) past an L1-resident packed
// A micro-panel whose column is broadcast (vbroadcastss loads):
//   12 x 32 (gemm_microkernel, kGemmMR x kGemmNR; small and batched products, conv): per k step
//     2 B loads + 2 prefetches + 12 broadcasts for 24 FMAs.
//   8 x 48 (gemm_microkernel_big, kGemmBigMR x kGemmBigNR; single large products): per k step
//     3 B loads + 3 prefetches + 8 broadcasts for 24 FMAs -- 14 load-port operations instead of
//     16, the tile MKL's sgemm uses here (its scopy_down48 / scopy_right8 packers). On this VM
//     the load ports, shared with the host's other tenants, give out before the FMA ports:
//     1 thread, same process, alternating: 1-5 % faster on 1024^2..2048^2 and the training
//     shapes than 12 x 32 (microkernel alone, L1/L2-resident panels: 5-10 % in the VM's slow
//     phases, equal in its fast ones).
// FMA-bound (2 FMA ports: 12 cycles of FMAs per k step vs 7-8 of loads) once kc is a few hundred.
// gemm_microkernel_big_direct_a: the 8 x 48 tile broadcasting from 8 rows of A in place (two row
// pointers, lda and 3*lda in index registers: the same load count as the packed panel), for the
// tall products' driver (gemm_shared_b), where each A micro-panel serves one row of tiles.
// Edge tiles: ROWS (m_valid) is a template parameter, so short panels do not pay for
// all rows; partial N uses AVX-512 masks (no scalar fix-up). The epilogue (alpha, beta,
// biases, activation) runs on the accumulators before the single store of C.
#include <cstdint>
#include <cstring>

#include "fastnn/activation.h"

#include "cpu/isa_begin.h"
#if FASTNN_ISA_LEVEL == 2
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/gemm_epilogue.h"
#include "cpu/kernels/transpose16_avx512.h"

static_assert(kGemmMR == 12 && kGemmNR == 32, "avx512 microkernel is written for 12 x 32");
static_assert(kGemmBigMR == 8 && kGemmBigNR == 48, "avx512 big microkernel is written for 8 x 48");

// GCC 12 reports the zero rows of the transposed-C path's 16 x 16 register transpose as "maybe
// uninitialized" for some (ROWS, NV) instantiations: a false positive (every r[i] is assigned).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

// B rows prefetched this many k steps ahead (1 KiB for a packed panel): the B panel streams
// from L2 (a kc x 32 panel is as large as L1), and the L1 hardware prefetcher does not
// run far enough ahead to hide L2 latency behind 12 cycles of FMAs per step. Measured on
// 1024^2 / 2048^2 (1 thread): +3-6 % over no prefetch; 4..16 are within noise of each other.
constexpr int64_t kPrefetchRows = 8;
// k steps (~200 cycles) before the end of the loop at which the C tile is prefetched into L1.
constexpr int64_t kCTailSteps = 16;

// B_DIRECT = false: packed B panel (row p at bp + p*NR). B_DIRECT = true: B read in place,
// row p at bp + p*ldb, 16*NV readable floats per row (the caller packs partial panels).
// A is always a packed micro-panel (column p at ap + p*MR): one base pointer with
// immediate offsets, so the 12 broadcasts need no address registers. No masked loads in
// the k loop: GCC then gives up moving the accumulators out of memory and stores all of
// them after every k step (measured ~3x slower).
// A_DIRECT = true: A read in place instead, row i at ap + i*lda, unit column stride (the
// caller's C has a single column tile, or each A micro-panel serves one row of tiles, so a packed
// A panel would be used once): row pointers (rows 0, 4, 8) plus lda and 3*lda in index registers
// address all 12 (or 8) rows.
// AS / BS: the packed A and B panel strides (kGemmMR / kGemmNR; kGemmBigMR / kGemmBigNR for the
// big tile).
template <int ROWS, int NV, bool B_DIRECT, bool A_DIRECT = false, int AS = kGemmMR, int BS = kGemmNR>
__attribute__((always_inline)) inline void micro_tile_impl(int64_t kc, const float* __restrict ap,
                                                           const float* __restrict bp, int64_t ldb, float* c,
                                                           int64_t c_rs, int64_t c_cs, int64_t n_valid,
                                                           const GemmEpilogue& ep, int64_t lda = 0) {
  __m512 acc[ROWS][NV];
#pragma GCC unroll 12
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();

  // C tile: fetched into L2 now (all 16*NV floats of each row, not only its first line), and
  // into L1 kCTailSteps k steps before the end. A T0 prefetch at the start alone does not
  // survive: the B panel streaming through L1 in between (up to 48 KiB) evicts it.
  if (c_cs == 1) {
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(c + i * c_rs + 16 * v), _MM_HINT_T1);
  }

  const int64_t b_step = B_DIRECT ? ldb : BS;
  const int64_t lda3 = 3 * lda;  // rows 4q + {0, 1, 2, 3} at arow[q] + {0, lda, 2*lda, lda3}: scaled-index modes
  const float* arow[3] = {ap, ap + 4 * lda, ap + 8 * lda};
  const int64_t k_tail = kc > kCTailSteps ? kc - kCTailSteps : 0;
  int64_t p = 0;
  for (int part = 0; part < 2; ++part) {
    const int64_t k_end = part == 0 ? k_tail : kc;
#pragma GCC unroll 4
    for (; p < k_end; ++p) {
      __m512 b[NV];
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v)
        _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchRows * b_step + 16 * v), _MM_HINT_T0);
#pragma GCC unroll 12
      for (int i = 0; i < ROWS; ++i) {
        const __m512 a = _mm512_set1_ps(A_DIRECT ? arow[i / 4][i % 4 == 3 ? lda3 : (i % 4) * lda] : ap[i]);
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
      }
      if (A_DIRECT) {
#pragma GCC unroll 3
        for (int q = 0; q < 3; ++q) ++arow[q];
      } else {
        ap += AS;
      }
      bp += b_step;
    }
    if (part == 0 && c_cs == 1) {
#pragma GCC unroll 12
      for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v)
          _mm_prefetch(reinterpret_cast<const char*>(c + i * c_rs + 16 * v), _MM_HINT_T0);
    }
  }

  if (c_cs == 1) {
    __mmask16 mk[NV];
    __m512 bc[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      const int64_t rem = n_valid - 16 * v;
      mk[v] = rem >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rem) - 1u);
      bc[v] = ep.bias_col ? _mm512_maskz_loadu_ps(mk[v], ep.bias_col + 16 * v) : _mm512_setzero_ps();
    }
#pragma GCC unroll 12
    for (int i = 0; i < ROWS; ++i) {
      const __m512 br = ep.bias_row ? _mm512_set1_ps(ep.bias_row[i]) : _mm512_setzero_ps();
      float* crow = c + i * c_rs;
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) {
        const __m512 old = ep.beta != 0.0f ? _mm512_maskz_loadu_ps(mk[v], crow + 16 * v) : _mm512_setzero_ps();
        const gemm_vf r = gemm_epilogue_vec((gemm_vf)acc[i][v], (gemm_vf)old, (gemm_vf)(bc[v] + br), ep);
        _mm512_mask_storeu_ps(crow + 16 * v, mk[v], (__m512)r);
      }
    }
  } else if (c_rs == 1) {
    // Transposed C (unit row stride: the caller computes C^T = B^T A^T, gemm_direct's narrow
    // path): tile column j is a contiguous run of ROWS floats at c + j*c_cs. A 16 x 16 register
    // transpose turns each group of 16 columns into 16 such runs, stored with one masked store
    // each; the per-element arithmetic is the fast path's (bias_col + bias_row is commutative).
    const __mmask16 mrows = static_cast<__mmask16>((1u << ROWS) - 1u);
    const __m512 brow = ep.bias_row ? _mm512_maskz_loadu_ps(mrows, ep.bias_row) : _mm512_setzero_ps();
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) r[i] = i < ROWS ? acc[i][v] : _mm512_setzero_ps();
      transpose16x16(r);
      const int64_t cols = n_valid - 16 * v < 16 ? n_valid - 16 * v : 16;
      for (int64_t q = 0; q < cols; ++q) {
        const int64_t j = 16 * v + q;
        float* cc = c + j * c_cs;
        const __m512 old = ep.beta != 0.0f ? _mm512_maskz_loadu_ps(mrows, cc) : _mm512_setzero_ps();
        const __m512 bc = ep.bias_col ? _mm512_set1_ps(ep.bias_col[j]) : _mm512_setzero_ps();
        const gemm_vf out = gemm_epilogue_vec((gemm_vf)r[q], (gemm_vf)old, (gemm_vf)(bc + brow), ep);
        _mm512_mask_storeu_ps(cc, mrows, (__m512)out);
      }
    }
  } else {
    alignas(64) float t[ROWS * 16 * NV];
    for (int i = 0; i < ROWS; ++i)
      for (int v = 0; v < NV; ++v) _mm512_store_ps(t + i * 16 * NV + 16 * v, acc[i][v]);
    gemm_epilogue_tile(t, 16 * NV, ROWS, n_valid, c, c_rs, c_cs, ep);
  }
}

template <int ROWS, int NV>
__attribute__((noinline)) void micro_tile_big(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs,
                                              int64_t c_cs, int64_t n_valid, const GemmEpilogue& ep) {
  micro_tile_impl<ROWS, NV, false, false, kGemmBigMR, kGemmBigNR>(kc, ap, bp, kGemmBigNR, c, c_rs, c_cs, n_valid, ep);
}

template <int ROWS, int NV>
__attribute__((noinline)) void micro_tile(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs, int64_t n_valid,
                const GemmEpilogue& ep) {
  micro_tile_impl<ROWS, NV, false>(kc, ap, bp, kGemmNR, c, c_rs, c_cs, n_valid, ep);
}

template <int ROWS, int NV>
__attribute__((noinline)) void micro_tile_direct(int64_t kc, const float* ap, const float* b, int64_t ldb, float* c, int64_t c_rs,
                       int64_t c_cs, int64_t n_valid, const GemmEpilogue& ep) {
  micro_tile_impl<ROWS, NV, true>(kc, ap, b, ldb, c, c_rs, c_cs, n_valid, ep);
}

template <int ROWS, int NV>
__attribute__((noinline)) void micro_tile_direct_ab(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                          int64_t c_rs, int64_t c_cs, int64_t n_valid, const GemmEpilogue& ep) {
  micro_tile_impl<ROWS, NV, true, true>(kc, a, b, ldb, c, c_rs, c_cs, n_valid, ep, lda);
}

template <int ROWS, int NV>
__attribute__((noinline)) void micro_tile_big_direct_a(int64_t kc, const float* a, int64_t lda, const float* bp,
                                                       float* c, int64_t c_rs, int64_t c_cs, int64_t n_valid,
                                                       const GemmEpilogue& ep) {
  micro_tile_impl<ROWS, NV, false, true, kGemmBigMR, kGemmBigNR>(kc, a, bp, kGemmBigNR, c, c_rs, c_cs, n_valid, ep,
                                                                 lda);
}

using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t, int64_t,
                        const GemmEpilogue&);
using DirectFn = void (*)(int64_t, const float*, const float*, int64_t, float*, int64_t, int64_t, int64_t,
                          const GemmEpilogue&);

template <int NV>
constexpr TileFn kTiles[12] = {micro_tile<1, NV>, micro_tile<2, NV>, micro_tile<3, NV>,  micro_tile<4, NV>,
                               micro_tile<5, NV>, micro_tile<6, NV>, micro_tile<7, NV>,  micro_tile<8, NV>,
                               micro_tile<9, NV>, micro_tile<10, NV>, micro_tile<11, NV>, micro_tile<12, NV>};
template <int NV>
constexpr TileFn kBigTiles[8] = {micro_tile_big<1, NV>, micro_tile_big<2, NV>, micro_tile_big<3, NV>,
                                 micro_tile_big<4, NV>, micro_tile_big<5, NV>, micro_tile_big<6, NV>,
                                 micro_tile_big<7, NV>, micro_tile_big<8, NV>};
using BigDirectAFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, int64_t, int64_t,
                              const GemmEpilogue&);
template <int NV>
constexpr BigDirectAFn kBigDirectA[8] = {
    micro_tile_big_direct_a<1, NV>, micro_tile_big_direct_a<2, NV>, micro_tile_big_direct_a<3, NV>,
    micro_tile_big_direct_a<4, NV>, micro_tile_big_direct_a<5, NV>, micro_tile_big_direct_a<6, NV>,
    micro_tile_big_direct_a<7, NV>, micro_tile_big_direct_a<8, NV>};
template <int NV>
constexpr DirectFn kDirect[12] = {
    micro_tile_direct<1, NV>, micro_tile_direct<2, NV>, micro_tile_direct<3, NV>,  micro_tile_direct<4, NV>,
    micro_tile_direct<5, NV>, micro_tile_direct<6, NV>, micro_tile_direct<7, NV>,  micro_tile_direct<8, NV>,
    micro_tile_direct<9, NV>, micro_tile_direct<10, NV>, micro_tile_direct<11, NV>, micro_tile_direct<12, NV>};

using DirectAbFn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t,
                            int64_t, const GemmEpilogue&);
template <int NV>
constexpr DirectAbFn kDirectAb[12] = {
    micro_tile_direct_ab<1, NV>, micro_tile_direct_ab<2, NV>,  micro_tile_direct_ab<3, NV>,
    micro_tile_direct_ab<4, NV>, micro_tile_direct_ab<5, NV>,  micro_tile_direct_ab<6, NV>,
    micro_tile_direct_ab<7, NV>, micro_tile_direct_ab<8, NV>,  micro_tile_direct_ab<9, NV>,
    micro_tile_direct_ab<10, NV>, micro_tile_direct_ab<11, NV>, micro_tile_direct_ab<12, NV>};

}  // namespace

void gemm_microkernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
                      int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  if (n_valid > 16)
    kTiles<2>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
  else
    kTiles<1>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
}

void gemm_microkernel_big(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
                          int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  if (n_valid > 32)
    kBigTiles<3>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
  else if (n_valid > 16)
    kBigTiles<2>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
  else
    kBigTiles<1>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
}

void gemm_microkernel_big_direct_a(int64_t kc, const float* a, int64_t lda, const float* bp, float* c, int64_t c_rs,
                                   int64_t c_cs, int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  if (n_valid > 32)
    kBigDirectA<3>[m_valid - 1](kc, a, lda, bp, c, c_rs, c_cs, n_valid, ep);
  else if (n_valid > 16)
    kBigDirectA<2>[m_valid - 1](kc, a, lda, bp, c, c_rs, c_cs, n_valid, ep);
  else
    kBigDirectA<1>[m_valid - 1](kc, a, lda, bp, c, c_rs, c_cs, n_valid, ep);
}

void gemm_microkernel_direct(int64_t kc, const float* ap, const float* b, int64_t ldb, float* c, int64_t c_rs,
                             int64_t c_cs, int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  if (n_valid > 16)
    kDirect<2>[m_valid - 1](kc, ap, b, ldb, c, c_rs, c_cs, n_valid, ep);
  else
    kDirect<1>[m_valid - 1](kc, ap, b, ldb, c, c_rs, c_cs, n_valid, ep);
}

void gemm_microkernel_direct_ab(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                                int64_t c_rs, int64_t c_cs, int64_t m_valid, int64_t n_valid,
                                const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  if (n_valid > 16)
    kDirectAb<2>[m_valid - 1](kc, a, lda, b, ldb, c, c_rs, c_cs, n_valid, ep);
  else
    kDirectAb<1>[m_valid - 1](kc, a, lda, b, ldb, c, c_rs, c_cs, n_valid, ep);
}

#endif  // FASTNN_ISA_LEVEL == 2
#include "cpu/isa_end.h"
