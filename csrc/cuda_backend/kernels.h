// Host-side launchers of the CUDA kernels in kernels/*.cu, called by the backend.
// Arguments are validated by the bindings; launchers check their launches
// (FASTNN_CUDA_CHECK_LAUNCH) and throw fastnn::Error on failure.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_backend.h"
#include "fastnn/gemm.h"
#include "fastnn/tensor.h"

namespace fastnn::cuda_kernels {

// kernels/copy.cu: strided copy with dtype conversion between tensors of the same
// shape (any strides, including negative and zero on the source). Conversions:
// float -> integer saturates (NaN -> 0); integer -> integer wraps like C++/NumPy;
// anything -> bool is `!= 0`; float -> half / bfloat16 rounds to nearest even.
// After merging dimensions that are contiguous in both tensors, at most
// kMaxCopyDims may remain (else fastnn::ValueError).
constexpr int kMaxCopyDims = 8;
void copy(const CopyArgs& args, cudaStream_t stream);
// n contiguous elements of `dtype` at dst set to `value` (converted as above).
void fill(void* dst, DType dtype, double value, int64_t n, cudaStream_t stream);

// kernels/gemm.cu: GemmArgs semantics of fastnn/gemm.h.
void gemm(const GemmArgs& args, cudaStream_t stream);

}  // namespace fastnn::cuda_kernels
