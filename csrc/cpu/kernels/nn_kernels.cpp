// Training kernels (fastnn/nn_kernels.h): activations, softmax / log_softmax, fused cross
// entropy, BCE-with-logits, MSE, LayerNorm, Philox dropout, embedding, broadcast binary ops,
// axis reductions — forward and backward, float32.
//
// All are memory-bound (a few flops per byte) except the transcendental-heavy activations
// (exp/erf per element, still under the DRAM rate with AVX-512). Row kernels (softmax, CE,
// LayerNorm) keep the row in L1/L2 between their 2-3 passes, so DRAM sees one read (and one
// write) per element; e.g. CE forward+backward on 32000 classes: pass 1 max (+ sum for label
// smoothing), pass 2 e = exp(x - max) written to grad and summed, pass 3 grad = e/s - onehot.
// Threads: only when the work exceeds kGrain elements per thread (a batch-64 MLP layer runs
// serially and pays no OpenMP wake-up). Reductions into shared outputs (LayerNorm dweight,
// embedding backward, loss sums) are deterministic for a given thread count.
// Reference: the generic build (FASTNN_ISA_LEVEL 0) is the plain scalar loop with std:: math.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/parallel.h"
#include "fastnn/nn_kernels.h"
#include "fastnn/philox.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/train_vec.h"

namespace {
constexpr int64_t kGrain = 32768;  // elements per thread before a second thread pays off

template <typename Fn>
void rows_parallel(int64_t rows, int64_t cols, Fn&& fn) {
  const int64_t grain_rows = std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
  fastnn::cpu::parallel_for(rows, grain_rows, fn);
}

inline float reduce_scale(fastnn::Reduction r, int64_t count, const float* grad_loss) {
  float s = grad_loss ? grad_loss[0] : 1.0f;
  if (r == fastnn::Reduction::mean) s = static_cast<float>(static_cast<double>(s) / static_cast<double>(count));
  return s;
}
}  // namespace

// ---------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------
static inline VF act_fwd(fastnn::Activation act, VF x) {
  using fastnn::Activation;
  switch (act) {
    case Activation::relu: return vsel(vlt(x, vzero()), vzero(), x);  // NaN passes, as torch
    case Activation::gelu: return vmul(x, vphi(x));
    case Activation::gelu_tanh: {
      // 0.5 x (1 + tanh(u)) == x * sigmoid(2u): no cancellation for negative x
      VF u = vmul(vset(2.0f * 0.7978845608028654f), vfma(vmul(vset(0.044715f), vmul(x, x)), x, x));
      return vmul(x, vsigmoid(u));
    }
    case Activation::sigmoid: return vsigmoid(x);
    case Activation::tanh: return vtanh(x);
    case Activation::silu: return vmul(x, vsigmoid(x));
    default: return x;
  }
}

static inline VF act_bwd(fastnn::Activation act, VF x, VF gy) {
  using fastnn::Activation;
  const VF one = vset(1.0f);
  switch (act) {
    case Activation::relu: return vsel(vgt(x, vzero()), gy, vzero());
    case Activation::gelu: {
      // Phi(x) + x phi(x)
      VF pdf = vmul(vset(0.3989422804014327f), vexp(vmul(vset(-0.5f), vmul(x, x))));
      return vmul(gy, vfma(x, pdf, vphi(x)));
    }
    case Activation::gelu_tanh: {
      const float k = 0.7978845608028654f;
      VF x2 = vmul(x, x);
      VF u2 = vmul(vset(2.0f * k), vfma(vmul(vset(0.044715f), x2), x, x));
      VF s = vsigmoid(u2);
      VF du2 = vmul(vset(2.0f * k), vfma(vset(3.0f * 0.044715f), x2, one));
      return vmul(gy, vfma(vmul(x, vmul(s, vsub(one, s))), du2, s));
    }
    case Activation::sigmoid: {
      VF s = vsigmoid(x);
      return vmul(gy, vmul(s, vsub(one, s)));
    }
    case Activation::tanh: {
      VF t = vtanh(x);
      return vmul(gy, vfnma(t, t, one));
    }
    case Activation::silu: {
      VF s = vsigmoid(x);
      return vmul(gy, vmul(s, vfma(x, vsub(one, s), one)));
    }
    default: return gy;
  }
}

