// Caching host allocator (see fastnn/allocator.h for why it exists).
// Size classes: 64-byte granularity up to 1 KiB, then 4 classes per power of two.
// Free blocks are kept per class; a request is served from its own class only, so
// the slack is bounded by the class rounding (<= 25%).
#include "fastnn/allocator.h"

#include <sys/mman.h>

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "fastnn/errors.h"

namespace fastnn::cpu_allocator {
namespace {

constexpr size_t kHugeAlign = size_t{2} << 20;
constexpr size_t kHugeThreshold = size_t{4} << 20;

size_t size_class(size_t n) {
  if (n <= 1024) return n == 0 ? 64 : (n + 63) & ~size_t{63};
  int msb = 63 - __builtin_clzll(n - 1);  // 2^msb < n <= 2^(msb+1)
  size_t quarter = size_t{1} << (msb - 1);  // classes 2^msb + q*quarter, q = 1..4
  return (n + quarter - 1) / quarter * quarter;
}

struct Pool {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_lists;  // class -> blocks
  std::unordered_map<void*, size_t> live;                     // block -> class
  AllocatorStats st;
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: tensors may outlive static destruction
  return *p;
}

void* system_alloc(size_t cls) {
  const size_t align = cls >= kHugeThreshold ? kHugeAlign : 64;
  void* p = nullptr;
  if (posix_memalign(&p, align, cls) != 0) return nullptr;
  if (cls >= kHugeThreshold) madvise(p, cls, MADV_HUGEPAGE);
  return p;
}

}  // namespace

void* allocate(size_t nbytes) {
  const size_t cls = size_class(nbytes);
  Pool& P = pool();
  {
    std::lock_guard<std::mutex> lock(P.mu);
    P.st.num_allocs++;
    auto it = P.free_lists.find(cls);
    if (it != P.free_lists.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      P.st.cached_bytes -= cls;
      P.st.num_cache_hits++;
      P.live.emplace(p, cls);
      P.st.allocated_bytes += cls;
      if (P.st.allocated_bytes > P.st.peak_allocated_bytes) P.st.peak_allocated_bytes = P.st.allocated_bytes;
      return p;
    }
  }
  void* p = system_alloc(cls);
  if (p == nullptr) {
    empty_cache();  // give the cache back and retry once before failing
    p = system_alloc(cls);
  }
  if (p == nullptr)
    throw OutOfMemory(detail::concat("fastnn: out of host memory allocating ", nbytes, " bytes (",
                                     nbytes / double(1 << 20), " MiB)"));
  std::lock_guard<std::mutex> lock(P.mu);
  P.st.num_system_allocs++;
  P.live.emplace(p, cls);
  P.st.allocated_bytes += cls;
  if (P.st.allocated_bytes > P.st.peak_allocated_bytes) P.st.peak_allocated_bytes = P.st.allocated_bytes;
  return p;
}

void release(void* p) {
  if (p == nullptr) return;
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  auto it = P.live.find(p);
  if (it == P.live.end()) return;  // not ours: never free foreign memory
  const size_t cls = it->second;
  P.live.erase(it);
  P.st.allocated_bytes -= cls;
  P.st.cached_bytes += cls;
  P.free_lists[cls].push_back(p);
}

AllocatorStats stats() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  return P.st;
}

void reset_peak() {
  Pool& P = pool();
  std::lock_guard<std::mutex> lock(P.mu);
  P.st.peak_allocated_bytes = P.st.allocated_bytes;
}

void empty_cache() {
  Pool& P = pool();
  std::vector<void*> to_free;
  {
    std::lock_guard<std::mutex> lock(P.mu);
    for (auto& kv : P.free_lists) {
      to_free.insert(to_free.end(), kv.second.begin(), kv.second.end());
      kv.second.clear();
    }
    P.st.cached_bytes = 0;
  }
  for (void* p : to_free) std::free(p);
}

}  // namespace fastnn::cpu_allocator
