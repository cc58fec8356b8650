// 2-D max / average / adaptive-average pooling, forward and backward (NCHW, one
// (n, c) plane per work item; contract in fastnn/pool.h).
// Each output element reads its window clipped to the input once (bounds computed per
// output row / column, so the inner loops carry no padding tests). Backward passes zero
// dx plane by plane and scatter-add into it; a thread owns whole planes, so overlapping
// windows (stride < kernel) need no atomics.
// Bound: memory (about one read of x and one write of y; kernel*kernel L1 reads per output).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "fastnn/config.h"
#include "fastnn/pool.h"

#include "cpu/isa_begin.h"

namespace {

inline int threads_for_planes(int64_t planes, int64_t plane_work) {
  // A plane smaller than ~4K element-ops is not worth waking a thread for.
  const int64_t useful = std::max<int64_t>(1, planes * plane_work / 4096);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>({num_threads(), planes, useful})));
}

struct Window {
  int64_t h0, h1, w0, w1;  // clipped to the input
  int64_t count;           // divisor
};

inline Window window(const Pool2dArgs& a, int64_t i, int64_t j) {
  Window w;
  if (a.kind == PoolKind::adaptive_avg) {
    w.h0 = (i * a.in_h) / a.out_h;
    w.h1 = ((i + 1) * a.in_h + a.out_h - 1) / a.out_h;
    w.w0 = (j * a.in_w) / a.out_w;
    w.w1 = ((j + 1) * a.in_w + a.out_w - 1) / a.out_w;
    w.count = (w.h1 - w.h0) * (w.w1 - w.w0);
    return w;
  }
  const int64_t hs = i * a.stride_h - a.pad_h, ws = j * a.stride_w - a.pad_w;
  w.h0 = std::max<int64_t>(hs, 0);
  w.h1 = std::min<int64_t>(hs + a.kernel_h, a.in_h);
  w.w0 = std::max<int64_t>(ws, 0);
  w.w1 = std::min<int64_t>(ws + a.kernel_w, a.in_w);
  w.count = a.count_include_pad ? a.kernel_h * a.kernel_w : (w.h1 - w.h0) * (w.w1 - w.w0);
  return w;
}

}  // namespace

void pool2d_forward_kernel(const Pool2dArgs& a) {
  const int64_t HW = a.in_h * a.in_w, OHW = a.out_h * a.out_w;
  const int64_t work = OHW * (a.kind == PoolKind::adaptive_avg ? std::max<int64_t>(1, HW / std::max<int64_t>(OHW, 1))
                                                               : a.kernel_h * a.kernel_w);
#pragma omp parallel for num_threads(threads_for_planes(a.planes, work)) schedule(static)
  for (int64_t pl = 0; pl < a.planes; ++pl) {
    const float* x = a.x + pl * HW;
    float* y = a.y + pl * OHW;
    int64_t* idx = a.indices ? a.indices + pl * OHW : nullptr;
    for (int64_t i = 0; i < a.out_h; ++i)
      for (int64_t j = 0; j < a.out_w; ++j) {
        const Window w = window(a, i, j);
        if (a.kind == PoolKind::max) {
          float best = -std::numeric_limits<float>::infinity();
          int64_t bi = w.h0 * a.in_w + w.w0;
          for (int64_t h = w.h0; h < w.h1; ++h)
            for (int64_t c = w.w0; c < w.w1; ++c) {
              const float v = x[h * a.in_w + c];
              if (v > best || std::isnan(v)) {  // PyTorch's rule: first max, NaN wins
                best = v;
                bi = h * a.in_w + c;
              }
            }
          y[i * a.out_w + j] = best;
          if (idx) idx[i * a.out_w + j] = bi;
        } else {
          float s = 0.0f;
          for (int64_t h = w.h0; h < w.h1; ++h)
            for (int64_t c = w.w0; c < w.w1; ++c) s += x[h * a.in_w + c];
          y[i * a.out_w + j] = w.count > 0 ? s / static_cast<float>(w.count) : 0.0f;
        }
      }
  }
}

void pool2d_backward_kernel(const Pool2dArgs& a) {
  const int64_t HW = a.in_h * a.in_w, OHW = a.out_h * a.out_w;
  const int64_t work = std::max<int64_t>(HW, OHW * (a.kind == PoolKind::max ? 1 : a.kernel_h * a.kernel_w));
#pragma omp parallel for num_threads(threads_for_planes(a.planes, work)) schedule(static)
  for (int64_t pl = 0; pl < a.planes; ++pl) {
    const float* dy = a.dy + pl * OHW;
    float* dx = a.dx + pl * HW;
    std::memset(dx, 0, static_cast<size_t>(HW) * sizeof(float));
    if (a.kind == PoolKind::max) {
      const int64_t* idx = a.indices + pl * OHW;
      for (int64_t q = 0; q < OHW; ++q) dx[idx[q]] += dy[q];
      continue;
    }
    for (int64_t i = 0; i < a.out_h; ++i)
      for (int64_t j = 0; j < a.out_w; ++j) {
        const Window w = window(a, i, j);
        if (w.count <= 0) continue;
        const float g = dy[i * a.out_w + j] / static_cast<float>(w.count);
        for (int64_t h = w.h0; h < w.h1; ++h)
          for (int64_t c = w.w0; c < w.w1; ++c) dx[h * a.in_w + c] += g;
      }
  }
}

#include "cpu/isa_end.h"
