// Caching allocator for device memory. cudaMalloc/cudaFree synchronise the device
// and cost tens of microseconds, so freed blocks stay in per-size-class free lists
// and are handed out again. Size classes: 4 per power of two (<= 25% slack), at
// least 512 bytes. When cudaMalloc fails the cache is emptied and the call retried
// once before fastnn::OutOfMemory is thrown.
//
// Streams: a block remembers the stream that was current when it was allocated and,
// once freed, is handed out again only for allocations on that same stream, so work
// still queued on one stream never races with a reuse on another (PyTorch's rule:
// a tensor used on a second stream must not be freed before that stream is done —
// synchronize first). Streams are created blocking, so the default stream orders
// with all of them. retire_stream() returns a destroyed stream's blocks to the
// default stream's pool after synchronising it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fastnn/allocator.h"

namespace fastnn::cuda_backend_impl {

class DeviceAllocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}
  void* allocate(size_t nbytes, void* stream);  // nullptr for 0 bytes
  void retire_stream(void* stream);
  void release(void* p);          // unknown pointers are ignored (called from destructors)
  AllocatorStats stats();
  void empty_cache();
  static size_t size_class(size_t nbytes);

 private:
  void free_cached_locked();
  int device_;
  std::mutex mu_;
  struct PoolKey {
    void* stream;
    size_t cls;
    bool operator==(const PoolKey& o) const { return stream == o.stream && cls == o.cls; }
  };
  struct PoolKeyHash {
    size_t operator()(const PoolKey& k) const {
      return std::hash<void*>()(k.stream) ^ (std::hash<size_t>()(k.cls) * 0x9e3779b97f4a7c15ull);
    }
  };
  struct Live {
    size_t cls;
    void* stream;
  };
  std::unordered_map<PoolKey, std::vector<void*>, PoolKeyHash> free_;
  std::unordered_map<void*, Live> live_;
  AllocatorStats stats_;
};

}  // namespace fastnn::cuda_backend_impl
