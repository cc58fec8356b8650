// Direct convolution for one input channel per group (Cg == 1: depthwise, groups = C,
// with any channel multiplier, and single-channel inputs), plus the bias gradient and
// the degenerate K = 0 case.
//
// With Cg == 1 the GEMM depth is only kh*kw, so implicit GEMM would spend most of its
// time gathering. Here each output plane (n, o) is computed row by row: for every tap
// (r, s) a contiguous run of the output row gets w[r,s] * (input row, shifted), the
// run's bounds computed once so the inner loop has no padding branches and vectorises
// (unit stride along W when stride_w == 1). Planes are the unit of parallel work.
// grad-input: the same per plane as a scatter (each thread owns whole input planes);
// grad-weight: per output channel, dot products of dy rows and shifted input rows.
// Bound: memory / L1 bandwidth (kh*kw FMAs per output per loaded input row).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fastnn/activation.h"
#include "fastnn/allocator.h"
#include "fastnn/config.h"
#include "fastnn/conv.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/gemm_microkernel.h"

namespace {

inline void valid_cols(int64_t wi0, int64_t sw, int64_t W, int64_t len, int64_t* tlo, int64_t* thi) {
  int64_t lo = wi0 >= 0 ? 0 : (-wi0 + sw - 1) / sw;
  int64_t hi = wi0 > W - 1 ? 0 : (W - 1 - wi0) / sw + 1;
  lo = std::min(lo, len);
  hi = std::clamp(hi, lo, len);
  *tlo = lo, *thi = hi;
}

inline int num_threads_for(int64_t items) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads(), items)));
}

// Sum of a[t] * b[t*sb], t < n, with independent partial sums so the loop vectorises
// without reassociation flags.
inline float dot_strided(const float* a, const float* b, int64_t sb, int64_t n) {
  float acc[16] = {};
  int64_t t = 0;
  if (sb == 1) {
    for (; t + 16 <= n; t += 16)
      for (int u = 0; u < 16; ++u) acc[u] += a[t + u] * b[t + u];
  }
  float s = 0.0f;
  for (; t < n; ++t) s += a[t] * b[t * sb];
  for (int u = 0; u < 16; ++u) s += acc[u];
  return s;
}

}  // namespace

void conv2d_forward_direct(const Conv2dArgs& a) {
  const int64_t N = a.batch, O = a.out_channels, Og = O / a.groups;
  const int64_t H = a.in_h, W = a.in_w, Ho = a.out_h, Wo = a.out_w, kh = a.kernel_h, kw = a.kernel_w;
  const int64_t sh = a.stride_h, sw = a.stride_w, ph = a.pad_h, pw = a.pad_w, dh = a.dil_h, dw = a.dil_w;
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  const int64_t items = N * O;
#pragma omp parallel for num_threads(num_threads_for(items)) schedule(static)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / O, o = it % O, c = o / Og;
    const float* xc = a.x + n * xbs + c * H * W;
    const float* wo_ = a.weight + o * kh * kw;
    float* yp = a.y + n * ybs + o * Ho * Wo;
    const float b = a.bias ? a.bias[o] : 0.0f;
    for (int64_t i = 0; i < Ho; ++i) {
      float* yr = yp + i * Wo;
      for (int64_t j = 0; j < Wo; ++j) yr[j] = b;
      for (int64_t r = 0; r < kh; ++r) {
        const int64_t hi = i * sh - ph + r * dh;
        if (hi < 0 || hi >= H) continue;
        const float* xr = xc + hi * W;
        for (int64_t s = 0; s < kw; ++s) {
          const float w = wo_[r * kw + s];
          const int64_t wi0 = -pw + s * dw;
          int64_t tlo, thi;
          valid_cols(wi0, sw, W, Wo, &tlo, &thi);
          if (sw == 1) {
            const float* src = xr + wi0;
            for (int64_t t = tlo; t < thi; ++t) yr[t] += w * src[t];
          } else {
            for (int64_t t = tlo; t < thi; ++t) yr[t] += w * xr[wi0 + t * sw];
          }
        }
      }
      if (a.activation != Activation::none)
        for (int64_t j = 0; j < Wo; ++j) yr[j] = gemm_activation_scalar(a.activation, yr[j]);
    }
  }
}

