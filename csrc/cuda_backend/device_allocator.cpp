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

void* DeviceAllocator::allocate(size_t nbytes, void* stream) {
  if (nbytes == 0) return nullptr;
  const size_t cls = size_class(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.num_allocs;
  void* p = nullptr;
  auto it = free_.find(PoolKey{stream, cls});
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
  live_[p] = Live{cls, stream};
  stats_.allocated_bytes += cls;
  if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
  return p;
}

void DeviceAllocator::release(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  if (it == live_.end()) return;
  const Live l = it->second;
  live_.erase(it);
  stats_.allocated_bytes -= l.cls;
  stats_.cached_bytes += l.cls;
  free_[PoolKey{l.stream, l.cls}].push_back(p);
}

void DeviceAllocator::retire_stream(void* stream) {
  if (!stream) return;
  std::lock_guard<std::mutex> lock(mu_);
  // The caller synchronised the stream: its blocks are idle and join the default pool.
  std::vector<std::pair<size_t, std::vector<void*>>> moved;
  for (auto it = free_.begin(); it != free_.end();) {
    if (it->first.stream == stream) {
      moved.emplace_back(it->first.cls, std::move(it->second));
      it = free_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [cls, blocks] : moved) {
    auto& dst = free_[PoolKey{nullptr, cls}];
    dst.insert(dst.end(), blocks.begin(), blocks.end());
  }
  for (auto& [p, l] : live_)
    if (l.stream == stream) l.stream = nullptr;
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
