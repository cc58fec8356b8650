// The CPU emulator of the CUDA execution model, as seen by kernel sources compiled
// by the host compiler (included by kernels/cuda_compat.cuh when not under nvcc).
//
// Layers (one concept per file):
//   fiber.h          stacks with guard pages + context switch (x86-64 asm / ucontext)
//   scheduler.h      blocks, thread order, block barrier, warp barrier, errors
//   barrier.h        __syncthreads*, fences          warp.h      shuffles / votes
//   shared_memory.h  static + dynamic shared memory, poisoning
//   atomics.h        atomic*                          intrinsics.h math / bit intrinsics
//   wmma.h           nvcuda::wmma                     pipeline.h  __pipeline_* (cp.async)
//   launch.h         FASTNN_LAUNCH                    runtime.cpp cuda* runtime API
//   runtime_templates.h  the nvcc-only C++ overloads of <cuda_runtime.h>
// The toolkit's own host headers provide the vector types, half / bfloat16 and the
// runtime API declarations (implemented by runtime.cpp); their qualifier macros are
// then redefined for plain C++.
#pragma once
#if defined(__CUDACC__)
#error "cuda_emu.h is for the host compiler; nvcc uses the real CUDA headers"
#endif
#if defined(__cudaGet_threadIdx)
#error "include kernels/cuda_compat.cuh before <cuda_runtime.h>: the emulator must declare threadIdx & co. non-const"
#endif

// Makes device_launch_parameters.h declare threadIdx, blockIdx, ... as plain
// (non-const) externs, which the scheduler assigns.
#define __STORAGE__ extern
#include <cuda_runtime.h>
#undef __STORAGE__
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "cuda_emu/device.h"
#include "cuda_emu/shared_memory.h"

#undef __global__
#undef __device__
#undef __host__
#undef __constant__
#undef __managed__
#undef __shared__
#undef __launch_bounds__
#undef __grid_constant__
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __launch_bounds__(...)
// One instance per program, reused by every block (blocks run one at a time) and
// poisoned before each block: see shared_memory.h.
#define __shared__ static __attribute__((section(FASTNN_EMU_SHARED_SECTION), aligned(16)))

#define FASTNN_CUDA_EMULATED 1

#include "cuda_emu/atomics.h"
#include "cuda_emu/barrier.h"
#include "cuda_emu/intrinsics.h"
#include "cuda_emu/launch.h"
#include "cuda_emu/pipeline.h"
#include "cuda_emu/runtime_templates.h"
#include "cuda_emu/warp.h"
#include "cuda_emu/wmma.h"

using std::max;
using std::min;
