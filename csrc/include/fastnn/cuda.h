// fastnn's CUDA kernels as plain C++ functions on device pointers, sizes, strides and a
// stream: the same argument structs as the CPU kernels (fastnn/gemm.h, fastnn/optim.h), the
// same semantics. Library target fastnn::fastnn_cuda (libfastnn_cuda.so), present in the CMake
// package when fastnn was built with nvcc (FASTNN_BUILD_MODE=cuda, or auto with nvcc found);
// test `if(TARGET fastnn::fastnn_cuda)`. CUDA runtime linked statically; kernels for the
// architectures fastnn was built for (FASTNN_CUDA_ARCHITECTURES).
//
// The calls are asynchronous on `stream` (nullptr = the legacy default stream) and trust their
// arguments, like the CPU API; a failed launch throws fastnn::Error. Families whose CUDA
// kernels exist in this version: GEMM and the fused optimizers; the others run on the CPU API.
#pragma once

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

}  // namespace fastnn::cuda
