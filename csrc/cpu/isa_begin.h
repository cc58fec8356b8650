// See cpu/isa.h. Include after every system and library header of a kernel file.
// (No include guard: a file includes it exactly once, paired with isa_end.h.)
#ifndef FASTNN_ISA_LEVEL
#error "csrc/cpu/kernels/ files are compiled once per ISA with FASTNN_ISA_LEVEL set by CMake"
#endif
#include <immintrin.h>

#if FASTNN_ISA_LEVEL == 2
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi,bmi2,popcnt")
#define FASTNN_ISA_NS isa_avx512
#define FASTNN_VEC_BYTES 64
#elif FASTNN_ISA_LEVEL == 1
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,bmi,bmi2,popcnt")
#define FASTNN_ISA_NS isa_avx2
#define FASTNN_VEC_BYTES 32
#else
#define FASTNN_ISA_NS isa_generic
#define FASTNN_VEC_BYTES 16
#endif

namespace fastnn::cpu::FASTNN_ISA_NS {