void activation(const fastnn::ActivationArgs& a) {
  fastnn::cpu::parallel_for(a.n, kGrain, [&](int64_t b, int64_t e) {
    switch (a.act) {  // one instantiation per activation: the switch leaves the loop
#define FASTNN_ACT_CASE(A) \
  case A: vloop(b, e, [&](int64_t i, auto io) { io.st(a.y + i, act_fwd(A, io.ld(a.x + i))); }); break;
      FASTNN_ACT_CASE(fastnn::Activation::relu)
      FASTNN_ACT_CASE(fastnn::Activation::gelu)
      FASTNN_ACT_CASE(fastnn::Activation::gelu_tanh)
      FASTNN_ACT_CASE(fastnn::Activation::sigmoid)
      FASTNN_ACT_CASE(fastnn::Activation::tanh)
      FASTNN_ACT_CASE(fastnn::Activation::silu)
#undef FASTNN_ACT_CASE
      default:
        if (a.y != a.x) std::memmove(a.y + b, a.x + b, static_cast<size_t>(e - b) * sizeof(float));
    }
  });
}

void activation_backward(const fastnn::ActivationBackwardArgs& a) {
  fastnn::cpu::parallel_for(a.n, kGrain, [&](int64_t b, int64_t e) {
    switch (a.act) {
#define FASTNN_ACT_CASE(A)                                                                        \
  case A:                                                                                         \
    vloop(b, e, [&](int64_t i, auto io) { io.st(a.grad_x + i, act_bwd(A, io.ld(a.x + i), io.ld(a.grad_y + i))); }); \
    break;
      FASTNN_ACT_CASE(fastnn::Activation::relu)
      FASTNN_ACT_CASE(fastnn::Activation::gelu)
      FASTNN_ACT_CASE(fastnn::Activation::gelu_tanh)
      FASTNN_ACT_CASE(fastnn::Activation::sigmoid)
      FASTNN_ACT_CASE(fastnn::Activation::tanh)
      FASTNN_ACT_CASE(fastnn::Activation::silu)
#undef FASTNN_ACT_CASE
      default:
        if (a.grad_x != a.grad_y)
          std::memmove(a.grad_x + b, a.grad_y + b, static_cast<size_t>(e - b) * sizeof(float));
    }
  });
}

// ---------------------------------------------------------------------------------------
// Row helpers
// ---------------------------------------------------------------------------------------
static inline float row_max(const float* x, int64_t n) {
  VF m = vset(-INFINITY);
  VF nan = vzero();
  vloop(0, n, [&](int64_t i, auto io) {
    VF v = io.tail ? vsel(vtail_mask(static_cast<int>(n - i)), io.ld(x + i), vset(-INFINITY)) : io.ld(x + i);
    m = vmax(v, m);
    nan = vadd(nan, vsub(v, v));  // NaN if some v is NaN or Inf
  });
  float r = vhmax(m);
  float z = vhsum(nan);
  if (z != z) {  // a NaN or Inf somewhere: find NaN (a NaN row gives NaN outputs, as torch)
    for (int64_t i = 0; i < n; ++i)
      if (x[i] != x[i]) return x[i];
  }
  return r;
}
// sum of exp(x - m), optionally storing the exponentials into e
static inline float row_expsum(const float* x, int64_t n, float m, float* e) {
  VF s = vzero();
  const VF mv = vset(m);
  vloop(0, n, [&](int64_t i, auto io) {
    VF v = vexp(vsub(io.ld(x + i), mv));
    if (io.tail) v = vsel(vtail_mask(static_cast<int>(n - i)), v, vzero());
    if (e) io.st(e + i, v);
    s = vadd(s, v);
  });
  return vhsum(s);
}
static inline float row_sum(const float* x, int64_t n) {
  VF s = vzero();
  vloop(0, n, [&](int64_t i, auto io) { s = vadd(s, io.ld(x + i)); });
  return vhsum(s);
}
static inline float row_dot(const float* x, const float* y, int64_t n) {
  VF s = vzero();
  vloop(0, n, [&](int64_t i, auto io) { s = vfma(io.ld(x + i), io.ld(y + i), s); });
  return vhsum(s);
}

