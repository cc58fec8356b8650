// The CudaBackend implementation shared by fastnn._cuda (nvcc + CUDA runtime) and
// fastnn._cuda_emu (host compiler + csrc/cuda_emu). Only the CUDA runtime API is
// used, so the same code runs on both; the kernels live in kernels/*.cu.
#include "backend.h"

#include <cuda_runtime.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "check.h"
#include "device_allocator.h"
#include "fastnn/errors.h"
#include "kernels.h"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {
namespace {

// The current stream of this host thread, per device (devices beyond the array use the
// default stream). Thread-local by design: like CUDA's and PyTorch's current stream.
constexpr int kMaxStreamDevices = 16;
thread_local cudaStream_t t_current_stream[kMaxStreamDevices] = {};

cudaStream_t stream_of(int device) {
  return (device >= 0 && device < kMaxStreamDevices) ? t_current_stream[device] : nullptr;
}

class Backend final : public CudaBackend {
 public:
  const char* name() const override {
#if defined(FASTNN_CUDA_BACKEND_EMULATED)
    return "cuda-emulated";
#else
    return "cuda";
#endif
  }

  int device_count() override {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    std::lock_guard<std::mutex> lock(mu_);
    if (e != cudaSuccess) {
      cudaGetLastError();  // not sticky: leave no trace for later calls
      reason_ = detail::concat("cudaGetDeviceCount failed: ", cudaGetErrorString(e), " (", cudaGetErrorName(e), ")");
      return 0;
    }
    if (n == 0) {
      reason_ = "cudaGetDeviceCount reported 0 CUDA devices";
      return 0;
    }
    reason_.clear();
    if (static_cast<int>(allocators_.size()) < n) {
      for (int d = static_cast<int>(allocators_.size()); d < n; ++d)
        allocators_.push_back(std::make_unique<DeviceAllocator>(d));
    }
    return n;
  }

  std::string unavailable_reason() override {
    if (device_count() > 0) return "";
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }

  std::string device_name(int device) override {
    cudaDeviceProp p;
    FASTNN_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return p.name;
  }

  void* malloc(size_t nbytes, int device) override { return allocator(device).allocate(nbytes, stream_of(device)); }
  // Called from storage destructors: must never throw.
  void free(void* ptr, int device) override {
    if (!ptr) return;
    try {
      allocator(device).release(ptr);
    } catch (...) {
    }
  }
  AllocatorStats memory_stats(int device) override { return allocator(device).stats(); }
  void empty_cache() override {
    std::vector<DeviceAllocator*> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& a : allocators_) all.push_back(a.get());
    }
    for (auto* a : all) a->empty_cache();
  }

  void memcpy(void* dst, const void* src, size_t nbytes, MemcpyKind kind, int device) override {
    if (nbytes == 0) return;
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cudaMemcpyKind k = cudaMemcpyDeviceToDevice;
    if (kind == MemcpyKind::host_to_device) k = cudaMemcpyHostToDevice;
    if (kind == MemcpyKind::device_to_host) k = cudaMemcpyDeviceToHost;
    FASTNN_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, k));
    if (kind != MemcpyKind::device_to_device) copies_.fetch_add(1, std::memory_order_relaxed);
  }

  void memset(void* dst, int value, size_t nbytes, int device) override {
    if (nbytes == 0) return;
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    FASTNN_CUDA_CHECK(cudaMemsetAsync(dst, value, nbytes, stream_of(device)));
  }

  void synchronize(int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  }

  uint64_t host_device_copies() override { return copies_.load(std::memory_order_relaxed); }

  void copy(const CopyArgs& args, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cuda_kernels::copy(args, stream_of(device));
  }

  void gemm(const GemmArgs& args, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cuda_kernels::gemm(args, stream_of(device));
  }

  void adam(const AdamArgs& args, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cuda_kernels::adam(args, stream_of(device));
  }

  void sgd(const SgdArgs& args, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cuda_kernels::sgd(args, stream_of(device));
  }

  double grad_norm(const GradNormArgs& args, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    const size_t nbytes = static_cast<size_t>(cuda_kernels::grad_norm_workspace(args)) * sizeof(double);
    DeviceAllocator& alloc = allocator(device);
    double* ws = static_cast<double*>(alloc.allocate(nbytes, stream_of(device)));
    double reduced = 0.0;
    try {
      cuda_kernels::grad_norm(args, ws, stream_of(device));
      memcpy(&reduced, ws, sizeof(double), MemcpyKind::device_to_host, device);
    } catch (...) {
      alloc.release(ws);
      throw;
    }
    alloc.release(ws);
    return cuda_kernels::grad_norm_finish(reduced, args.norm_type);
  }

  void scale_(const ScaleArgs& args, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cuda_kernels::scale_(args, stream_of(device));
  }

  void run(const char* op, const void* args, size_t args_size, int device) override {
    size_t registered = 0;
    OpLauncher fn = find_op(op, &registered);
    if (!fn) throw Error(detail::concat("CUDA backend ", name(), " has no op '", op, "'"));
    if (registered != args_size)
      throw Error(detail::concat("CUDA op '", op, "': argument struct of ", args_size, " bytes, the backend expects ",
                                 registered, " (core and backend module built from different sources?)"));
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    fn(args, stream_of(device), device);
  }

  void* stream_create(int device) override {
    check_stream_device(device);
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    cudaStream_t s = nullptr;
    FASTNN_CUDA_CHECK(cudaStreamCreate(&s));
    return s;
  }

  void stream_destroy(void* stream, int device) override {
    if (!stream) return;
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    auto s = static_cast<cudaStream_t>(stream);
    FASTNN_CUDA_CHECK(cudaStreamSynchronize(s));
    allocator(device).retire_stream(stream);
    if (stream_of(device) == s) t_current_stream[device] = nullptr;
    FASTNN_CUDA_CHECK(cudaStreamDestroy(s));
  }

  void stream_synchronize(void* stream, int device) override {
    FASTNN_CUDA_CHECK(cudaSetDevice(device));
    FASTNN_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
  }

  void set_current_stream(void* stream, int device) override {
    check_stream_device(device);
    t_current_stream[device] = static_cast<cudaStream_t>(stream);
  }

  void* current_stream(int device) override { return stream_of(device); }

  static void check_stream_device(int device) {
    if (device < 0 || device >= kMaxStreamDevices)
      throw ValueError(detail::concat("CUDA streams: device index ", device, " outside 0..", kMaxStreamDevices - 1));
  }

  bool has_op(const char* op) override { return find_op(op, nullptr) != nullptr; }

  DeviceAllocator& allocator(int device) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (device >= 0 && device < static_cast<int>(allocators_.size())) return *allocators_[device];
    }
    const int n = device_count();
    if (device < 0 || device >= n)
      throw ValueError(detail::concat("CUDA device index ", device, " out of range (", n, " device(s))"));
    std::lock_guard<std::mutex> lock(mu_);
    return *allocators_[device];
  }

 private:
  std::mutex mu_;
  std::string reason_;
  std::vector<std::unique_ptr<DeviceAllocator>> allocators_;
  std::atomic<uint64_t> copies_{0};
};

}  // namespace

CudaBackend& backend() {
  // Static lifetime: the core keeps the pointer until the process exits; leaked so
  // that no CUDA call happens during static destruction (the runtime may be gone).
  static Backend* b = new Backend();
  return *b;
}

}  // namespace fastnn::cuda_backend_impl
