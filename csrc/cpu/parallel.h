// OpenMP helpers that honour fastnn::num_threads() (a process-wide setting, unlike
// omp_set_num_threads, which only affects the calling thread).
#pragma once
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <climits>
#include <vector>

#include "fastnn/config.h"

namespace fastnn::cpu {

// Number of threads worth using for `work` units when each thread should get at
// least `grain` of them.
inline int threads_for(int64_t work, int64_t grain) {
  int64_t useful = grain > 0 ? (work + grain - 1) / grain : work;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), useful)));
}

// Splits [0, n) into contiguous chunks, one per thread; fn(begin, end) per chunk.
template <typename Fn>
void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const int nt = threads_for(n, grain);
  if (nt == 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int nth = omp_get_num_threads();
    const int64_t chunk = (n + nth - 1) / nth;
    const int64_t b = std::min<int64_t>(n, t * chunk);
    const int64_t e = std::min<int64_t>(n, b + chunk);
    if (b < e) fn(b, e);
  }
}

// Multi-tensor loops (fused optimizers and their bandwidth probe): the list is treated as one
// concatenated element range [0, prefix[num_tensors]) (prefix[t] = start of tensor t), so that
// 200 small tensors still keep every core busy in a single parallel region. Each thread walks
// the tensors its part overlaps: fn(tensor_index, begin, end) with offsets inside the tensor.
// Part bounds are multiples of 16 elements: no two threads write the same 64-byte line when
// the tensors are 64-byte aligned.
inline std::vector<int64_t> list_prefix(const int64_t* numels, int64_t num_tensors) {
  std::vector<int64_t> p(static_cast<size_t>(num_tensors) + 1, 0);
  for (int64_t i = 0; i < num_tensors; ++i) p[static_cast<size_t>(i) + 1] = p[static_cast<size_t>(i)] + numels[i];
  return p;
}

namespace detail {
template <typename Fn>
void run_list_range(int64_t num_tensors, const int64_t* prefix, int64_t b, int64_t e, Fn& fn) {
  int64_t t = std::upper_bound(prefix, prefix + num_tensors + 1, b) - prefix - 1;
  while (b < e && t < num_tensors) {
    const int64_t te = std::min(e, prefix[t + 1]);
    if (te > b) fn(t, b - prefix[t], te - prefix[t]);
    b = te;
    ++t;
  }
}

// Blocks [front, back) of one thread's share, packed in one word so that the owner (taking
// from the front) and a thief (taking from the back) agree with a single compare-exchange.
struct alignas(64) StealRange {
  std::atomic<uint64_t> fb{0};
  void init(uint32_t front, uint32_t back) { fb.store(front | (uint64_t{back} << 32), std::memory_order_relaxed); }
  int64_t take(bool from_front) {
    uint64_t old = fb.load(std::memory_order_relaxed);
    for (;;) {
      const uint32_t f = static_cast<uint32_t>(old), b = static_cast<uint32_t>(old >> 32);
      if (f >= b) return -1;
      const uint64_t nw = from_front ? ((f + 1) | (uint64_t{b} << 32)) : (f | (uint64_t{b - 1} << 32));
      if (fb.compare_exchange_weak(old, nw, std::memory_order_relaxed)) return from_front ? f : b - 1;
    }
  }
};
}  // namespace detail

// Static split: one contiguous part per thread (for reductions, whose per-thread partial
// results must not depend on timing).
template <typename Fn>
void for_each_list_chunk(int64_t num_tensors, const int64_t* prefix, int64_t grain, Fn&& fn) {
  const int64_t total = prefix[num_tensors];
  if (total <= 0) return;
  const int nt = threads_for(total, grain);
  if (nt == 1) {
    detail::run_list_range(num_tensors, prefix, 0, total, fn);
    return;
  }
  int64_t chunk = (total + nt - 1) / nt;
  chunk = (chunk + 15) / 16 * 16;
#pragma omp parallel num_threads(nt)
  {
    const int64_t tid = omp_get_thread_num();
    const int64_t b = std::min(total, tid * chunk);
    const int64_t e = std::min(total, b + chunk);
    if (b < e) detail::run_list_range(num_tensors, prefix, b, e, fn);
  }
}

// Elements per stealable block of for_each_list_block: 64 KiB per float stream, so a block
// takes ~10-20 us (far above the cost of taking it) and a thief costs the owner little.
constexpr int64_t kListStealBlock = 16384;

// Element-wise loops: each thread owns a contiguous share (as above) and works through it
// block by block from the front; a thread that is done steals blocks from the back of the
// others' shares. On this shared VM a thread is sometimes descheduled or woken late (a parked
// OpenMP worker takes tens of us to wake); with a static split the whole call then waits at
// the barrier, here the running thread takes over the late one's remaining blocks. The owner's
// blocks stay consecutive, so its streams (and prefetches) run on across block bounds.
template <typename Fn>
void for_each_list_block(int64_t num_tensors, const int64_t* prefix, int64_t grain, Fn&& fn) {
  const int64_t total = prefix[num_tensors];
  if (total <= 0) return;
  const int nt = threads_for(total, grain);
  const int64_t nblocks = (total + kListStealBlock - 1) / kListStealBlock;
  if (nt == 1 || nblocks > INT32_MAX) {
    if (nt == 1) detail::run_list_range(num_tensors, prefix, 0, total, fn);
    else for_each_list_chunk(num_tensors, prefix, grain, fn);  // > 35e12 elements: never in practice
    return;
  }
  std::vector<detail::StealRange> shares(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t)
    shares[static_cast<size_t>(t)].init(static_cast<uint32_t>(nblocks * t / nt), static_cast<uint32_t>(nblocks * (t + 1) / nt));
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    for (int k = 0; k < nt; ++k) {
      detail::StealRange& r = shares[static_cast<size_t>((tid + k) % nt)];
      for (int64_t blk; (blk = r.take(k == 0)) >= 0;) {
        const int64_t b = blk * kListStealBlock;
        detail::run_list_range(num_tensors, prefix, b, std::min(total, b + kListStealBlock), fn);
      }
    }
  }
}

}  // namespace fastnn::cpu
