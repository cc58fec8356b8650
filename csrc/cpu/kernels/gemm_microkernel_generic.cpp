// Portable GEMM microkernel (baseline x86-64 / any target): MR x NR = 4 x 8 tile of C
// accumulated in a local array that the compiler keeps in 8 SSE registers
// (auto-vectorised rank-1 updates). The reference semantics of the microkernel
// interface (gemm_microkernel.h); the epilogue is the shared tile epilogue.
#include <cstdint>
#include <cstring>

#include "fastnn/activation.h"

#include "cpu/isa_begin.h"
#if FASTNN_ISA_LEVEL == 0
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/gemm_epilogue.h"

void gemm_microkernel(int64_t kc, const float* ap, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
                      int64_t m_valid, int64_t n_valid, const GemmEpilogue& ep) {
  if (m_valid <= 0 || n_valid <= 0) return;
  alignas(64) float acc[kGemmMR * kGemmNR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int i = 0; i < kGemmMR; ++i) {
      const float a = ap[i];
      for (int j = 0; j < kGemmNR; ++j) acc[i * kGemmNR + j] += a * bp[j];
    }
    ap += kGemmMR;
    bp += kGemmNR;
  }
  gemm_epilogue_tile(acc, kGemmNR, m_valid, n_valid, c, c_rs, c_cs, ep);
}

#endif  // FASTNN_ISA_LEVEL == 0
#include "cpu/isa_end.h"
