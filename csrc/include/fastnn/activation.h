// Pointwise activations that GEMM / convolution epilogues can fuse.
#pragma once

namespace fastnn {

enum class Activation : int {
  none = 0,
  relu = 1,
  gelu = 2,       // x * Phi(x), exact (erf) form
  gelu_tanh = 3,  // tanh approximation
  sigmoid = 4,
  tanh = 5,
  silu = 6,       // x * sigmoid(x) (training kernels; epilogues need not support it)
};

}  // namespace fastnn
