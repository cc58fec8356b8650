// 2-D convolution, float32, PyTorch conventions: activations NCHW, weights OIHW
// (O = out_channels, I = in_channels / groups). Shared by the CPU kernels
// (fastnn::cpu::conv2d_*) and the CUDA backend.
//
// Memory: x, weight, y (and the gradients) are dense C-contiguous tensors; the bindings
// make them so. Batch strides are explicit so that a caller may run a slice of a batch.
//
//   y[n, o, i, j] = act( bias[o] + sum_{c < I, r < kh, s < kw}
//                        w[o, c, r, s] * x[n, g*I + c, i*stride_h - pad_h + r*dil_h,
//                                                     j*stride_w - pad_w + s*dil_w] )
//   with g = o / (O / groups); taps outside the input read 0.
//   out_h = (in_h + pad_top + pad_bottom - dil_h*(kh-1) - 1) / stride_h + 1 (same for w);
//   the bindings check out_h, out_w >= 1 (or a zero-size dim) before calling a kernel.
// Asymmetric padding (padding='same' with an even kernel) is expressed through
// out_h / out_w: the kernel only uses pad_top / pad_left as offsets, extra padding on the
// bottom / right is implied by out_h, out_w.
#pragma once
#include <cstdint>

#include "fastnn/activation.h"
#include "fastnn/tensor.h"

namespace fastnn {

struct Conv2dArgs {
  int64_t batch = 0, in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;  // top / left padding
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;

  // Element strides between consecutive images (0 => dense: C*H*W).
  int64_t x_batch_stride = 0, y_batch_stride = 0;

  // Forward: x, weight, optional bias (length O) -> y; activation fused.
  // Backward: dy = grad of y (pre-activation gradient: the caller applies the
  // activation's derivative), dx / dw / db outputs (overwritten, not accumulated).
  const float* x = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  float* y = nullptr;
  Activation activation = Activation::none;

  const float* dy = nullptr;
  float* dx = nullptr;
  float* dw = nullptr;
  float* db = nullptr;

  // CUDA only (the CPU kernels take float32 and ignore both):
  // element type of x and weight: float32, or bfloat16 / float16, in which case `x` and
  // `weight` hold the addresses of 16-bit elements (tensor cores, FP32 accumulation); y,
  // dy, dx, dw, db and bias stay float32 in every case.
  DType dtype = DType::float32;
  // float32 operands may be rounded to TF32 (10-bit mantissa) on tensor cores; the
  // bindings set it from the call or the configuration (default off: FP32 CUDA cores).
  bool allow_tf32 = false;

  int64_t xbs() const { return x_batch_stride ? x_batch_stride : in_channels * in_h * in_w; }
  int64_t ybs() const { return y_batch_stride ? y_batch_stride : out_channels * out_h * out_w; }
};

namespace cpu {
void conv2d_forward(const Conv2dArgs& a);          // x, weight, bias -> y
void conv2d_backward_input(const Conv2dArgs& a);   // dy, weight -> dx
void conv2d_backward_weight(const Conv2dArgs& a);  // dy, x -> dw (and db if non-null)
void conv2d_backward_bias(const Conv2dArgs& a);    // dy -> db

// Plain loop nests (accumulation in double), the reference the fast kernels follow
// (activation: none or relu only).
void conv2d_forward_reference(const Conv2dArgs& a);
void conv2d_backward_input_reference(const Conv2dArgs& a);
void conv2d_backward_weight_reference(const Conv2dArgs& a);
}  // namespace cpu

}  // namespace fastnn
