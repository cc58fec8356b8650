// Named CUDA ops of the pooling family (Pool2dArgs, fastnn/pool.h), called by
// csrc/bindings/bind_pool.cpp through fastnn::cuda_op.
#include "conv.cuh"
#include "fastnn/pool.h"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {

FASTNN_CUDA_OP(pool2d_forward, Pool2dArgs) { ::fastnn::cuda_kernels::pool2d_forward(args, stream); }

FASTNN_CUDA_OP(pool2d_backward, Pool2dArgs) { ::fastnn::cuda_kernels::pool2d_backward(args, stream); }

}  // namespace fastnn::cuda_backend_impl
