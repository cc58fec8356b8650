// OpenMP helpers that honour fastnn::num_threads() (a process-wide setting, unlike
// omp_set_num_threads, which only affects the calling thread).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>

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

}  // namespace fastnn::cpu
