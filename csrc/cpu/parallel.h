// OpenMP helpers that honour fastnn::num_threads() (a process-wide setting, unlike
// omp_set_num_threads, which only affects the calling thread).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
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
// concatenated element range [0, prefix[num_tensors]) (prefix[t] = start of tensor t), cut
// into one contiguous chunk per thread whose bounds are multiples of 16 elements, so that 200
// small tensors still keep every core busy in a single parallel region, and no two threads
// write the same 64-byte line when the tensors are 64-byte aligned. Each thread walks the
// tensors its chunk overlaps: fn(tensor_index, begin, end) with offsets inside the tensor.
inline std::vector<int64_t> list_prefix(const int64_t* numels, int64_t num_tensors) {
  std::vector<int64_t> p(static_cast<size_t>(num_tensors) + 1, 0);
  for (int64_t i = 0; i < num_tensors; ++i) p[static_cast<size_t>(i) + 1] = p[static_cast<size_t>(i)] + numels[i];
  return p;
}

template <typename Fn>
void for_each_list_chunk(int64_t num_tensors, const int64_t* prefix, int64_t grain, Fn&& fn) {
  const int64_t total = prefix[num_tensors];
  if (total <= 0) return;
  const int nt = threads_for(total, grain);
  auto run = [&](int64_t b, int64_t e) {
    int64_t t = std::upper_bound(prefix, prefix + num_tensors + 1, b) - prefix - 1;
    while (b < e && t < num_tensors) {
      const int64_t te = std::min(e, prefix[t + 1]);
      if (te > b) fn(t, b - prefix[t], te - prefix[t]);
      b = te;
      ++t;
    }
  };
  if (nt == 1) {
    run(0, total);
    return;
  }
  int64_t chunk = (total + nt - 1) / nt;
  chunk = (chunk + 15) / 16 * 16;
#pragma omp parallel num_threads(nt)
  {
    const int64_t tid = omp_get_thread_num();
    const int64_t b = std::min(total, tid * chunk);
    const int64_t e = std::min(total, b + chunk);
    if (b < e) run(b, e);
  }
}

}  // namespace fastnn::cpu