// ---------------------------------------------------------------------------------------
// softmax / log_softmax
// ---------------------------------------------------------------------------------------
void softmax(const fastnn::SoftmaxArgs& a) {
  const int64_t n = a.cols;
  rows_parallel(a.rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a.x + r * n;
      float* y = a.y + r * n;
      const float m = row_max(x, n);
      if (a.log) {
        const float s = row_expsum(x, n, m, nullptr);
        // (x - m) - log s, not x - (m + log s): m + log s would round at the scale of m (1e4)
        const VF mv = vset(m), ls = vset(std::log(s));
        vloop(0, n, [&](int64_t i, auto io) { io.st(y + i, vsub(vsub(io.ld(x + i), mv), ls)); });
      } else {
        const float s = row_expsum(x, n, m, y);
        const VF inv = vset(1.0f / s);
        vloop(0, n, [&](int64_t i, auto io) { io.st(y + i, vmul(io.ld(y + i), inv)); });
      }
    }
  });
}

void softmax_backward(const fastnn::SoftmaxBackwardArgs& a) {
  const int64_t n = a.cols;
  rows_parallel(a.rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* y = a.y + r * n;
      const float* gy = a.grad_y + r * n;
      float* gx = a.grad_x + r * n;
      if (a.log) {
        const VF s = vset(row_sum(gy, n));
        vloop(0, n, [&](int64_t i, auto io) { io.st(gx + i, vfnma(vexp(io.ld(y + i)), s, io.ld(gy + i))); });
      } else {
        const VF d = vset(row_dot(gy, y, n));
        vloop(0, n, [&](int64_t i, auto io) { io.st(gx + i, vmul(io.ld(y + i), vsub(io.ld(gy + i), d))); });
      }
    }
  });
}

// ---------------------------------------------------------------------------------------
// Cross entropy (fused log_softmax + NLL + label smoothing + gradient)
// ---------------------------------------------------------------------------------------
void cross_entropy(const fastnn::CrossEntropyArgs& a) {
  const int64_t n = a.classes, rows = a.rows;
  auto tgt = [&](int64_t r) -> int64_t {
    return a.target_int64 ? static_cast<const int64_t*>(a.target)[r]
                          : static_cast<int64_t>(static_cast<const int32_t*>(a.target)[r]);
  };
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) count += tgt(r) != a.ignore_index;
  const bool none = a.reduction == fastnn::Reduction::none;
  const float gscale = none ? 0.0f : reduce_scale(a.reduction, count, a.grad_loss);
  const float ls = a.label_smoothing;
  const float ls_c = n > 0 ? ls / static_cast<float>(n) : 0.0f;
  const int nt = fastnn::cpu::threads_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
  std::vector<double> part(static_cast<size_t>(nt), 0.0);
  rows_parallel(rows, n, [&](int64_t r0, int64_t r1) {
    double acc = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a.logits + r * n;
      float* g = a.grad_logits ? a.grad_logits + r * n : nullptr;
      const int64_t t = tgt(r);
      if (t == a.ignore_index) {
        if (none && a.loss) a.loss[r] = 0.0f;
        if (g) std::memset(g, 0, static_cast<size_t>(n) * sizeof(float));
        continue;
      }
      const float m = row_max(x, n);
      const float sx = ls != 0.0f ? row_sum(x, n) : 0.0f;
      const float s = row_expsum(x, n, m, g);
      const float logs = std::log(s);
      // lse - (1-ls) x_t - ls/C sum x, written as (1 - ls)((m - x_t) + log s) + ls((m - mean x) + log s)
      // so that huge logits (1e4) do not round m + log s at the scale of m
      float loss = (1.0f - ls) * ((m - x[t]) + logs);
      if (ls != 0.0f) loss += ls * ((m - sx / static_cast<float>(n)) + logs);
      if (none && a.loss) a.loss[r] = loss;
      acc += loss;
      if (g) {
        const float sc = none ? (a.grad_loss ? a.grad_loss[r] : 1.0f) : gscale;
        const VF inv = vset(sc / s);
        const VF off = vset(sc * ls_c);
        vloop(0, n, [&](int64_t i, auto io) { io.st(g + i, vsub(vmul(io.ld(g + i), inv), off)); });
        g[t] -= sc * (1.0f - ls);
      }
    }
    part[static_cast<size_t>(omp_get_thread_num())] += acc;
  });
  if (!none && a.loss) {
    double total = 0.0;
    for (double p : part) total += p;
    if (a.reduction == fastnn::Reduction::mean) total /= static_cast<double>(count);  // 0/0 -> NaN like torch
    a.loss[0] = static_cast<float>(total);
  }
}

