// Host launchers of the CUDA convolution and pooling kernels (Conv2dArgs / Pool2dArgs
// semantics of fastnn/conv.h and fastnn/pool.h; every pointer is device memory).
// Called by csrc/cuda_backend/conv_ops.cpp and pool_ops.cpp; the bindings have
// validated the arguments. Launch failures throw fastnn::Error.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastnn/conv.h"
#include "fastnn/pool.h"

namespace fastnn::cuda_kernels {

// kernels/conv_implicit_gemm.cu: implicit GEMM, any stride / padding / dilation / groups;
// FP32 CUDA cores, or tensor cores (kernels/conv_implicit_gemm_wmma.cu) for 16-bit inputs
// and for float32 with allow_tf32.
void conv2d_forward_igemm(const Conv2dArgs& a, cudaStream_t stream);
void conv2d_backward_input_igemm(const Conv2dArgs& a, cudaStream_t stream);
// Split-K partial sums of dw go to `workspace` (conv2d_backward_weight_workspace(a) floats,
// may be 0 -> nullptr), then a fixed-order reduction writes dw: deterministic.
int64_t conv2d_backward_weight_workspace(const Conv2dArgs& a);
void conv2d_backward_weight_igemm(const Conv2dArgs& a, float* workspace, cudaStream_t stream);

// kernels/conv_depthwise.cu: groups == in_channels (> 1), any channel multiplier, float32
// (memory-bound: tensor cores would not help; 16-bit inputs take the implicit GEMM).
inline bool conv2d_is_depthwise(const Conv2dArgs& a) {
  return a.groups > 1 && a.groups == a.in_channels && a.dtype == DType::float32;
}
void conv2d_forward_depthwise(const Conv2dArgs& a, cudaStream_t stream);
void conv2d_backward_input_depthwise(const Conv2dArgs& a, cudaStream_t stream);
void conv2d_backward_weight_depthwise(const Conv2dArgs& a, cudaStream_t stream);

// kernels/conv_bias_grad.cu: db[o] = sum over n, i, j of dy[n, o, i, j].
void conv2d_backward_bias(const Conv2dArgs& a, cudaStream_t stream);

// kernels/pool.cu
void pool2d_forward(const Pool2dArgs& a, cudaStream_t stream);
void pool2d_backward(const Pool2dArgs& a, cudaStream_t stream);

}  // namespace fastnn::cuda_kernels
