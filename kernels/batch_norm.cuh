// Launchers of the batch-normalisation kernels (kernels/batch_norm.cu), registered as the
// named CUDA ops "batch_norm" / "batch_norm_backward" (csrc/cuda_backend/batch_norm_ops.cpp).
#pragma once
#include <cuda_runtime.h>

#include "fastnn/batch_norm.h"

namespace fastnn::cuda_kernels {
void batch_norm(const BatchNormArgs& args, cudaStream_t stream);
void batch_norm_backward(const BatchNormBackwardArgs& args, cudaStream_t stream);
}  // namespace fastnn::cuda_kernels
