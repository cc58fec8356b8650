// Host-side launchers of kernels/elementwise_math.cu (semantics: fastnn/elementwise_math.h),
// registered as named CUDA ops in csrc/cuda_backend/elementwise_math_ops.cpp.
#pragma once
#include <cuda_runtime.h>

#include "fastnn/elementwise_math.h"

namespace fastnn::cuda_kernels {
void ewm_unary(const UnaryArgs& args, cudaStream_t stream);
void ewm_compare(const CompareArgs& args, cudaStream_t stream);
void ewm_gather(const GatherArgs& args, cudaStream_t stream);
void ewm_scatter_add(const ScatterAddArgs& args, cudaStream_t stream);
void ewm_index_check(const GatherIndexCheckArgs& args, cudaStream_t stream);
}  // namespace fastnn::cuda_kernels
