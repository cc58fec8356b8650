// Process-wide CUDA configuration read by the bindings (configuration, not kernel state:
// copied into each argument struct at the call). fastnn.cuda.set_allow_tf32 sets it; the
// GEMM (bind_gemm.cpp) and the convolution (bind_conv.cpp) read it.
#pragma once
#include <atomic>

namespace fastnn::bindings {

// float32 products on CUDA may round their operands to TF32 and run on tensor cores.
inline std::atomic<bool>& allow_tf32_setting() {
  static std::atomic<bool> v{false};
  return v;
}

}  // namespace fastnn::bindings
