// __syncthreads and friends for emulated kernels. The call site's file:line is
// captured through default arguments (__builtin_FILE/__builtin_LINE), which is what
// divergent-barrier and deadlock reports name.
#pragma once
#include <atomic>

#include "cuda_emu/device.h"

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::fastnn::emu::block_barrier(file, line, 0);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::fastnn::emu::block_barrier(file, line, pred != 0);
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::fastnn::emu::block_barrier(file, line, pred != 0) ==
         static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::fastnn::emu::block_barrier(file, line, pred != 0) != 0;
}
// Threads of a block run one at a time on one OS thread: memory is sequentially
// consistent, so fences only need to stop compiler reordering.
inline void __threadfence() { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_signal_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_signal_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::fastnn::emu::device_error("__trap() called", file, line);
}
