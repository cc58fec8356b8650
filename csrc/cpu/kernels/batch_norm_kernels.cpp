// Batch normalisation forward / backward (fastnn/batch_norm.h), fused per channel.
//
// Algorithm: channels are split across threads; for one channel the N contiguous runs of
// `inner` floats are swept in SIMD vectors: forward = (training) a sum pass and a
// sum-of-squared-deviations pass, both accumulated in double (no E[x^2] - E[x]^2
// cancellation), then one normalise-and-scale pass; backward = one pass for sum(dy) and
// sum(dy * xhat) (double), one pass writing dx. Running statistics are updated in the same call.
// Bound: memory. The training forward reads x three times (eval: once) and writes y once, backward reads x and
// dy twice and writes dx: 16-20 B/element for ~5 flops; a (64, 64, 32, 32) activation (16 MB)
// streams at DRAM speed. With C < threads (rare in CNNs) one thread per channel idles cores.
// Reference: ISA level 0 is the scalar loop; the tests compare against float64 NumPy.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/parallel.h"
#include "fastnn/batch_norm.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/train_vec.h"

namespace {

using fastnn::BatchNormArgs;
using fastnn::BatchNormBackwardArgs;

// Adds v to acc with the lanes beyond a tail zeroed (loaded tail lanes are 0, but a
// difference like x - mean is not).
template <typename M>
void add_masked(VD2& acc, VF v, const M& m) {
  if constexpr (M::tail) v = vsel(vtail_mask(m.n), v, vzero());
  acc.add(v);
}

int64_t channel_grain(int64_t per_channel) { return per_channel >= 32768 ? 1 : 32768 / (per_channel > 0 ? per_channel : 1); }

}  // namespace

void batch_norm(const BatchNormArgs& a) {
  const int64_t m = a.n * a.inner, cstride = a.c * a.inner;
  fastnn::cpu::parallel_for(a.c, channel_grain(m), [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      float mean, invstd;
      if (a.training) {
        VD2 s;
        for (int64_t n = 0; n < a.n; ++n) {
          const float* x = a.x + n * cstride + ch * a.inner;
          vloop(0, a.inner, [&](int64_t i, auto mk) { s.add(mk.ld(x + i)); });
        }
        const double mu = s.sum() / static_cast<double>(m);
        const VF vmu = vset(static_cast<float>(mu));
        VD2 q;
        for (int64_t n = 0; n < a.n; ++n) {
          const float* x = a.x + n * cstride + ch * a.inner;
          vloop(0, a.inner, [&](int64_t i, auto mk) {
            VF d = vsub(mk.ld(x + i), vmu);
            add_masked(q, vmul(d, d), mk);
          });
        }
        // the deviations were taken from the float-rounded mean: correct the second moment
        const double dm = mu - static_cast<double>(static_cast<float>(mu));
        double var = q.sum() / static_cast<double>(m) - dm * dm;
        var = var < 0.0 ? 0.0 : var;  // rounding below 0 clamps; NaN (an Inf or NaN input) stays NaN
        mean = static_cast<float>(mu);
        invstd = static_cast<float>(1.0 / std::sqrt(var + a.eps));
        if (a.running_mean) {
          const double mom = a.momentum;
          a.running_mean[ch] = static_cast<float>((1.0 - mom) * a.running_mean[ch] + mom * mu);
          const double unbiased = m > 1 ? var * static_cast<double>(m) / static_cast<double>(m - 1) : var;
          a.running_var[ch] = static_cast<float>((1.0 - mom) * a.running_var[ch] + mom * unbiased);
        }
      } else {
        mean = a.running_mean[ch];
        invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.running_var[ch]) + a.eps));
      }
      a.save_mean[ch] = mean;
      a.save_invstd[ch] = invstd;
      const float w = a.weight ? a.weight[ch] : 1.0f, b = a.bias ? a.bias[ch] : 0.0f;
      // y = x * scale + shift with scale = invstd * w, shift = b - mean * scale
      const VF scale = vset(invstd * w), shift = vset(b - mean * invstd * w);
      for (int64_t n = 0; n < a.n; ++n) {
        const float* x = a.x + n * cstride + ch * a.inner;
        float* y = a.y + n * cstride + ch * a.inner;
        vloop(0, a.inner, [&](int64_t i, auto mk) { mk.st(y + i, vfma(mk.ld(x + i), scale, shift)); });
      }
    }
  });
}

void batch_norm_backward(const BatchNormBackwardArgs& a) {
  const int64_t m = a.n * a.inner, cstride = a.c * a.inner;
  fastnn::cpu::parallel_for(a.c, channel_grain(m), [&](int64_t c0, int64_t c1) {
    for (int64_t ch = c0; ch < c1; ++ch) {
      const float mean = a.save_mean[ch], invstd = a.save_invstd[ch];
      const VF vmean = vset(mean), vinv = vset(invstd);
      VD2 sdy, sdyx;
      for (int64_t n = 0; n < a.n; ++n) {
        const float* x = a.x + n * cstride + ch * a.inner;
        const float* dy = a.dy + n * cstride + ch * a.inner;
        vloop(0, a.inner, [&](int64_t i, auto mk) {
          VF g = mk.ld(dy + i);
          sdy.add(g);
          sdyx.add(vmul(g, vmul(vsub(mk.ld(x + i), vmean), vinv)));  // dy = 0 in tail lanes
        });
      }
      const double sum_dy = sdy.sum(), sum_dyx = sdyx.sum();
      if (a.dweight) a.dweight[ch] = static_cast<float>(sum_dyx);
      if (a.dbias) a.dbias[ch] = static_cast<float>(sum_dy);
      if (!a.dx) continue;
      const float w = a.weight ? a.weight[ch] : 1.0f;
      const VF k = vset(invstd * w);
      // training: dx = k (dy - mean(dy) - xhat mean(dy xhat))
      const VF mdy = vset(a.training ? static_cast<float>(sum_dy / static_cast<double>(m)) : 0.0f);
      const VF mdyx = vset(a.training ? static_cast<float>(sum_dyx / static_cast<double>(m)) : 0.0f);
      for (int64_t n = 0; n < a.n; ++n) {
        const float* x = a.x + n * cstride + ch * a.inner;
        const float* dy = a.dy + n * cstride + ch * a.inner;
        float* dx = a.dx + n * cstride + ch * a.inner;
        vloop(0, a.inner, [&](int64_t i, auto mk) {
          VF xhat = vmul(vsub(mk.ld(x + i), vmean), vinv);
          VF g = vfnma(xhat, mdyx, vsub(mk.ld(dy + i), mdy));
          mk.st(dx + i, vmul(k, g));
        });
      }
    }
  });
}

#include "cpu/isa_end.h"
