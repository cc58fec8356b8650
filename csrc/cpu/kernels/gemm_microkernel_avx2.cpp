// AVX2+FMA GEMM microkernel: MR x NR = 6 x 16 tile of C in 12 ymm accumulators,
// + 2 ymm for the packed B row + 1 broadcast of A = 15 of 16 ymm. Per k step:
// 2 loads, 6 broadcasts, 12 FMAs -> FMA-bound. Short panels (m_valid < 6) use a
// smaller ROWS instantiation; n_valid <= 8 a single-vector one. Tiles that are
// partial in N or have a non-unit column stride go through a small stack buffer.
#include <cstdint>
#include <cstring>

#include "fastnn/activation.h"

#include "cpu/isa_begin.h"
#if FASTNN_ISA_LEVEL == 1
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/gemm_epilogue.h"

static_assert(kGemmMR == 6 && kGemmNR == 16, "avx2 microkernel is written for 6 x 16");

namespace {

template <int ROWS, int NV>
void micro_tile(int64_t kc, const float* __restrict ap, const float* __restrict bp, float* c,
                int64_t c_rs, int64_t c_cs, int64_t n_valid, const GemmEpilogue& ep) {
  __m256 acc[ROWS][NV];
#pragma GCC unroll 6
  for (int i = 0; i < ROWS; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();

#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    __m256 b[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) b[v] = _mm256_loadu_ps(bp + 8 * v);
#pragma GCC unroll 6
    for (int i = 0; i < ROWS; ++i) {
      // set1 of a plain load, not _mm256_broadcast_ss: with that builtin in the loop GCC kept
      // the accumulators in memory and stored all 12 every k step (2x slower).
      const __m256 a = _mm256_set1_ps(ap[i]);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
    }
    ap += kGemmMR;
    bp += kGemmNR;
  }

  if (c_cs == 1 && n_valid == 8 * NV) {
    __m256 bc[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bc[v] = ep.bias_col ? _mm256_loadu_ps(ep.bias_col + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int i = 0; i < ROWS; ++i) {
      const __m256 br = ep.bias_row ? _mm256_set1_ps(ep.bias_row[i]) : _mm256_setzero_ps();
      float* crow = c + i * c_rs;
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) {
        const __m256 old = ep.beta != 0.0f ? _mm256_loadu_ps(crow + 8 * v) : _mm256_setzero_ps();
        const gemm_vf r = gemm_epilogue_vec((gemm_vf)acc[i][v], (gemm_vf)old, (gemm_vf)(bc[v] + br), ep);
        _mm256_storeu_ps(crow + 8 * v, (__m256)r);
      }
    }
  } else {
    alignas(32) float t[ROWS * 8 * NV];
    for (int i = 0; i < ROWS; ++i)
      for (int v = 0; v < NV; ++v) _mm256_store_ps(t + i * 8 * NV + 8 * v, acc[i][v]);
    gemm_epilogue_tile(t, 8 * NV, ROWS, n_valid, c, c_rs, c_cs, ep);
  }
}

using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t, int64_t,
                        const GemmEpilogue&);

template <int NV>
constexpr TileFn kTiles[6] = {micro_tile<1, NV>, micro_tile<2, NV>, micro_tile<3, NV>,
                              micro_tile<4, NV>, micro_tile<5, NV>, micro_tile<6, NV>};

}  // namespace

void gemm_microkernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
                      int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  if (n_valid > 8)
    kTiles<2>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
  else
    kTiles<1>[m_valid - 1](kc, ap, bp, c, c_rs, c_cs, n_valid, ep);
}

#endif  // FASTNN_ISA_LEVEL == 1
#include "cpu/isa_end.h"