// ---------------------------------------------------------------------------------------
// BCE with logits, MSE
// ---------------------------------------------------------------------------------------
void bce_with_logits(const fastnn::BceWithLogitsArgs& a) {
  const bool none = a.reduction == fastnn::Reduction::none;
  const float gscale = none ? 1.0f : reduce_scale(a.reduction, a.n, a.grad_loss);
  const int nt = fastnn::cpu::threads_for(a.n, kGrain);
  std::vector<double> part(static_cast<size_t>(nt), 0.0);
  const bool has_pw = a.pos_weight != nullptr;
  const int64_t C = has_pw ? a.pw_size : 1;
  // split into rows of C so pos_weight lines up with a vector loop
  const int64_t rows = has_pw ? (C > 0 ? a.n / C : 0) : 1;
  const int64_t cols = has_pw ? C : a.n;
  auto body = [&](int64_t e0, int64_t e1, double& acc) {
    VD2 sum;
    for (int64_t base = e0; base < e1;) {
      const int64_t c0 = has_pw ? base % cols : 0;
      const int64_t stop = has_pw ? std::min(e1, base - c0 + cols) : e1;
      const float* pw = has_pw ? a.pos_weight - (base - c0) : nullptr;  // pw[i] valid for i in row
      vloop(base, stop, [&](int64_t i, auto io) {
        VF x = io.ld(a.x + i);
        VF y = io.ld(a.target + i);
        VF sp = vadd(vlog1p_pos(vexp(vneg(vabs(x)))), vmax(vneg(x), vzero()));  // softplus(-x)
        VF lw = vset(1.0f), pwv = vset(1.0f);
        if (has_pw) {
          pwv = io.ld(pw + i);
          lw = vfma(vsub(pwv, vset(1.0f)), y, vset(1.0f));
        }
        VF l = vfma(vsub(vset(1.0f), y), x, vmul(lw, sp));
        if (io.tail) l = vsel(vtail_mask(static_cast<int>(stop - i)), l, vzero());
        if (none && a.loss) io.st(a.loss + i, l);
        sum.add(l);
        if (a.grad_x) {
          VF gd = vfnma(pwv, y, vmul(lw, vsigmoid(x)));
          VF sc = none ? (a.grad_loss ? io.ld(a.grad_loss + i) : vset(1.0f)) : vset(gscale);
          io.st(a.grad_x + i, vmul(gd, sc));
        }
      });
      base = stop;
    }
    acc += sum.sum();
  };
  (void)rows;
  fastnn::cpu::parallel_for(a.n, kGrain, [&](int64_t b, int64_t e) {
    double acc = 0.0;
    body(b, e, acc);
    part[static_cast<size_t>(omp_get_thread_num())] += acc;
  });
  if (!none && a.loss) {
    double total = 0.0;
    for (double p : part) total += p;
    if (a.reduction == fastnn::Reduction::mean) total /= static_cast<double>(a.n);
    a.loss[0] = static_cast<float>(total);
  }
}

