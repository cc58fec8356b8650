// The one compatibility header every kernels/*.cu includes first.
//
// Under nvcc it is the real CUDA toolkit. Under the host compiler it is the CPU
// emulator of the CUDA execution model (csrc/cuda_emu/cuda_emu.h), which runs the
// same source with one fiber per CUDA thread. Kernel code departs from plain CUDA
// in exactly two places:
//   FASTNN_LAUNCH(kernel, grid, block, smem_bytes, stream)(args...)
//       instead of kernel<<<grid, block, smem_bytes, stream>>>(args...).
//       `kernel` must be one macro argument: for a template instance, name it first
//       (auto* k = &my_kernel<float, 4>; FASTNN_LAUNCH(k, ...)(...)).
//   FASTNN_DYNAMIC_SHARED(T, name);
//       instead of extern __shared__ T name[]; declares `T* name` pointing at the
//       launch's dynamic shared memory (16-byte aligned; one buffer per kernel, so
//       carve several arrays out of it by offsets).
// Everything else (threadIdx, __syncthreads, __shfl_*_sync, atomics, wmma,
// __pipeline_*, cudaMalloc, ...) keeps its CUDA name. FASTNN_CUDA_EMULATED is
// defined when running on the emulator.
#pragma once

#if defined(__CUDACC__)

#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
#include <mma.h>

#define FASTNN_LAUNCH(kernel, grid, block, smem_bytes, stream) kernel<<<(grid), (block), (smem_bytes), (stream)>>>
#define FASTNN_DYNAMIC_SHARED(T, name)                              \
  extern __shared__ __align__(16) unsigned char fastnn_dynamic_smem_[]; \
  T* name = reinterpret_cast<T*>(fastnn_dynamic_smem_)

#else  // host compiler: the emulator

#include "cuda_emu/cuda_emu.h"

#define FASTNN_LAUNCH(kernel, grid, block, smem_bytes, stream) \
  ::fastnn::emu::make_launcher((kernel), dim3(grid), dim3(block), (smem_bytes), (stream), __FILE__, __LINE__)
#define FASTNN_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::fastnn::emu::dynamic_shared())

#endif
