// The interface through which the core reaches a CUDA implementation.
//
// Two extension modules implement it from the same sources (csrc/cuda_backend/ +
// kernels/*.cu): fastnn._cuda (nvcc + CUDA runtime, static) and fastnn._cuda_emu
// (host compiler + the CPU emulator of the CUDA execution model). Each exports a
// capsule named "fastnn.CudaBackend" holding a CudaBackend* with static lifetime;
// python/fastnn/cuda.py picks one at import and registers it with the core
// (set_cuda_backend). The bindings validate every argument before calling in, so
// implementations trust their inputs. Errors are thrown as fastnn exceptions
// (fastnn::Error names the failing CUDA call and its error string).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "fastnn/allocator.h"
#include "fastnn/gemm.h"
#include "fastnn/optim.h"
#include "fastnn/tensor.h"

namespace fastnn {

enum class MemcpyKind : int { host_to_device = 1, device_to_host = 2, device_to_device = 3 };

// Strided copy / conversion between two tensors of the same shape on one device.
struct CopyArgs {
  int ndim = 0;
  const int64_t* shape = nullptr;
  void* dst = nullptr;
  const int64_t* dst_strides = nullptr;  // elements
  DType dst_dtype = DType::float32;
  const void* src = nullptr;
  const int64_t* src_strides = nullptr;  // elements
  DType src_dtype = DType::float32;
};

class CudaBackend {
 public:
  static constexpr int kAbiVersion = 4;
  virtual ~CudaBackend() = default;
  virtual int abi_version() const { return kAbiVersion; }
  virtual const char* name() const = 0;   // "cuda" or "cuda-emulated"
  virtual int device_count() = 0;         // 0 when unusable; never throws
  virtual std::string unavailable_reason() = 0;  // why device_count() == 0
  virtual std::string device_name(int device) = 0;

  // Memory: caching allocator per device; stats in the host allocator's format.
  virtual void* malloc(size_t nbytes, int device) = 0;  // throws OutOfMemory
  virtual void free(void* ptr, int device) = 0;
  virtual AllocatorStats memory_stats(int device) = 0;
  virtual void empty_cache() = 0;
  virtual void memcpy(void* dst, const void* src, size_t nbytes, MemcpyKind kind, int device) = 0;
  virtual void memset(void* dst, int value, size_t nbytes, int device) = 0;
  virtual void synchronize(int device) = 0;
  virtual uint64_t host_device_copies() = 0;  // count of H2D + D2H copies so far

  // Kernels. All run on the device's current stream.
  virtual void copy(const CopyArgs& args, int device) = 0;
  virtual void gemm(const GemmArgs& args, int device) = 0;
  // Fused multi-tensor optimizers (fastnn/optim.h, kernels/optim.cu); pointers are device memory.
  virtual void adam(const AdamArgs& args, int device) = 0;
  virtual void sgd(const SgdArgs& args, int device) = 0;
  virtual double grad_norm(const GradNormArgs& args, int device) = 0;  // synchronises (returns to the host)
  virtual void scale_(const ScaleArgs& args, int device) = 0;

  // Streams. Handles are opaque (a cudaStream_t); nullptr is the device's default stream.
  // The current stream is per host thread (and per device): every kernel, memset and
  // device scratch allocation of that thread is issued on it. Streams are created
  // blocking, so the default stream orders with them. Under the emulator all work is
  // synchronous and streams only keep their identity.
  virtual void* stream_create(int device) = 0;
  virtual void stream_destroy(void* stream, int device) = 0;  // synchronises it first
  virtual void stream_synchronize(void* stream, int device) = 0;
  virtual void set_current_stream(void* stream, int device) = 0;
  virtual void* current_stream(int device) = 0;

  // Every other kernel family is reached by name through one entry point, so a family is
  // added without touching this interface: the backend module registers a launcher per op
  // with FASTNN_CUDA_OP (csrc/cuda_backend/op_registry.h), and the bindings call
  // cuda_op("conv2d_forward", args, device). `args_size` is sizeof the argument struct the
  // caller passes: a mismatch with the registered struct throws instead of misreading memory.
  // Throws fastnn::Error for an unknown op (a backend module older than the core).
  virtual void run(const char* op, const void* args, size_t args_size, int device) = 0;
  virtual bool has_op(const char* op) = 0;
};

// Calls a named CUDA op with its argument struct (see CudaBackend::run).
template <class Args>
void cuda_op(const char* op, const Args& args, int device);

// Registered by python/fastnn/cuda.py; nullptr when no CUDA implementation is active.
void set_cuda_backend(CudaBackend* backend);
CudaBackend* cuda_backend();        // may be nullptr
CudaBackend& require_cuda_backend(); // throws fastnn::Error when none is active

template <class Args>
void cuda_op(const char* op, const Args& args, int device) {
  require_cuda_backend().run(op, &args, sizeof(Args), device);
}

}  // namespace fastnn
