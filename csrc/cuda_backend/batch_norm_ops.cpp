// Named CUDA ops of batch normalisation (kernels/batch_norm.cu).
#include "batch_norm.cuh"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {

FASTNN_CUDA_OP(batch_norm, BatchNormArgs) { cuda_kernels::batch_norm(args, stream); }
FASTNN_CUDA_OP(batch_norm_backward, BatchNormBackwardArgs) { cuda_kernels::batch_norm_backward(args, stream); }

}  // namespace fastnn::cuda_backend_impl