void mse(const fastnn::MseArgs& a) {
  const bool none = a.reduction == fastnn::Reduction::none;
  const float gscale = none ? 1.0f : reduce_scale(a.reduction, a.n, a.grad_loss);
  const int nt = fastnn::cpu::threads_for(a.n, kGrain);
  std::vector<double> part(static_cast<size_t>(nt), 0.0);
  fastnn::cpu::parallel_for(a.n, kGrain, [&](int64_t b, int64_t e) {
    VD2 sum;
    vloop(b, e, [&](int64_t i, auto io) {
      VF d = vsub(io.ld(a.a + i), io.ld(a.b + i));
      VF l = vmul(d, d);
      if (none && a.loss) io.st(a.loss + i, l);
      sum.add(l);  // masked loads zero the tail lanes: d = 0 there
      if (a.grad_a) {
        VF sc = none ? (a.grad_loss ? io.ld(a.grad_loss + i) : vset(1.0f)) : vset(gscale);
        io.st(a.grad_a + i, vmul(vadd(d, d), sc));
      }
    });
    part[static_cast<size_t>(omp_get_thread_num())] += sum.sum();
  });
  if (!none && a.loss) {
    double total = 0.0;
    for (double p : part) total += p;
    if (a.reduction == fastnn::Reduction::mean) total /= static_cast<double>(a.n);
    a.loss[0] = static_cast<float>(total);
  }
}

// ---------------------------------------------------------------------------------------
// LayerNorm
// ---------------------------------------------------------------------------------------
void layer_norm(const fastnn::LayerNormArgs& a) {
  const int64_t n = a.cols;
  rows_parallel(a.rows, n, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a.x + r * n;
      float* y = a.y + r * n;
      // two passes over an L1/L2-resident row, accumulated in double: centred variance (no
      // E[x^2]-E[x]^2 cancellation) and a mean that stays exact for rows with a large offset
      VD2 sx;
      vloop(0, n, [&](int64_t i, auto io) { sx.add(io.ld(x + i)); });
      const float mean = n > 0 ? static_cast<float>(sx.sum() / static_cast<double>(n)) : 0.0f;
      const VF mv = vset(mean);
      VD2 ss;
      vloop(0, n, [&](int64_t i, auto io) {
        VF d = vsub(io.ld(x + i), mv);
        if (io.tail) d = vsel(vtail_mask(static_cast<int>(n - i)), d, vzero());
        ss.add(vmul(d, d));
      });
      const float var = n > 0 ? static_cast<float>(ss.sum() / static_cast<double>(n)) : 0.0f;
      const float rstd = 1.0f / std::sqrt(var + a.eps);
      if (a.mean) a.mean[r] = mean;
      if (a.rstd) a.rstd[r] = rstd;
      const VF rs = vset(rstd);
      vloop(0, n, [&](int64_t i, auto io) {
        VF v = vmul(vsub(io.ld(x + i), mv), rs);
        if (a.weight) v = vmul(v, io.ld(a.weight + i));
        if (a.bias) v = vadd(v, io.ld(a.bias + i));
        io.st(y + i, v);
      });
    }
  });
}

