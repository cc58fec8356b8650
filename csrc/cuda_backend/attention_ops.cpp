// Named CUDA ops of the fused attention family (op_registry.h): "attention_forward",
// "attention_backward" (argument struct fastnn::AttentionArgs).
#include "attention_launchers.h"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {

FASTNN_CUDA_OP(attention_forward, AttentionArgs) { cuda_kernels::attention_forward(args, stream); }

FASTNN_CUDA_OP(attention_backward, AttentionArgs) {
  DeviceScratch scratch(cuda_kernels::attention_backward_scratch_bytes(args), device);
  cuda_kernels::attention_backward(args, scratch.as<float>(), stream);
}

}  // namespace fastnn::cuda_backend_impl
