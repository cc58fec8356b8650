// Multi-ISA compilation of the CPU kernels.
//
// Every file in csrc/cpu/kernels/ is compiled three times, with
// FASTNN_ISA_LEVEL = 0 (generic x86-64), 1 (AVX2+FMA) and 2 (AVX-512 F/BW/DQ/VL).
// A kernel file includes its system headers first, then "cpu/isa_begin.h",
// writes its code, then includes "cpu/isa_end.h". isa_begin.h opens the namespace
// fastnn::cpu::FASTNN_ISA_NS (isa_generic / isa_avx2 / isa_avx512) and switches
// the code generation target with #pragma GCC target, so that only the functions
// defined inside the region use the wider instructions: inline functions and
// templates from headers included earlier keep the baseline target and cannot
// leak AVX-512 code into a machine without it through COMDAT folding.
//
// Outside the kernels, FASTNN_CPU_DISPATCH(fn, args...) calls the variant of the
// level selected at run time (fastnn::simd_level()).
#pragma once
#include "fastnn/config.h"

#define FASTNN_CPU_DECLARE_ALL_ISAS(DECL) \
  namespace isa_generic { DECL }          \
  namespace isa_avx2 { DECL }             \
  namespace isa_avx512 { DECL }

#define FASTNN_CPU_DISPATCH(FN, ...)                                   \
  do {                                                                 \
    switch (::fastnn::simd_level()) {                                  \
      case ::fastnn::SimdLevel::avx512:                                \
        return ::fastnn::cpu::isa_avx512::FN(__VA_ARGS__);             \
      case ::fastnn::SimdLevel::avx2:                                  \
        return ::fastnn::cpu::isa_avx2::FN(__VA_ARGS__);               \
      default:                                                         \
        return ::fastnn::cpu::isa_generic::FN(__VA_ARGS__);            \
    }                                                                  \
  } while (0)
