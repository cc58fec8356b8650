// Narrow GEMM (n <= 12 output columns) as dot products of A's rows with B's columns
// (gemm_narrow_dot.cpp). AVX-512 level only; the driver (gemm_driver.cpp) picks it.
// Include after "cpu/isa_begin.h" and "cpu/kernels/gemm_microkernel.h".
#pragma once
#ifndef FASTNN_ISA_NS
#error "include cpu/kernels/gemm_narrow_dot.h after cpu/isa_begin.h"
#endif

#if FASTNN_ISA_LEVEL == 2
constexpr int64_t kNarrowDotMaxN = 12;

// Whether gemm_narrow_dot computes `g` (batch 1): n <= 12, A rows unit-stride (a_cs == 1),
// alpha != 0 and k > 0.
bool gemm_narrow_dot_applies(const GemmArgs& g);

// C = act(alpha * A B + beta * C + biases) for one product (g.batch ignored) on `nt` threads,
// any B and C strides.
void gemm_narrow_dot(const GemmArgs& g, int nt);
#endif
