// 2-D pooling, float32, NCHW, dense C-contiguous tensors; one (n, c) plane at a time
// (planes = N*C). PyTorch semantics (ceil_mode = False):
//   max:  out[p, i, j] = max over the window rows i*stride_h - pad_h + [0, kh), columns
//         likewise, clipped to the input; padding never wins. indices[p, i, j] = h*in_w + w
//         of the first maximum in row-major window order (a NaN counts as the maximum).
//         The bindings require pad <= kernel / 2, so every window holds an input element.
//   avg:  sum over the clipped window / divisor, divisor = kh*kw with count_include_pad
//         (the window never reaches beyond the padding when ceil_mode = False), else the
//         number of input elements in the window.
//   adaptive avg: window rows [floor(i*H/OH), ceil((i+1)*H/OH)), columns likewise.
#pragma once
#include <cstdint>

namespace fastnn {

enum class PoolKind : int { max = 0, avg = 1, adaptive_avg = 2 };

struct Pool2dArgs {
  PoolKind kind = PoolKind::max;
  int64_t planes = 0, in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool count_include_pad = true;

  const float* x = nullptr;   // forward input
  float* y = nullptr;         // forward output
  int64_t* indices = nullptr; // max: argmax (forward output, backward input)
  const float* dy = nullptr;  // backward input
  float* dx = nullptr;        // backward output (overwritten)
};

namespace cpu {
void pool2d_forward(const Pool2dArgs& a);
void pool2d_backward(const Pool2dArgs& a);
}  // namespace cpu

}  // namespace fastnn
