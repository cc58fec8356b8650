// Checking CUDA runtime calls: every call's status is compared with cudaSuccess
// (never with a particular error: with no driver the runtime reports
// cudaErrorInsufficientDriver, elsewhere cudaErrorNoDevice) and a failure is
// thrown as fastnn::Error naming the call, the error string and the error name.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "fastnn/errors.h"

namespace fastnn::cuda_detail {
[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  // The failing call also set the runtime's "last error"; it is reported now, so clear
  // it, or the next launch check would blame its kernel for it.
  cudaGetLastError();
  throw ::fastnn::Error(::fastnn::detail::concat(call, " failed: ", cudaGetErrorString(e), " (",
                                                 cudaGetErrorName(e), ") at ", file, ":", line));
}
}  // namespace fastnn::cuda_detail

#define FASTNN_CUDA_CHECK(call)                                                        \
  do {                                                                                 \
    const cudaError_t fastnn_cuda_err_ = (call);                                       \
    if (fastnn_cuda_err_ != cudaSuccess)                                               \
      ::fastnn::cuda_detail::throw_cuda_error(fastnn_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After a launch: configuration errors surface through cudaGetLastError.
#define FASTNN_CUDA_CHECK_LAUNCH(kernel_name)                                          \
  do {                                                                                 \
    const cudaError_t fastnn_cuda_err_ = cudaGetLastError();                           \
    if (fastnn_cuda_err_ != cudaSuccess)                                               \
      ::fastnn::cuda_detail::throw_cuda_error(fastnn_cuda_err_, "launch of " kernel_name, __FILE__, __LINE__); \
  } while (0)
