// Elementwise math (fastnn/elementwise_math.h): unary functions and tensor-scalar arithmetic,
// broadcast comparisons, gather / scatter-add of advanced indexing. float32 unless stated.
//
// Unary: one vector pass, bound by memory bandwidth (8 bytes per element) except exp/log,
// whose ~15-flop polynomials stay under the DRAM rate with AVX-512 on 2 cores.
//   exp: Cephes expf (n = round(x/ln2), Cody-Waite r, degree-6 polynomial) from train_vec.h,
//        over the whole float range (overflow to inf above 88.72, gradual underflow down to
//        -104); measured <= 1 ulp vs float64.
//   log: Cephes logf (mantissa in [sqrt(1/2), sqrt(2)), degree-8 polynomial, Cody-Waite e*ln2);
//        denormal inputs are scaled by 2^24 first (inside train_vec.h's vlog);
//        measured <= 1 ulp vs float64 (tests/test_elementwise_math.py asserts <= 2 ulp).
//   pow by a scalar: exact-rounding shortcuts for the exponents the layer uses (0, 1, 2, 3,
//   -1, -2, +-0.5), std::pow otherwise (C/NumPy semantics for negative bases, 0, inf, NaN).
//   The generic build (FASTNN_ISA_LEVEL 0) is the plain scalar reference with std:: math.
// Compare: scalar loop over the broadcast output, innermost dimension contiguous in the
// output; 1 byte written per element, bound by the reads.
// Gather: one memcpy of `inner` elements per index; threads split the indices.
// Scatter-add: deterministic without atomics: threads split the columns (inner), and every
// column is accumulated over the indices in order b = 0, 1, ... (inner == 1 runs serially).
// Threads only above kGrain elements per thread (small layer tensors run serially).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/parallel.h"
#include "fastnn/elementwise_math.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/train_vec.h"

namespace {
constexpr int64_t kGrain = 32768;

static inline VF vsign(VF x) {
  VF r = vsel(vgt(x, vzero()), vset(1.0f), vsel(vlt(x, vzero()), vset(-1.0f), vzero()));
  return vsel(vne(x, x), x, r);
}

template <typename F>
void map(const fastnn::UnaryArgs& a, F&& f) {
  fastnn::cpu::parallel_for(a.n, kGrain, [&](int64_t b, int64_t e) {
    vloop(b, e, [&](int64_t i, auto m) { m.st(a.y + i, f(m.ld(a.x + i))); });
  });
}

template <typename F>
void map_scalar(const fastnn::UnaryArgs& a, F&& f) {
  fastnn::cpu::parallel_for(a.n, kGrain / 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) a.y[i] = f(a.x[i]);
  });
}

void pow_scalar(const fastnn::UnaryArgs& a) {
  const float p = a.s;
  const VF one = vset(1.0f);
  if (p == 0.0f) return map(a, [&](VF) { return one; });  // pow(NaN, 0) = 1 as C and NumPy
  if (p == 1.0f) return map(a, [](VF x) { return x; });
  if (p == 2.0f) return map(a, [](VF x) { return vmul(x, x); });
  if (p == 3.0f) return map(a, [](VF x) { return vmul(vmul(x, x), x); });
  if (p == -1.0f) return map(a, [&](VF x) { return vdiv(one, x); });
  if (p == -2.0f) return map(a, [&](VF x) { return vdiv(one, vmul(x, x)); });
  // NumPy computes x ** 0.5 as sqrt(x) (so (-inf) ** 0.5 is NaN, not C's +inf), but x ** -0.5 with
  // pow ((-inf) ** -0.5 = 0): the same here
  if (p == 0.5f) return map(a, [](VF x) { return vsqrt(x); });
  if (p == -0.5f)
    return map(a, [&](VF x) { return vsel(vlt(x, vset(-3.4028235e38f)), vzero(), vdiv(one, vadd(vsqrt(x), vzero()))); });  // +0: pow(-0, -0.5) = +inf
  map_scalar(a, [p](float x) { return std::pow(x, p); });
}

// ---- compare -------------------------------------------------------------------------------
template <typename T, typename C>
static inline bool cmp(fastnn::CompareOp op, C x, C y) {
  using fastnn::CompareOp;
  switch (op) {
    case CompareOp::eq: return x == y;
    case CompareOp::ne: return x != y;
    case CompareOp::lt: return x < y;
    case CompareOp::le: return x <= y;
    case CompareOp::gt: return x > y;
    default: return x >= y;
  }
}

