// Caching allocator for device memory. cudaMalloc/cudaFree synchronise the device
// and cost tens of microseconds, so freed blocks stay in per-size-class free lists
// and are handed out again. Size classes: 4 per power of two (<= 25% slack), at
// least 512 bytes. When cudaMalloc fails the cache is emptied and the call retried
// once before fastnn::OutOfMemory is thrown.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fastnn/allocator.h"

namespace fastnn::cuda_backend_impl {

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}
  void* allocate(size_t nbytes);  // nullptr for 0 bytes
  void release(void* p);          // unknown pointers are ignored (called from destructors)
  AllocatorStats stats();
  void empty_cache();
  static size_t size_class(size_t nbytes);

 private:
  void free_cached_locked();
  int device_;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<void*, size_t> live_;
  AllocatorStats stats_;
};

}  // namespace fastnn::cuda_backend_impl
