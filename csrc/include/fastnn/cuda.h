// fastnn's CUDA kernels as plain C++ functions on device pointers, sizes, strides and a
// stream: the same argument structs as the CPU kernels (fastnn/gemm.h, fastnn/optim.h), the
// same semantics. Library target fastnn::fastnn_cuda (libfastnn_cuda.so), present in the CMake
// package when fastnn was built with nvcc (FASTNN_BUILD_MODE=cuda, or auto with nvcc found);
// test `if(TARGET fastnn::fastnn_cuda)`. CUDA runtime linked statically; kernels for the
// architectures fastnn was built for (FASTNN_CUDA_ARCHITECTURES).
//
// The calls are asynchronous on `stream` (nullptr = the legacy default stream) and trust their
// arguments, like the CPU API; a failed launch throws fastnn::Error. GEMM and the fused
// optimizers have named functions; every other CUDA kernel family (convolution, pooling, the
// training kernels, ...) registers its launchers by name (FASTNN_CUDA_OP in
// csrc/cuda_backend/*_ops.cpp) and is reached through launch(), e.g.
//   fastnn::cuda::launch("conv2d_forward", conv2d_args, stream);
#pragma once

#include <cstddef>

#include "fastnn/attention.h"
#include "fastnn/conv.h"
#include "fastnn/gemm.h"
#include "fastnn/optim.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*: no CUDA header needed to call fastnn

namespace fastnn::cuda {

using Stream = CUstream_st*;

// C <- act(alpha * A @ B + beta * C + bias), every pointer in device memory.
void gemm(const GemmArgs& args, Stream stream);
// Fused multi-tensor Adam / AdamW / SGD: the pointer arrays and numels live on the host and
// point to device memory (found_inf, if set, is a device pointer).
void adam(const AdamArgs& args, Stream stream);
void sgd(const SgdArgs& args, Stream stream);

// The kernel registered as `op` with an argument struct of args_size bytes; `device` is the
// device of the stream (and must be current): device scratch memory comes from fastnn's
// caching allocator on it. Unknown op or wrong struct size: fastnn::ValueError.
void launch(const char* op, const void* args, size_t args_size, Stream stream, int device = 0);
template <class Args>
void launch(const char* op, const Args& args, Stream stream, int device = 0) {
  launch(op, &args, sizeof(Args), stream, device);
}
// Convolution (fastnn/conv.h semantics), through the registered launchers.
inline void conv2d_forward(const Conv2dArgs& a, Stream s, int device = 0) { launch("conv2d_forward", a, s, device); }
inline void conv2d_backward_input(const Conv2dArgs& a, Stream s, int device = 0) {
  launch("conv2d_backward_input", a, s, device);
}
inline void conv2d_backward_weight(const Conv2dArgs& a, Stream s, int device = 0) {
  launch("conv2d_backward_weight", a, s, device);
}
// Fused attention (fastnn/attention.h semantics).
inline void attention_forward(const AttentionArgs& a, Stream s, int device = 0) {
  launch("attention_forward", a, s, device);
}
inline void attention_backward(const AttentionArgs& a, Stream s, int device = 0) {
  launch("attention_backward", a, s, device);
}

}  // namespace fastnn::cuda