void layer_norm_backward(const fastnn::LayerNormBackwardArgs& a) {
  const int64_t n = a.cols, rows = a.rows;
  const bool need_wb = a.grad_weight || a.grad_bias;
  const int nt = fastnn::cpu::threads_for(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(n, 1)));
  // per-thread partial dweight / dbias (2 x cols floats each), summed in thread order
  std::vector<float> part(need_wb ? static_cast<size_t>(nt) * 2 * static_cast<size_t>(n) : 0, 0.0f);
  rows_parallel(rows, n, [&](int64_t r0, int64_t r1) {
    float* pw = need_wb ? part.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * static_cast<size_t>(n) : nullptr;
    float* pb = pw ? pw + n : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a.x + r * n;
      const float* gy = a.grad_y + r * n;
      const VF mv = vset(a.mean[r]);
      const VF rs = vset(a.rstd[r]);
      VF sg = vzero(), sgx = vzero();
      vloop(0, n, [&](int64_t i, auto io) {
        VF xh = vmul(vsub(io.ld(x + i), mv), rs);
        VF dy = io.ld(gy + i);
        if (pw) {
          io.st(pw + i, vfma(dy, xh, io.ld(pw + i)));
          io.st(pb + i, vadd(dy, io.ld(pb + i)));
        }
        VF g = a.weight ? vmul(dy, io.ld(a.weight + i)) : dy;
        if (io.tail) {
          auto mk = vtail_mask(static_cast<int>(n - i));
          g = vsel(mk, g, vzero());
          xh = vsel(mk, xh, vzero());
        }
        sg = vadd(sg, g);
        sgx = vfma(g, xh, sgx);
      });
      if (!a.grad_x) continue;
      const VF mg = vset(vhsum(sg) / static_cast<float>(n));
      const VF mgx = vset(vhsum(sgx) / static_cast<float>(n));
      float* gx = a.grad_x + r * n;
      vloop(0, n, [&](int64_t i, auto io) {
        VF xh = vmul(vsub(io.ld(x + i), mv), rs);
        VF dy = io.ld(gy + i);
        VF g = a.weight ? vmul(dy, io.ld(a.weight + i)) : dy;
        io.st(gx + i, vmul(rs, vsub(vsub(g, mg), vmul(xh, mgx))));
      });
    }
  });
  if (need_wb) {
    for (int64_t c = 0; c < n; ++c) {
      float w = 0.0f, b = 0.0f;
      for (int t = 0; t < nt; ++t) {
        w += part[static_cast<size_t>(t) * 2 * static_cast<size_t>(n) + static_cast<size_t>(c)];
        b += part[static_cast<size_t>(t) * 2 * static_cast<size_t>(n) + static_cast<size_t>(n + c)];
      }
      if (a.grad_weight) a.grad_weight[c] = w;
      if (a.grad_bias) a.grad_bias[c] = b;
    }
  }
}

// ---------------------------------------------------------------------------------------
// Dropout (Philox mask, regenerated in backward)
// ---------------------------------------------------------------------------------------
void dropout(const fastnn::DropoutArgs& a) {
  const uint32_t thr = fastnn::philox::keep_threshold(a.p);
  if (thr == 0u) {
    std::memset(a.y, 0, static_cast<size_t>(a.n) * sizeof(float));
    return;
  }
  if (thr == 0xFFFFFFFFu) {
    if (a.y != a.x) std::memmove(a.y, a.x, static_cast<size_t>(a.n) * sizeof(float));
    return;
  }
  const float scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(a.p)));
  // split on 4-element Philox blocks (grain: the generator makes this compute-heavier)
  const int64_t blocks = (a.n + 3) / 4;
  fastnn::cpu::parallel_for(blocks, kGrain / 16, [&](int64_t b0, int64_t b1) {
    constexpr int kB = 16;  // blocks per batch: independent Philox streams the compiler vectorises
    uint32_t w[kB * 4];
    for (int64_t bb = b0; bb < b1; bb += kB) {
      const int nb = static_cast<int>(std::min<int64_t>(kB, b1 - bb));
      for (int j = 0; j < nb; ++j) {
        const fastnn::philox::U4 u = fastnn::philox::block_words(a.seed, a.offset, static_cast<uint64_t>(bb + j));
        w[4 * j] = u.x;
        w[4 * j + 1] = u.y;
        w[4 * j + 2] = u.z;
        w[4 * j + 3] = u.w;
      }
      const int64_t e0 = bb * 4;
      const int64_t e1 = std::min<int64_t>(a.n, (bb + nb) * 4);
      for (int64_t e = e0; e < e1; ++e) a.y[e] = w[e - e0] < thr ? a.x[e] * scale : 0.0f;
    }
  });
}

// ---------------------------------------------------------------------------------------
// Embedding
// ---------------------------------------------------------------------------------------
void embedding(const fastnn::EmbeddingArgs& a) {
  const int64_t d = a.dim;
  rows_parallel(a.num_indices, d, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t idx = a.indices_int64 ? static_cast<const int64_t*>(a.indices)[r]
                                          : static_cast<int64_t>(static_cast<const int32_t*>(a.indices)[r]);
      std::memcpy(a.out + r * d, a.table + idx * d, static_cast<size_t>(d) * sizeof(float));
    }
  });
}

