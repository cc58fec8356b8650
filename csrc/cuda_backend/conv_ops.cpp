// Named CUDA ops of the convolution family (Conv2dArgs, fastnn/conv.h), called by
// csrc/bindings/bind_conv.cpp through fastnn::cuda_op. Picks the kernel: the depthwise
// direct kernels when groups == in_channels > 1, the implicit GEMM otherwise.
#include "conv.cuh"
#include "fastnn/conv.h"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {
namespace ck = ::fastnn::cuda_kernels;

FASTNN_CUDA_OP(conv2d_forward, Conv2dArgs) {
  if (ck::conv2d_is_depthwise(args)) ck::conv2d_forward_depthwise(args, stream);
  else ck::conv2d_forward_igemm(args, stream);
}

FASTNN_CUDA_OP(conv2d_backward_input, Conv2dArgs) {
  if (ck::conv2d_is_depthwise(args)) ck::conv2d_backward_input_depthwise(args, stream);
  else ck::conv2d_backward_input_igemm(args, stream);
}

// dw, and db too when args.db is set (the CPU's conv2d_backward_weight contract).
FASTNN_CUDA_OP(conv2d_backward_weight, Conv2dArgs) {
  if (ck::conv2d_is_depthwise(args)) {
    ck::conv2d_backward_weight_depthwise(args, stream);
  } else {
    DeviceScratch ws(static_cast<size_t>(ck::conv2d_backward_weight_workspace(args)) * sizeof(float), device);
    ck::conv2d_backward_weight_igemm(args, ws.as<float>(), stream);
  }
  if (args.db) ck::conv2d_backward_bias(args, stream);
}

FASTNN_CUDA_OP(conv2d_backward_bias, Conv2dArgs) { ck::conv2d_backward_bias(args, stream); }

}  // namespace fastnn::cuda_backend_impl
