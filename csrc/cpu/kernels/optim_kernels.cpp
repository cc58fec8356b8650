// Fused multi-tensor optimizer kernels: Adam/AdamW, SGD, gradient norm and scaling.
//
// Algorithm: the tensor list is treated as one concatenated element range, split over the
// threads in a single parallel region, so 200 small tensors still keep both cores busy:
// each thread owns a contiguous share and walks it in 16K-element blocks, stealing the last
// blocks of a late thread's share (cpu::for_each_list_block; the reductions keep a static
// split). Each element is touched once, with a software prefetch 4 KiB ahead in every stream:
// Adam reads p, g, m, v and writes p, m, v (28 B/param; 36 B with amsgrad).
// Bound: memory bandwidth from DRAM; the divider in cache. Per 16 floats the work is 1 sqrt
// and 1 div (~22 cycles of the divider on SPR-class cores; a second division by
// sqrt(bias_correction2) became a multiply) plus ~8 fma, below the ~100 cycles the 448 bytes
// take from DRAM; a 100K-parameter model (2.8 MB, in L2) runs at the divider's rate.
// Reference: the generic (ISA level 0) build is the plain scalar loop of the same formula.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/parallel.h"
#include "fastnn/allocator.h"
#include "fastnn/optim.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/train_vec.h"

