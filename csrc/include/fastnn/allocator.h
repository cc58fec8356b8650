// Caching host allocator. On this kind of VM, first touch of fresh memory costs up
// to 30x a reuse (freed pages go back to the hypervisor), so freed blocks are kept
// in size-class free lists and handed out again. Size classes: 4 per power of two
// (<= 25% slack); 64-byte alignment (2 MiB-aligned for blocks >= 4 MiB, so the
// kernel can back them with huge pages).
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastnn {

struct AllocatorStats {
  uint64_t allocated_bytes = 0;   // in live tensors (size-class rounded)
  uint64_t cached_bytes = 0;      // in free lists
  uint64_t peak_allocated_bytes = 0;
  uint64_t num_allocs = 0;        // requests
  uint64_t num_cache_hits = 0;    // requests served from the free lists
  uint64_t num_system_allocs = 0; // requests that went to the OS
};

namespace cpu_allocator {
void* allocate(size_t nbytes);  // throws fastnn::OutOfMemory naming the size
void release(void* p);          // p from allocate (or nullptr)
AllocatorStats stats();
void reset_peak();
void empty_cache();             // returns every cached block to the OS
}  // namespace cpu_allocator

}  // namespace fastnn