void embedding_backward(const fastnn::EmbeddingBackwardArgs& a) {
  const int64_t d = a.dim;
  std::memset(a.grad_table, 0, static_cast<size_t>(a.num_weights * d) * sizeof(float));
  // threads own disjoint column ranges (multiples of the vector width): no races, and each
  // destination row accumulates its duplicates in index order -> bit-reproducible.
  const int64_t work = a.num_indices * d;
  const int64_t col_blocks = (d + kW - 1) / kW;
  const int nt = static_cast<int>(std::min<int64_t>(fastnn::cpu::threads_for(work, kGrain), col_blocks));
  auto run = [&](int64_t c0, int64_t c1) {
    for (int64_t r = 0; r < a.num_indices; ++r) {
      const int64_t idx = a.indices_int64 ? static_cast<const int64_t*>(a.indices)[r]
                                          : static_cast<int64_t>(static_cast<const int32_t*>(a.indices)[r]);
      float* dst = a.grad_table + idx * d;
      const float* src = a.grad_out + r * d;
      vloop(c0, c1, [&](int64_t i, auto io) { io.st(dst + i, vadd(io.ld(dst + i), io.ld(src + i))); });
    }
  };
  if (nt <= 1) {
    run(0, d);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const int64_t per = (col_blocks + T - 1) / T;
    const int64_t c0 = std::min(d, t * per * kW), c1 = std::min(d, (t + 1) * per * kW);
    if (c0 < c1) run(c0, c1);
  }
}

// ---------------------------------------------------------------------------------------
// Broadcast binary ops
// ---------------------------------------------------------------------------------------
template <int kOp>
static inline VF binop(VF x, VF y) {
  if (kOp == 0) return vadd(x, y);
  if (kOp == 1) return vsub(x, y);
  if (kOp == 2) return vmul(x, y);
  return vdiv(x, y);
}

template <int kOp>
static void binary_impl(const fastnn::BinaryArgs& args) {
  // collapse: drop size-1 dims, merge dims contiguous for both operands
  int64_t shape[fastnn::kMaxBroadcastDims], sa[fastnn::kMaxBroadcastDims], sb[fastnn::kMaxBroadcastDims];
  int nd = 0;
  for (int d = 0; d < args.ndim; ++d) {
    if (args.shape[d] == 1) continue;
    if (nd > 0 && sa[nd - 1] == args.a_strides[d] * args.shape[d] && sb[nd - 1] == args.b_strides[d] * args.shape[d]) {
      shape[nd - 1] *= args.shape[d];
      sa[nd - 1] = args.a_strides[d];
      sb[nd - 1] = args.b_strides[d];
      continue;
    }
    shape[nd] = args.shape[d];
    sa[nd] = args.a_strides[d];
    sb[nd] = args.b_strides[d];
    ++nd;
  }
  if (nd == 0) {
    shape[0] = 1;
    sa[0] = sb[0] = 0;
    nd = 1;
  }
  const int64_t inner = shape[nd - 1];
  const int64_t isa = sa[nd - 1], isb = sb[nd - 1];
  int64_t outer = 1;
  for (int d = 0; d < nd - 1; ++d) outer *= shape[d];
  auto row = [&](int64_t o, int64_t& offa, int64_t& offb) {
    // decompose o into the outer coordinates
    int64_t rem = o;
    offa = offb = 0;
    for (int d = nd - 2; d >= 0; --d) {
      const int64_t c = rem % shape[d];
      rem /= shape[d];
      offa += c * sa[d];
      offb += c * sb[d];
    }
  };
  const int64_t grain_rows = std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
  fastnn::cpu::parallel_for(outer, grain_rows, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      int64_t oa, ob;
      row(o, oa, ob);
      const float* A = args.a + oa;
      const float* B = args.b + ob;
      float* out = args.out + o * inner;
      if (isa == 1 && isb == 1) {
        vloop(0, inner, [&](int64_t i, auto io) { io.st(out + i, binop<kOp>(io.ld(A + i), io.ld(B + i))); });
      } else if (isa == 1 && isb == 0) {
        const VF bv = vset(B[0]);
        vloop(0, inner, [&](int64_t i, auto io) { io.st(out + i, binop<kOp>(io.ld(A + i), bv)); });
      } else if (isa == 0 && isb == 1) {
        const VF av = vset(A[0]);
        vloop(0, inner, [&](int64_t i, auto io) { io.st(out + i, binop<kOp>(av, io.ld(B + i))); });
      } else {
        for (int64_t i = 0; i < inner; ++i) {
          const VF r = binop<kOp>(vset(A[i * isa]), vset(B[i * isb]));
#if FASTNN_ISA_LEVEL == 0
          out[i] = r;
#elif FASTNN_ISA_LEVEL == 1
          out[i] = _mm256_cvtss_f32(r);
#else
          out[i] = _mm512_cvtss_f32(r);
#endif
        }
      }
    }
  });
}