namespace {

// Runs fn(tensor_index, begin, end) over the concatenated list: element-wise updates with
// block stealing (a late thread's blocks are taken over), reductions with the static split
// (their per-thread partial results must not depend on timing).
template <typename Fn>
void for_each_chunk(int64_t num_tensors, const int64_t* prefix, Fn&& fn) {
  fastnn::cpu::for_each_list_block(num_tensors, prefix, fastnn::cpu::kOptimGrain, fn);
}
template <typename Fn>
void for_each_static_chunk(int64_t num_tensors, const int64_t* prefix, Fn&& fn) {
  fastnn::cpu::for_each_list_chunk(num_tensors, prefix, fastnn::cpu::kOptimGrain, fn);
}

// Software prefetch distance of the streaming loops, per stream. The hardware prefetchers
// alone keep too few lines in flight for 4-5 concurrent streams on one core: prefetching
// 4 KiB ahead of each stream moved a 1-thread Adam step from 17 to ~19.5 GB/s out of DRAM
// and from 24 to ~28.5 GB/s out of L3 on this machine (512 and 2048 floats were within
// noise of 1024; 256 and less were too short for DRAM latency).
constexpr int64_t kPrefetchFloats = 1024;

// One prefetch per vector iteration: with AVX-512 that is one per cache line of each stream
// (AVX2 prefetches each line twice, which costs a load slot and nothing from memory).
static inline void prefetch(const float* p) {
#if FASTNN_ISA_LEVEL >= 1
  _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
#else
  (void)p;  // the scalar reference path stays plain
#endif
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Adam
// ---------------------------------------------------------------------------------------
template <bool kAmsgrad, bool kScale, bool kL2, bool kDecoupled>
static void adam_span(const fastnn::AdamArgs& a, int64_t t, int64_t b, int64_t e) {
  float* __restrict p = a.params[t];
  const float* __restrict g = a.grads[t];
  float* __restrict m = a.exp_avgs[t];
  float* __restrict v = a.exp_avg_sqs[t];
  float* __restrict vm = kAmsgrad ? a.max_exp_avg_sqs[t] : nullptr;
  // maximize folds into the sign of the divisor (exact: -(g/s) == g/(-s)) or a multiply by -1
  const VF sgn = vset(a.maximize ? -1.0f : 1.0f);
  const VF gs = vset(a.maximize ? -a.grad_scale : a.grad_scale);
  const VF wd = vset(static_cast<float>(a.weight_decay));
  const VF decay = vset(static_cast<float>(1.0 - a.lr * a.weight_decay));
  const VF c1 = vset(static_cast<float>(1.0 - a.beta1));
  const VF b2 = vset(static_cast<float>(a.beta2));
  const VF c2 = vset(static_cast<float>(1.0 - a.beta2));
  // sqrt(v) / sqrt(bias_correction2) as a multiply by the reciprocal (rounded once, in double):
  // within ~1 ulp of torch's division, and it frees the divider, which with the sqrt and the
  // m / denom division bounds the loop once the data is in L2 (kernels/optim.cu does the same).
  const VF ibc2 = vset(static_cast<float>(1.0 / a.bias_correction2_sqrt));
  const VF eps = vset(static_cast<float>(a.eps));
  const VF nstep = vset(static_cast<float>(-a.step_size));
  // up to the tensor's end, not the block's: the next block is usually this thread's too
  const int64_t pf_end = a.numels[t] - kPrefetchFloats;
  // kU consecutive vectors per call: the body runs with kU = 2 over the range and kU = 1 (a
  // full vector, then the masked tail) over what is left, one formula for both. Two vectors
  // per iteration, each stream's loads and then its stores side by side, took a 1M step on the
  // bench's buffers from 1.16 to 0.93-0.96 ms (1 thread, in L3; the plain probe loop 1.05).
  auto body = [&](int64_t i, auto io, auto unroll) {
    constexpr int kU = decltype(unroll)::value;
    if (i < pf_end) {
      for (int u = 0; u < kU; ++u) {
        const int64_t j = i + u * kW + kPrefetchFloats;
        prefetch(g + j);
        prefetch(p + j);
        prefetch(m + j);
        prefetch(v + j);
        if (kAmsgrad) prefetch(vm + j);
      }
    }
    VF gv[kU], pv[kU], mv[kU], vv[kU];
    for (int u = 0; u < kU; ++u) {
      const int64_t j = i + u * kW;
      gv[u] = io.ld(g + j);
      mv[u] = io.ld(m + j);
      vv[u] = io.ld(v + j);
      gv[u] = kScale ? vdiv(gv[u], gs) : vmul(gv[u], sgn);
      if (kL2 || kDecoupled) pv[u] = io.ld(p + j);
      if (kL2) gv[u] = vfma(wd, pv[u], gv[u]);
      mv[u] = vfma(c1, vsub(gv[u], mv[u]), mv[u]);
      vv[u] = vfma(vmul(c2, gv[u]), gv[u], vmul(vv[u], b2));
    }
    // m and v are stored as soon as they are known, ahead of the sqrt and the division. With
    // all three stores after the division, a 1M-parameter step on the bench's from_numpy
    // buffers (NumPy's heap, 4 KiB pages) took 1.66 ms instead of 1.07 (1 thread, data in L3);
    // on other buffers (fastnn's own, in 2 MiB pages; fresh NumPy mmaps) both orders ran at
    // ~0.9 ms. Same values stored, so the results are unchanged.
    for (int u = 0; u < kU; ++u) io.st(m + i + u * kW, mv[u]);
    for (int u = 0; u < kU; ++u) io.st(v + i + u * kW, vv[u]);
    for (int u = 0; u < kU; ++u) {
      const int64_t j = i + u * kW;
      VF vh = vv[u];
      if (kAmsgrad) {
        vh = vmax(io.ld(vm + j), vv[u]);
        io.st(vm + j, vh);
      }
      if (!(kL2 || kDecoupled)) pv[u] = io.ld(p + j);
      if (kDecoupled) pv[u] = vmul(pv[u], decay);
      VF denom = vfma(vsqrt(vh), ibc2, eps);  // fused explicitly: GCC would contract a mul+add anyway
      io.st(p + j, vfma(nstep, vdiv(mv[u], denom), pv[u]));
    }
  };
  int64_t i = b;
  for (; i + 2 * kW <= e; i += 2 * kW) body(i, VFull{}, std::integral_constant<int, 2>{});
  vloop(i, e, [&](int64_t k, auto io) { body(k, io, std::integral_constant<int, 1>{}); });
}

template <bool kAmsgrad, bool kScale>
static void adam_dispatch_wd(const fastnn::AdamArgs& a, const int64_t* prefix) {
  const bool wd = a.weight_decay != 0.0;
  auto go = [&](auto fn) { for_each_chunk(a.num_tensors, prefix, [&](int64_t t, int64_t b, int64_t e) { fn(a, t, b, e); }); };
  if (wd && a.decoupled) go(adam_span<kAmsgrad, kScale, false, true>);
  else if (wd) go(adam_span<kAmsgrad, kScale, true, false>);
  else go(adam_span<kAmsgrad, kScale, false, false>);
}

// true when some grad (divided by grad_scale) is Inf/NaN
static bool any_nonfinite(const float* const* grads, int64_t num_tensors, const int64_t* prefix, float grad_scale) {
  const int nt = fastnn::num_threads();
  std::vector<unsigned char> flags(static_cast<size_t>(nt) + 1, 0);
  const VF gs = vset(grad_scale);
  const bool scale = grad_scale != 1.0f;
  // chunk index is the OpenMP thread number or 0 when serial
  for_each_chunk(num_tensors, prefix, [&](int64_t t, int64_t b, int64_t e) {
    const float* g = grads[t];
    VM bad = vne(vzero(), vzero());
    vloop(b, e, [&](int64_t i, auto io) {
      VF gv = io.ld(g + i);
      if (scale) gv = vdiv(gv, gs);
      VM nf = vnonfinite(gv);
#if FASTNN_ISA_LEVEL == 2
      bad = static_cast<VM>(bad | nf);
#elif FASTNN_ISA_LEVEL == 1
      bad = _mm256_or_ps(bad, nf);
#else
      bad = bad || nf;
#endif
    });
    if (vany(bad)) flags[static_cast<size_t>(omp_get_thread_num())] = 1;
  });
  for (unsigned char f : flags)
    if (f) return true;
  return false;
}

void adam(const fastnn::AdamArgs& a, const int64_t* prefix) {
  if (a.found_inf) {
    if (*a.found_inf != 0.0f) return;
    if (any_nonfinite(a.grads, a.num_tensors, prefix, a.grad_scale)) {
      *a.found_inf = 1.0f;
      return;
    }
  }
  const bool scale = a.grad_scale != 1.0f;
  if (a.amsgrad) {
    if (scale) adam_dispatch_wd<true, true>(a, prefix);
    else adam_dispatch_wd<true, false>(a, prefix);
  } else {
    if (scale) adam_dispatch_wd<false, true>(a, prefix);
    else adam_dispatch_wd<false, false>(a, prefix);
  }
}

// ---------------------------------------------------------------------------------------
// SGD
// ---------------------------------------------------------------------------------------
void sgd(const fastnn::SgdArgs& a, const int64_t* prefix) {
  const VF sgn = vset(a.maximize ? -1.0f : 1.0f);
  const VF wd = vset(static_cast<float>(a.weight_decay));
  const VF mom = vset(static_cast<float>(a.momentum));
  const VF damp = vset(static_cast<float>(1.0 - a.dampening));
  const VF nlr = vset(static_cast<float>(-a.lr));
  const bool has_wd = a.weight_decay != 0.0, has_mom = a.momentum != 0.0;
  for_each_chunk(a.num_tensors, prefix, [&](int64_t t, int64_t b, int64_t e) {
    float* __restrict p = a.params[t];
    const float* __restrict g = a.grads[t];
    float* __restrict buf = has_mom ? a.momentum_buffers[t] : nullptr;
    vloop(b, e, [&](int64_t i, auto io) {
      VF pv = io.ld(p + i);
      VF gv = vmul(io.ld(g + i), sgn);
      if (has_wd) gv = vfma(wd, pv, gv);
      if (has_mom) {
        VF bv = a.first_step ? gv : vfma(damp, gv, vmul(io.ld(buf + i), mom));
        io.st(buf + i, bv);
        gv = a.nesterov ? vfma(mom, bv, gv) : bv;
      }
      io.st(p + i, vfma(nlr, gv, pv));
    });
  });
}

// ---------------------------------------------------------------------------------------
// Gradient norm (double accumulation per thread) and in-place scaling
// ---------------------------------------------------------------------------------------
double grad_norm(const fastnn::GradNormArgs& a, const int64_t* prefix) {
  const int nt = fastnn::num_threads();
  std::vector<double> part(static_cast<size_t>(nt), 0.0);
  std::vector<unsigned char> nan_seen(static_cast<size_t>(nt), 0);
  const double pn = a.norm_type;
  const bool is_inf = std::isinf(pn);
  for_each_static_chunk(a.num_tensors, prefix, [&](int64_t t, int64_t b, int64_t e) {
    const float* g = a.grads[t];
    const size_t tid = static_cast<size_t>(omp_get_thread_num());
    double acc = 0.0;
    if (is_inf) {
      VF mx = vzero();
      VF nanacc = vzero();
      vloop(b, e, [&](int64_t i, auto io) {
        VF gv = io.ld(g + i);
        mx = vmax(vabs(gv), mx);
        nanacc = vadd(nanacc, vsub(gv, gv));  // stays 0 unless some gv is Inf/NaN
      });
      acc = vhmax(mx);
      float n = vhsum(nanacc);
      if (n != 0.0f || std::isnan(n)) {
        // Inf in g gives Inf - Inf = NaN too; only a real NaN in g makes the norm NaN
        for (int64_t i = b; i < e; ++i)
          if (std::isnan(g[i])) nan_seen[tid] = 1;
      }
      part[tid] = std::max(part[tid], acc);
    } else if (pn == 2.0 || pn == 1.0) {
      VD2 s;
      vloop(b, e, [&](int64_t i, auto io) {
        VF gv = io.ld(g + i);
        if (pn == 2.0) {
#if FASTNN_ISA_LEVEL == 2
          __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(gv));
          __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(gv), 1)));
          s.lo = _mm512_fmadd_pd(lo, lo, s.lo);
          s.hi = _mm512_fmadd_pd(hi, hi, s.hi);
#elif FASTNN_ISA_LEVEL == 1
          __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(gv));
          __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(gv, 1));
          s.lo = _mm256_fmadd_pd(lo, lo, s.lo);
          s.hi = _mm256_fmadd_pd(hi, hi, s.hi);
#else
          s.s += static_cast<double>(gv) * gv;
#endif
        } else {
          s.add(vabs(gv));
        }
      });
      part[tid] += s.sum();
    } else {
      for (int64_t i = b; i < e; ++i) acc += std::pow(std::fabs(static_cast<double>(g[i])), pn);
      part[tid] += acc;
    }
  });
  double total = 0.0;
  if (is_inf) {
    for (size_t i = 0; i < part.size(); ++i) {
      total = std::max(total, part[i]);
      if (nan_seen[i]) return NAN;
    }
    return total;
  }
  for (double x : part) total += x;
  if (pn == 1.0) return total;
  if (pn == 2.0) return std::sqrt(total);
  return std::pow(total, 1.0 / pn);
}

void scale_(const fastnn::ScaleArgs& a, const int64_t* prefix) {
  const VF s = vset(a.scale);
  for_each_chunk(a.num_tensors, prefix, [&](int64_t t, int64_t b, int64_t e) {
    float* x = a.tensors[t];
    vloop(b, e, [&](int64_t i, auto io) { io.st(x + i, vmul(io.ld(x + i), s)); });
  });
}

#include "cpu/isa_end.h"
