// Named CUDA ops: how a kernel family plugs into the backend without editing the
// CudaBackend interface (csrc/core/cuda_backend.h).
//
// In a csrc/cuda_backend/<family>_ops.cpp file:
//
//   FASTNN_CUDA_OP(conv2d_forward, ConvArgs) {   // `args` (const ConvArgs&) and `stream` in scope
//     cuda_kernels::conv2d_forward(args, stream);
//   }
//
// registers "conv2d_forward" at static-initialisation time of the backend module. The
// bindings call fastnn::cuda_op("conv2d_forward", args, device); the backend sets the
// device, checks the argument struct's size and calls the launcher on the current stream.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace fastnn::cuda_backend_impl {

using OpLauncher = void (*)(const void* args, cudaStream_t stream, int device);

struct OpRegistration {
  OpRegistration(const char* name, size_t args_size, OpLauncher fn);
};

// Device scratch memory for a launcher, from the backend's caching allocator (cheap to
// take per call). Released on scope exit; the stream order makes reuse safe.
class DeviceScratch {
 public:
  DeviceScratch(size_t nbytes, int device);
  ~DeviceScratch();
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  void* get() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  int device_ = 0;
};

// nullptr when no op of that name is registered; args_size receives the registered size.
OpLauncher find_op(const char* name, size_t* args_size);

}  // namespace fastnn::cuda_backend_impl

#define FASTNN_CUDA_OP(name, ArgsType)                                                              \
  static void fastnn_cuda_op_body_##name(const ArgsType& args, cudaStream_t stream, int device);    \
  static void fastnn_cuda_op_thunk_##name(const void* a, cudaStream_t s, int d) {                   \
    fastnn_cuda_op_body_##name(*static_cast<const ArgsType*>(a), s, d);                             \
  }                                                                                                 \
  static const ::fastnn::cuda_backend_impl::OpRegistration fastnn_cuda_op_reg_##name(               \
      #name, sizeof(ArgsType), &fastnn_cuda_op_thunk_##name);                                       \
  static void fastnn_cuda_op_body_##name(const ArgsType& args, [[maybe_unused]] cudaStream_t stream, \
                                         [[maybe_unused]] int device)