void binary(const fastnn::BinaryArgs& a) {
  switch (a.op) {
    case fastnn::BinaryOp::add: return binary_impl<0>(a);
    case fastnn::BinaryOp::sub: return binary_impl<1>(a);
    case fastnn::BinaryOp::mul: return binary_impl<2>(a);
    default: return binary_impl<3>(a);
  }
}

// ---------------------------------------------------------------------------------------
// Axis reductions: x as (outer, r, inner)
// ---------------------------------------------------------------------------------------
void reduce(const fastnn::ReduceArgs& a) {
  const int64_t R = a.r, I = a.inner, O = a.outer;
  const bool is_max = a.op == fastnn::ReduceOp::max;
  const float inv_r = static_cast<float>(1.0 / static_cast<double>(R));
  if (I == 1) {
    // reduce contiguous rows
    rows_parallel(O, R, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const float* x = a.x + o * R;
        if (!is_max) {
          float s = row_sum(x, R);
          a.out[o] = a.op == fastnn::ReduceOp::mean ? s * inv_r : s;
        } else {
          const float m = row_max(x, R);
          int64_t k = 0;
          if (m != m) {
            while (!(x[k] != x[k])) ++k;
          } else {
            while (x[k] != m) ++k;
          }
          a.out[o] = m;
          if (a.indices) a.indices[o] = k;
        }
      }
    });
    return;
  }
  // reduce over the middle axis, vectorised along the contiguous inner axis
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(R * I, 1));
  fastnn::cpu::parallel_for(O, grain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const float* x = a.x + o * R * I;
      float* out = a.out + o * I;
      int64_t* idx = a.indices ? a.indices + o * I : nullptr;
      if (!is_max) {
        std::memcpy(out, x, static_cast<size_t>(I) * sizeof(float));
        for (int64_t k = 1; k < R; ++k)
          vloop(0, I, [&](int64_t i, auto io) { io.st(out + i, vadd(io.ld(out + i), io.ld(x + k * I + i))); });
        if (a.op == fastnn::ReduceOp::mean) {
          const VF s = vset(inv_r);
          vloop(0, I, [&](int64_t i, auto io) { io.st(out + i, vmul(io.ld(out + i), s)); });
        }
      } else {
        for (int64_t i = 0; i < I; ++i) {
          out[i] = x[i];
          if (idx) idx[i] = 0;
        }
        for (int64_t k = 1; k < R; ++k) {
          const float* xk = x + k * I;
          for (int64_t i = 0; i < I; ++i) {
            const float v = xk[i];
            const float cur = out[i];
            // strictly greater keeps the first max; NaN sticks once seen
            if (cur == cur && (v > cur || v != v)) {
              out[i] = v;
              if (idx) idx[i] = k;
            }
          }
        }
      }
    }
  });
}

void reduce_max_backward(const fastnn::ReduceMaxBackwardArgs& a) {
  const int64_t R = a.r, I = a.inner;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(R * I, 1));
  fastnn::cpu::parallel_for(a.outer, grain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      float* gx = a.grad_x + o * R * I;
      std::memset(gx, 0, static_cast<size_t>(R * I) * sizeof(float));
      for (int64_t i = 0; i < I; ++i) gx[a.indices[o * I + i] * I + i] = a.grad_out[o * I + i];
    }
  });
}

#include "cpu/isa_end.h"