template <typename T>
void compare_impl(const fastnn::CompareArgs& a) {
  // float32 tensors compare with a scalar in float32, integer tensors in float64 (NumPy 2).
  using C = typename std::conditional<std::is_same<T, float>::value, float, double>::type;
  const int nd = a.ndim;
  const int64_t cols = nd ? a.shape[nd - 1] : 1;
  const int64_t sa = nd ? a.a_strides[nd - 1] : 0, sb = nd ? a.b_strides[nd - 1] : 0;
  int64_t rows = 1;
  for (int d = 0; d + 1 < nd; ++d) rows *= a.shape[d];
  const T* pa = static_cast<const T*>(a.a);
  const T* pb = static_cast<const T*>(a.b);
  const C s = static_cast<C>(a.b_scalar);
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
  fastnn::cpu::parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t oa = 0, ob = 0, rem = r;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t i = rem % a.shape[d];
        rem /= a.shape[d];
        oa += i * a.a_strides[d];
        ob += i * a.b_strides[d];
      }
      uint8_t* out = a.out + r * cols;
      if (pb) {
        for (int64_t c = 0; c < cols; ++c) out[c] = cmp<T, T>(a.op, pa[oa + c * sa], pb[ob + c * sb]);
      } else {
        for (int64_t c = 0; c < cols; ++c) out[c] = cmp<T, C>(a.op, static_cast<C>(pa[oa + c * sa]), s);
      }
    }
  });
}

template <typename A>
static inline int64_t lin_index(const A& a, int64_t b) {
  int64_t l = 0;
  for (int j = 0; j < a.k; ++j) {
    const int64_t v = a.idx[j][b];
    l = l * a.dims[j] + (v < 0 ? v + a.dims[j] : v);
  }
  return l;
}
}  // namespace

void unary(const fastnn::UnaryArgs& a) {
  using fastnn::UnaryOp;
  const float s = a.s;
  const VF sv = vset(s);
  switch (a.op) {
    case UnaryOp::exp: return map(a, [](VF x) { return vexp(x); });
    case UnaryOp::log: return map(a, [](VF x) { return vlog(x); });
    case UnaryOp::sqrt: return map(a, [](VF x) { return vsqrt(x); });
    case UnaryOp::rsqrt: return map(a, [](VF x) { return vdiv(vset(1.0f), vsqrt(x)); });
    case UnaryOp::abs: return map(a, [](VF x) { return vabs(x); });
    case UnaryOp::sign: return map(a, [](VF x) { return vsign(x); });
    case UnaryOp::neg: return map(a, [](VF x) { return vneg(x); });
    case UnaryOp::pow: return pow_scalar(a);
    case UnaryOp::rpow: return map_scalar(a, [s](float x) { return std::pow(s, x); });
    case UnaryOp::add: return map(a, [&](VF x) { return vadd(x, sv); });
    case UnaryOp::mul: return map(a, [&](VF x) { return vmul(x, sv); });
    case UnaryOp::rsub: return map(a, [&](VF x) { return vsub(sv, x); });
    case UnaryOp::rdiv: return map(a, [&](VF x) { return vdiv(sv, x); });
    case UnaryOp::div: return map(a, [&](VF x) { return vdiv(x, sv); });
    case UnaryOp::fill:
      fastnn::cpu::parallel_for(a.n, kGrain, [&](int64_t b, int64_t e) { std::fill(a.y + b, a.y + e, s); });
      return;
  }
}

void compare(const fastnn::CompareArgs& a) {
  switch (a.dtype) {
    case fastnn::DType::int64: return compare_impl<int64_t>(a);
    case fastnn::DType::int32: return compare_impl<int32_t>(a);
    default: return compare_impl<float>(a);
  }
}

void gather(const fastnn::GatherArgs& a) {
  const size_t row = static_cast<size_t>(a.inner) * static_cast<size_t>(a.elem_size);
  const auto* x = static_cast<const unsigned char*>(a.x);
  auto* out = static_cast<unsigned char*>(a.out);
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(a.inner, 1));
  fastnn::cpu::parallel_for(a.n_idx, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) std::memcpy(out + b * row, x + lin_index(a, b) * row, row);
  });
}

void scatter_add(const fastnn::ScatterAddArgs& a) {
  int64_t rows = 1;
  for (int j = 0; j < a.k; ++j) rows *= a.dims[j];
  std::memset(a.grad_x, 0, sizeof(float) * static_cast<size_t>(rows * a.inner));
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(a.n_idx, 1));
  fastnn::cpu::parallel_for(a.inner, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t b = 0; b < a.n_idx; ++b) {
      float* dst = a.grad_x + lin_index(a, b) * a.inner;
      const float* src = a.grad_out + b * a.inner;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  });
}

#include "cpu/isa_end.h"
