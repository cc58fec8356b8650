// fastnn::cpu::gemm: front end of the CPU GEMM. Normalises the problem (a C with unit
// row stride is computed as C^T = B^T A^T, except for narrow products, so the microkernel's vector loads and
// stores of C run along contiguous memory), then calls the ISA variant selected at
// run time: csrc/cpu/kernels/gemm_driver.cpp -> gemm_pack.cpp -> gemm_microkernel_*.cpp.
#include "fastnn/gemm.h"

#include <utility>

#include "cpu/isa.h"

namespace fastnn::cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(void gemm_run(const GemmArgs& args);)

void gemm(const GemmArgs& args) {
  if (args.m <= 0 || args.n <= 0 || args.batch <= 0) return;
  GemmArgs g = args;
  // Not for narrow products with unit-stride rows of A (n <= 12: the AVX-512 narrow dot kernel
  // takes any C strides): swapped, they would reach another kernel and give other bits than the
  // same product into a row-major C.
  const bool narrow_dot = g.n <= 12 && g.a_cs == 1;
  if (g.c_cs != 1 && g.c_rs == 1 && !narrow_dot) {
    std::swap(g.m, g.n);
    std::swap(g.a, g.b);
    const int64_t a_rs = g.a_rs, a_cs = g.a_cs;
    g.a_rs = args.b_cs;
    g.a_cs = args.b_rs;
    g.b_rs = a_cs;
    g.b_cs = a_rs;
    std::swap(g.c_rs, g.c_cs);
    std::swap(g.bias_col, g.bias_row);
    std::swap(g.a_batch_stride, g.b_batch_stride);
  }
  FASTNN_CPU_DISPATCH(gemm_run, g);
}

}  // namespace fastnn::cpu
