// Small float SIMD layer for the training kernels (optim_kernels.cpp, nn_kernels.cpp).
//
// Include AFTER "cpu/isa_begin.h": everything here is defined inside the ISA namespace and
// under the ISA's #pragma GCC target, so each ISA gets its own copy (no COMDAT leaks).
//   level 2: VF = __m512 (16 lanes), tails with AVX-512 masked loads/stores
//   level 1: VF = __m256 (8 lanes), tails through a zero-padded stack buffer
//   level 0: VF = scalar float (1 lane): the plain reference path, std:: math functions
// Kernels are written once as generic lambdas `body(i, m)` where m.ld/m.st do full or
// tail loads/stores (see vloop), so the vector and tail code share one formula.
//
// exp/log are Cephes-style (range reduction + degree-6/9 polynomial, ~2 ulp); tanh uses the
// Cephes odd polynomial below |x| < 0.625 and 1 - 2/(e^{2|x|}+1) above (no cancellation);
// erf uses a minimax polynomial in x^2 below |x| < 0.9 and 1 - exp(poly(|x|)) above (fitted
// offline in float64; max abs error ~2e-7 over the float range).
// No include guard on purpose: included once per kernel file, inside the ISA region.

#ifndef FASTNN_TRAIN_VEC_ONCE_PER_TU
#define FASTNN_TRAIN_VEC_ONCE_PER_TU
// GCC 12 false positive inside _mm512_reduce_*; vector-ABI note for the static helpers.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"

