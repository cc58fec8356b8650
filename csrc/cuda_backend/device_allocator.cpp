// Caching device allocator (device_allocator.h).
#include "device_allocator.h"

#include <cuda_runtime.h>

#include "check.h"
#include "fastnn/errors.h"

namespace fastnn::cuda_backend_impl {

size_t DeviceAllocator::size_class(size_t n) {
  if (n <= 512) return 512;
  // Four classes per power of two: round up to a multiple of 2^(floor(log2 n) - 2).
  const int lg = 63 - __builtin_clzll(static_cast<unsigned long long>(n));
  const size_t step = size_t{1} << (lg - 2);
  return (n + step - 1) / step * step;
}

void* DeviceAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t cls = size_class(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.num_allocs;
  void* p = nullptr;
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    stats_.cached_bytes -= cls;
    ++stats_.num_cache_hits;
  } else {
    FASTNN_CUDA_CHECK(cudaSetDevice(device_));
    cudaError_t e = cudaMalloc(&p, cls);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear, then retry with the cache returned to the device
      free_cached_locked();
      e = cudaMalloc(&p, cls);
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw OutOfMemory(detail::concat("CUDA out of memory: cannot allocate ", nbytes, " bytes (size class ", cls,
                                       ") on cuda:", device_, ": cudaMalloc failed: ", cudaGetErrorString(e)));
    }
    ++stats_.num_system_allocs;
  }
  live_[p] = cls;
  stats_.allocated_bytes += cls;
  if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
  return p;
}

void DeviceAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;
  const size_t cls = it->second;
  live_.erase(it);
  stats_.allocated_bytes -= cls;
  stats_.cached_bytes += cls;
  free_[cls].push_back(p);
}

AllocatorStats DeviceAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void DeviceAllocator::free_cached_locked() {
  for (auto& [cls, list] : free_) {
    for (void* p : list) cudaFree(p);  // a failure here leaves nothing to recover
    list.clear();
  }
  free_.clear();
  stats_.cached_bytes = 0;
}

void DeviceAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked();
}

}  // namespace fastnn::cuda_backend_impl