void conv2d_backward_input_direct(const Conv2dArgs& a) {
  const int64_t N = a.batch, C = a.in_channels, Og = a.out_channels / a.groups;
  const int64_t H = a.in_h, W = a.in_w, Ho = a.out_h, Wo = a.out_w, kh = a.kernel_h, kw = a.kernel_w;
  const int64_t sh = a.stride_h, sw = a.stride_w, ph = a.pad_h, pw = a.pad_w, dh = a.dil_h, dw = a.dil_w;
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  const int64_t items = N * C;
#pragma omp parallel for num_threads(num_threads_for(items)) schedule(static)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / C, c = it % C;
    float* dxp = a.dx + n * xbs + c * H * W;
    std::memset(dxp, 0, static_cast<size_t>(H * W) * 4);
    for (int64_t o = c * Og; o < (c + 1) * Og; ++o) {
      const float* dyp = a.dy + n * ybs + o * Ho * Wo;
      const float* wo_ = a.weight + o * kh * kw;
      for (int64_t i = 0; i < Ho; ++i) {
        const float* dyr = dyp + i * Wo;
        for (int64_t r = 0; r < kh; ++r) {
          const int64_t hi = i * sh - ph + r * dh;
          if (hi < 0 || hi >= H) continue;
          float* xr = dxp + hi * W;
          for (int64_t s = 0; s < kw; ++s) {
            const float w = wo_[r * kw + s];
            const int64_t wi0 = -pw + s * dw;
            int64_t tlo, thi;
            valid_cols(wi0, sw, W, Wo, &tlo, &thi);
            if (sw == 1) {
              float* d = xr + wi0;
              for (int64_t t = tlo; t < thi; ++t) d[t] += w * dyr[t];
            } else {
              for (int64_t t = tlo; t < thi; ++t) xr[wi0 + t * sw] += w * dyr[t];
            }
          }
        }
      }
    }
  }
}

void conv2d_backward_weight_direct(const Conv2dArgs& a) {
  const int64_t N = a.batch, O = a.out_channels, Og = O / a.groups;
  const int64_t H = a.in_h, W = a.in_w, Ho = a.out_h, Wo = a.out_w, kh = a.kernel_h, kw = a.kernel_w;
  const int64_t sh = a.stride_h, sw = a.stride_w, ph = a.pad_h, pw = a.pad_w, dh = a.dil_h, dw = a.dil_w;
  const int64_t xbs = a.xbs(), ybs = a.ybs();
#pragma omp parallel for num_threads(num_threads_for(O)) schedule(static)
  for (int64_t o = 0; o < O; ++o) {
    const int64_t c = o / Og;
    for (int64_t r = 0; r < kh; ++r)
      for (int64_t s = 0; s < kw; ++s) {
        const int64_t wi0 = -pw + s * dw;
        int64_t tlo, thi;
        valid_cols(wi0, sw, W, Wo, &tlo, &thi);
        float sum = 0.0f;
        for (int64_t n = 0; n < N; ++n) {
          const float* xc = a.x + n * xbs + c * H * W;
          const float* dyp = a.dy + n * ybs + o * Ho * Wo;
          for (int64_t i = 0; i < Ho; ++i) {
            const int64_t hi = i * sh - ph + r * dh;
            if (hi < 0 || hi >= H || thi <= tlo) continue;
            sum += dot_strided(dyp + i * Wo + tlo, xc + hi * W + wi0 + tlo * sw, sw, thi - tlo);
          }
        }
        a.dw[o * kh * kw + r * kw + s] = sum;
      }
  }
}

void conv2d_backward_bias_kernel(const Conv2dArgs& a) {
  const int64_t N = a.batch, O = a.out_channels, P = a.out_h * a.out_w, ybs = a.ybs();
  // A plain reduction: memory bound; a second thread pays only beyond ~1M elements.
#pragma omp parallel for num_threads(num_threads_for(N * O * P >> 20)) schedule(static)
  for (int64_t o = 0; o < O; ++o) {
    float sum = 0.0f;
    for (int64_t n = 0; n < N; ++n) {
      const float* dyp = a.dy + n * ybs + o * P;
      float acc[16] = {};
      int64_t t = 0;
      for (; t + 16 <= P; t += 16)
        for (int u = 0; u < 16; ++u) acc[u] += dyp[t + u];
      float s = 0.0f;
      for (; t < P; ++t) s += dyp[t];
      for (int u = 0; u < 16; ++u) s += acc[u];
      sum += s;
    }
    a.db[o] = sum;
  }
}

// K = 0 (no input channels): y = act(bias).
void conv2d_fill_bias(const Conv2dArgs& a) {
  const int64_t P = a.out_h * a.out_w, ybs = a.ybs();
  for (int64_t n = 0; n < a.batch; ++n)
    for (int64_t o = 0; o < a.out_channels; ++o) {
      const float v = gemm_activation_scalar(a.activation, a.bias ? a.bias[o] : 0.0f);
      float* yp = a.y + n * ybs + o * P;
      for (int64_t p = 0; p < P; ++p) yp[p] = v;
    }
}

#include "cpu/isa_end.h"
