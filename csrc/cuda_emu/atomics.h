// Atomics for emulated kernels. Threads are cooperative fibers on one OS thread and
// never switch inside these functions, so a plain read-modify-write is atomic.
// The _block / _system scope variants are the same operation.
#pragma once
#include <cstdint>
#include <cstring>

#define FASTNN_EMU_ATOMIC_RMW(NAME, T, EXPR)  \
  inline T NAME(T* address, T val) {          \
    T old = *address;                         \
    *address = (EXPR);                        \
    return old;                               \
  }                                           \
  inline T NAME##_block(T* address, T val) { return NAME(address, val); } \
  inline T NAME##_system(T* address, T val) { return NAME(address, val); }

FASTNN_EMU_ATOMIC_RMW(atomicAdd, int, old + val)
FASTNN_EMU_ATOMIC_RMW(atomicAdd, unsigned int, old + val)
FASTNN_EMU_ATOMIC_RMW(atomicAdd, unsigned long long, old + val)
FASTNN_EMU_ATOMIC_RMW(atomicAdd, float, old + val)
FASTNN_EMU_ATOMIC_RMW(atomicAdd, double, old + val)
FASTNN_EMU_ATOMIC_RMW(atomicSub, int, old - val)
FASTNN_EMU_ATOMIC_RMW(atomicSub, unsigned int, old - val)
FASTNN_EMU_ATOMIC_RMW(atomicExch, int, val)
FASTNN_EMU_ATOMIC_RMW(atomicExch, unsigned int, val)
FASTNN_EMU_ATOMIC_RMW(atomicExch, unsigned long long, val)
FASTNN_EMU_ATOMIC_RMW(atomicExch, float, val)
FASTNN_EMU_ATOMIC_RMW(atomicMax, int, (val > old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMax, unsigned int, (val > old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMax, long long, (val > old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMax, unsigned long long, (val > old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMin, int, (val < old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMin, unsigned int, (val < old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMin, long long, (val < old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicMin, unsigned long long, (val < old ? val : old))
FASTNN_EMU_ATOMIC_RMW(atomicAnd, int, old & val)
FASTNN_EMU_ATOMIC_RMW(atomicAnd, unsigned int, old & val)
FASTNN_EMU_ATOMIC_RMW(atomicAnd, unsigned long long, old & val)
FASTNN_EMU_ATOMIC_RMW(atomicOr, int, old | val)
FASTNN_EMU_ATOMIC_RMW(atomicOr, unsigned int, old | val)
FASTNN_EMU_ATOMIC_RMW(atomicOr, unsigned long long, old | val)
FASTNN_EMU_ATOMIC_RMW(atomicXor, int, old ^ val)
FASTNN_EMU_ATOMIC_RMW(atomicXor, unsigned int, old ^ val)
FASTNN_EMU_ATOMIC_RMW(atomicXor, unsigned long long, old ^ val)
// ((old >= val) ? 0 : (old + 1)) and (((old == 0) || (old > val)) ? val : (old - 1)), as in CUDA.
FASTNN_EMU_ATOMIC_RMW(atomicInc, unsigned int, (old >= val ? 0u : old + 1u))
FASTNN_EMU_ATOMIC_RMW(atomicDec, unsigned int, ((old == 0u || old > val) ? val : old - 1u))
#undef FASTNN_EMU_ATOMIC_RMW

#define FASTNN_EMU_ATOMIC_CAS(T)                                   \
  inline T atomicCAS(T* address, T compare, T val) {               \
    T old = *address;                                              \
    if (old == compare) *address = val;                            \
    return old;                                                    \
  }                                                                \
  inline T atomicCAS_block(T* a, T c, T v) { return atomicCAS(a, c, v); } \
  inline T atomicCAS_system(T* a, T c, T v) { return atomicCAS(a, c, v); }
FASTNN_EMU_ATOMIC_CAS(int)
FASTNN_EMU_ATOMIC_CAS(unsigned int)
FASTNN_EMU_ATOMIC_CAS(unsigned long long)
FASTNN_EMU_ATOMIC_CAS(unsigned short)
#undef FASTNN_EMU_ATOMIC_CAS

// Float max/min are not CUDA built-ins (kernels use CAS loops or int tricks), but
// half / bfloat16 adds are (sm_70 / sm_80).
inline __half atomicAdd(__half* address, __half val) {
  __half old = *address;
  *address = __float2half(__half2float(old) + __half2float(val));
  return old;
}
inline __nv_bfloat16 atomicAdd(__nv_bfloat16* address, __nv_bfloat16 val) {
  __nv_bfloat16 old = *address;
  *address = __float2bfloat16(__bfloat162float(old) + __bfloat162float(val));
  return old;
}