#if FASTNN_ISA_LEVEL == 2
using VF = __m512;
using VM = __mmask16;
constexpr int kW = 16;
static inline VF vset(float x) { return _mm512_set1_ps(x); }
static inline VF vzero() { return _mm512_setzero_ps(); }
static inline VF vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, VF v) { _mm512_storeu_ps(p, v); }
static inline VF vload_n(const float* p, int n) {
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
}
static inline void vstore_n(float* p, VF v, int n) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
}
static inline VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
static inline VF vsub(VF a, VF b) { return _mm512_sub_ps(a, b); }
static inline VF vmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
static inline VF vdiv(VF a, VF b) { return _mm512_div_ps(a, b); }
static inline VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }    // a*b+c
static inline VF vfnma(VF a, VF b, VF c) { return _mm512_fnmadd_ps(a, b, c); }  // c-a*b
static inline VF vmax(VF a, VF b) { return _mm512_max_ps(a, b); }
static inline VF vmin(VF a, VF b) { return _mm512_min_ps(a, b); }
static inline VF vsqrt(VF a) { return _mm512_sqrt_ps(a); }
static inline VF vabs(VF a) { return _mm512_abs_ps(a); }
static inline VF vneg(VF a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
static inline VF vround(VF a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline VM vgt(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline VM vge(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
static inline VM vlt(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline VM vne(VF a, VF b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
static inline VM vmand(VM a, VM b) { return static_cast<VM>(a & b); }
static inline VF vsel(VM m, VF a, VF b) { return _mm512_mask_blend_ps(m, b, a); }  // m ? a : b
static inline bool vany(VM m) { return m != 0; }
static inline VM vtail_mask(int n) { return static_cast<VM>((1u << n) - 1u); }
// 2^n for integral-valued n in [-126, 127]
static inline VF vpow2i(VF n) {
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_castsi512_ps(e);
}
// frexp-like: a = m * 2^e with m in [0.5, 1) for positive normal a
static inline VF vfrexp(VF a, VF* e) {
  __m512i ai = _mm512_castps_si512(a);
  __m512i ex = _mm512_sub_epi32(_mm512_srli_epi32(ai, 23), _mm512_set1_epi32(126));
  *e = _mm512_cvtepi32_ps(ex);
  __m512i mi = _mm512_or_si512(_mm512_and_si512(ai, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x3f000000));
  return _mm512_castsi512_ps(mi);
}
static inline float vhsum(VF a) { return _mm512_reduce_add_ps(a); }
static inline float vhmax(VF a) { return _mm512_reduce_max_ps(a); }
// non-finite lanes (Inf/NaN) -> mask
static inline VM vnonfinite(VF a) {
  return _mm512_cmp_ps_mask(_mm512_sub_ps(a, a), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}
// accumulate a float vector into two double vectors (sum of squares etc.)
struct VD2 {
  __m512d lo, hi;
  VD2() : lo(_mm512_setzero_pd()), hi(_mm512_setzero_pd()) {}
  void add(VF a) {
    lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
    hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
  }
  double sum() const { return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi)); }
};

#elif FASTNN_ISA_LEVEL == 1
using VF = __m256;
using VM = __m256;
constexpr int kW = 8;
static inline VF vset(float x) { return _mm256_set1_ps(x); }
static inline VF vzero() { return _mm256_setzero_ps(); }
static inline VF vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, VF v) { _mm256_storeu_ps(p, v); }
static inline __m256i vtailmask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline VF vload_n(const float* p, int n) { return _mm256_maskload_ps(p, vtailmask(n)); }
static inline VM vtail_mask(int n) { return _mm256_castsi256_ps(vtailmask(n)); }
static inline void vstore_n(float* p, VF v, int n) { _mm256_maskstore_ps(p, vtailmask(n), v); }
static inline VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
static inline VF vsub(VF a, VF b) { return _mm256_sub_ps(a, b); }
static inline VF vmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
static inline VF vdiv(VF a, VF b) { return _mm256_div_ps(a, b); }
static inline VF vfma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
static inline VF vfnma(VF a, VF b, VF c) { return _mm256_fnmadd_ps(a, b, c); }
static inline VF vmax(VF a, VF b) { return _mm256_max_ps(a, b); }
static inline VF vmin(VF a, VF b) { return _mm256_min_ps(a, b); }
static inline VF vsqrt(VF a) { return _mm256_sqrt_ps(a); }
static inline VF vabs(VF a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline VF vneg(VF a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
static inline VF vround(VF a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline VM vgt(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline VM vge(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
static inline VM vlt(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline VM vne(VF a, VF b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
static inline VM vmand(VM a, VM b) { return _mm256_and_ps(a, b); }
static inline VF vsel(VM m, VF a, VF b) { return _mm256_blendv_ps(b, a, m); }
static inline bool vany(VM m) { return _mm256_movemask_ps(m) != 0; }
static inline VF vpow2i(VF n) {
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_castsi256_ps(e);
}
static inline VF vfrexp(VF a, VF* e) {
  __m256i ai = _mm256_castps_si256(a);
  __m256i ex = _mm256_sub_epi32(_mm256_srli_epi32(ai, 23), _mm256_set1_epi32(126));
  *e = _mm256_cvtepi32_ps(ex);
  __m256i mi = _mm256_or_si256(_mm256_and_si256(ai, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f000000));
  return _mm256_castsi256_ps(mi);
}
static inline float vhsum(VF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
static inline float vhmax(VF a) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
static inline VM vnonfinite(VF a) { return _mm256_cmp_ps(_mm256_sub_ps(a, a), _mm256_setzero_ps(), _CMP_NEQ_UQ); }
struct VD2 {
  __m256d lo, hi;
  VD2() : lo(_mm256_setzero_pd()), hi(_mm256_setzero_pd()) {}
  void add(VF a) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
  }
  double sum() const {
    __m256d s = _mm256_add_pd(lo, hi);
    __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
  }
};

#else  // generic: scalar reference path
using VF = float;
using VM = bool;
constexpr int kW = 1;
static inline VF vset(float x) { return x; }
static inline VF vzero() { return 0.0f; }
static inline VF vload(const float* p) { return *p; }
static inline void vstore(float* p, VF v) { *p = v; }
static inline VF vload_n(const float* p, int) { return *p; }
static inline void vstore_n(float* p, VF v, int) { *p = v; }
static inline VF vadd(VF a, VF b) { return a + b; }
static inline VF vsub(VF a, VF b) { return a - b; }
static inline VF vmul(VF a, VF b) { return a * b; }
static inline VF vdiv(VF a, VF b) { return a / b; }
// fused like the vector levels, so every level rounds alike (libm's fmaf uses the FMA unit via ifunc)
static inline VF vfma(VF a, VF b, VF c) { return std::fma(a, b, c); }
static inline VF vfnma(VF a, VF b, VF c) { return std::fma(-a, b, c); }
static inline VF vmax(VF a, VF b) { return a > b ? a : b; }  // like maxps: b when unordered
static inline VF vmin(VF a, VF b) { return a < b ? a : b; }
static inline VF vsqrt(VF a) { return std::sqrt(a); }
static inline VF vabs(VF a) { return std::fabs(a); }
static inline VF vneg(VF a) { return -a; }
static inline VF vround(VF a) { return std::nearbyint(a); }
static inline VM vgt(VF a, VF b) { return a > b; }
static inline VM vge(VF a, VF b) { return a >= b; }
static inline VM vlt(VF a, VF b) { return a < b; }
static inline VM vne(VF a, VF b) { return !(a == b); }
static inline VM vmand(VM a, VM b) { return a && b; }
static inline VF vsel(VM m, VF a, VF b) { return m ? a : b; }
static inline bool vany(VM m) { return m; }
static inline VM vtail_mask(int) { return true; }
static inline float vhsum(VF a) { return a; }
static inline float vhmax(VF a) { return a; }
static inline VM vnonfinite(VF a) { return !std::isfinite(a); }
struct VD2 {
  double s = 0.0;
  void add(VF a) { s += a; }
  double sum() const { return s; }
};
#endif

// ---- loop driver: full vectors, then one masked tail -------------------------------------
struct VFull {
  VF ld(const float* p) const { return vload(p); }
  void st(float* p, VF v) const { vstore(p, v); }
  static constexpr bool tail = false;
};
struct VTail {
  int n;
  VF ld(const float* p) const { return vload_n(p, n); }
  void st(float* p, VF v) const { vstore_n(p, v, n); }
  static constexpr bool tail = true;
};
template <typename Body>
static inline void vloop(int64_t begin, int64_t end, Body&& body) {
  int64_t i = begin;
  for (; i + kW <= end; i += kW) body(i, VFull{});
  if (i < end) body(i, VTail{static_cast<int>(end - i)});
}

// ---- transcendental functions ---------------------------------------------------------------
#if FASTNN_ISA_LEVEL >= 1
static inline VF vexp(VF x) {
  // e^x = 2^n * e^r, n = round(x / ln2), |r| <= ln2/2; Cephes expf polynomial.
  // The clamps span the whole float32 range of e^x: up to ln(FLT_MAX) = 88.7228 (n = 128) and
  // down to -104 (n = -150, below which e^x rounds to 0): both levels build 2^n so that n in
  // [-150, 128] neither wraps the exponent field nor flushes denormal results.
  const VF hi = vset(88.72283935546875f), lo = vset(-104.0f);
  VF xc = vmin(vmax(x, lo), hi);
  VF n = vround(vmul(xc, vset(1.44269504088896341f)));
  VF r = vfnma(n, vset(0.693359375f), xc);
  r = vfnma(n, vset(-2.12194440e-4f), r);
  VF p = vset(1.9875691500E-4f);
  p = vfma(p, r, vset(1.3981999507E-3f));
  p = vfma(p, r, vset(8.3334519073E-3f));
  p = vfma(p, r, vset(4.1665795894E-2f));
  p = vfma(p, r, vset(1.6666665459E-1f));
  p = vfma(p, r, vset(5.0000001201E-1f));
  p = vfma(p, vmul(r, r), vadd(r, vset(1.0f)));
#if FASTNN_ISA_LEVEL == 2
  // vscalefps: p * 2^n in one instruction, with overflow to inf and gradual underflow to 0
  VF y = _mm512_scalef_ps(p, n);
#else
  // split 2^n in two factors so n down to -150 (denormals) and up to 128 work
  VF n1 = vround(vmul(n, vset(0.5f)));
  VF n2 = vsub(n, n1);
  VF y = vmul(vmul(p, vpow2i(n1)), vpow2i(n2));
#endif
  y = vsel(vlt(x, vset(-104.0f)), vzero(), y);
  y = vsel(vgt(x, vset(88.72283935546875f)), vset(INFINITY), y);
  return vsel(vne(x, x), x, y);  // NaN propagates
}
static inline VF vlog(VF x) {
  // Any x: 0 -> -inf, inf -> inf, negative/NaN -> NaN (below). Denormal x are scaled by 2^24
  // (exact) so that vfrexp sees a normal number, and 24 is taken off the exponent.
  VM den = vmand(vlt(x, vset(1.17549435e-38f)), vgt(x, vzero()));
  VF e;
  VF m = vfrexp(vsel(den, vmul(x, vset(16777216.0f)), x), &e);
  e = vsel(den, vsub(e, vset(24.0f)), e);
  VM small = vlt(m, vset(0.707106781186547524f));
  e = vsel(small, vsub(e, vset(1.0f)), e);
  m = vsub(vsel(small, vadd(m, m), m), vset(1.0f));
  VF z = vmul(m, m);
  VF y = vset(7.0376836292E-2f);
  y = vfma(y, m, vset(-1.1514610310E-1f));
  y = vfma(y, m, vset(1.1676998740E-1f));
  y = vfma(y, m, vset(-1.2420140846E-1f));
  y = vfma(y, m, vset(1.4249322787E-1f));
  y = vfma(y, m, vset(-1.6668057665E-1f));
  y = vfma(y, m, vset(2.0000714765E-1f));
  y = vfma(y, m, vset(-2.4999993993E-1f));
  y = vfma(y, m, vset(3.3333331174E-1f));
  y = vmul(vmul(y, m), z);
  y = vfma(e, vset(-2.12194440e-4f), y);
  y = vfnma(vset(0.5f), z, y);
  VF r = vadd(m, y);
  r = vfma(e, vset(0.693359375f), r);
  r = vsel(vgt(x, vzero()), r, vset(-INFINITY));  // 0 (and NaN, restored below)
  r = vsel(vlt(x, vzero()), vset(NAN), r);
  r = vsel(vge(x, vset(INFINITY)), x, r);
  return vsel(vne(x, x), x, r);
}
#else
static inline VF vexp(VF x) { return std::exp(x); }
static inline VF vlog(VF x) { return std::log(x); }
#endif

// log(1 + t) without cancellation for small t (t >= 0): log(u) * t / (u - 1), u = 1 + t
static inline VF vlog1p_pos(VF t) {
#if FASTNN_ISA_LEVEL >= 1
  VF u = vadd(t, vset(1.0f));
  VF d = vsub(u, vset(1.0f));
  VF r = vmul(vlog(u), vdiv(t, vsel(vne(d, vzero()), d, vset(1.0f))));
  r = vsel(vne(d, vzero()), r, t);
  return vsel(vge(t, vset(INFINITY)), t, r);
#else
  return std::log1p(t);
#endif
}

static inline VF vsigmoid(VF x) { return vdiv(vset(1.0f), vadd(vset(1.0f), vexp(vneg(x)))); }

static inline VF vtanh(VF x) {
#if FASTNN_ISA_LEVEL >= 1
  VF ax = vabs(x);
  VF z = vmul(x, x);
  VF p = vset(-5.70498872745E-3f);
  p = vfma(p, z, vset(2.06390887954E-2f));
  p = vfma(p, z, vset(-5.37397155531E-2f));
  p = vfma(p, z, vset(1.33314422036E-1f));
  p = vfma(p, z, vset(-3.33332819422E-1f));
  VF small = vfma(vmul(p, z), x, x);
  VF big = vsub(vset(1.0f), vdiv(vset(2.0f), vadd(vexp(vadd(ax, ax)), vset(1.0f))));
  big = vsel(vlt(x, vzero()), vneg(big), big);
  return vsel(vlt(ax, vset(0.625f)), small, big);
#else
  return std::tanh(x);
#endif
}

// erfc(a) for a >= 0 (relative error < 1e-6 for a < 4, < 5e-6 up to 10, underflows beyond)
static inline VF verfc_pos(VF a) {
#if FASTNN_ISA_LEVEL >= 1
  VF z = vmul(a, a);
  VF p = vset(8.578584674978629e-05f);  // erf(a)/a = P(a^2) on [0, 0.9]
  p = vfma(p, z, vset(-0.0008192079258151352f));
  p = vfma(p, z, vset(0.005205423105508089f));
  p = vfma(p, z, vset(-0.02686120569705963f));
  p = vfma(p, z, vset(0.1128372922539711f));
  p = vfma(p, z, vset(-0.37612634897232056f));
  p = vfma(p, z, vset(1.128379225730896f));
  VF small = vfnma(a, p, vset(1.0f));
  // erfc(a) = exp(-a^2) * erfcx(a), erfcx fitted as a polynomial in u = (1/a - c) * s on [0.9, 10]
  VF ac = vmin(vmax(a, vset(0.9f)), vset(10.0f));
  VF u = vmul(vsub(vdiv(vset(1.0f), ac), vset(0.6055555555555556f)), vset(1.978021978021978f));
  VF q = vset(-4.198026726953685e-05f);
  q = vfma(q, u, vset(8.771088323555887e-05f));
  q = vfma(q, u, vset(3.285508910266799e-06f));
  q = vfma(q, u, vset(-0.0002557888219598681f));
  q = vfma(q, u, vset(0.0007820613100193441f));
  q = vfma(q, u, vset(-0.001711141550913453f));
  q = vfma(q, u, vset(0.0018385812873020768f));
  q = vfma(q, u, vset(0.00539463572204113f));
  q = vfma(q, u, vset(-0.04469982534646988f));
  q = vfma(q, u, vset(0.19667990505695343f));
  q = vfma(q, u, vset(0.2984541952610016f));
  VF a2 = vmul(ac, ac);
  VF a2lo = vfma(ac, ac, vneg(a2));  // rounding error of a^2: exp(-a2-lo) ~ exp(-a2)(1-lo)
  VF big = vmul(vmul(vexp(vneg(a2)), vsub(vset(1.0f), a2lo)), q);
  big = vsel(vgt(a, vset(10.0f)), vzero(), big);
  return vsel(vlt(a, vset(0.9f)), small, big);
#else
  return std::erfc(a);
#endif
}
// Standard normal CDF Phi(x) = erfc(-x/sqrt2)/2, accurate in both tails.
static inline VF vphi(VF x) {
  VF z = vmul(x, vset(-0.70710678118654752f));
  VF h = vmul(vset(0.5f), verfc_pos(vabs(z)));
  VF r = vsel(vlt(z, vzero()), vsub(vset(1.0f), h), h);
  return vsel(vne(x, x), x, r);  // the clamps above would swallow NaN
}

#endif  // FASTNN_TRAIN_VEC_ONCE_PER_TU
