// Fused attention, FlashAttention-2 style, forward and backward (float32).
//
// Forward: one task per (b, h, query block of BR <= 64 rows). The query block is
// packed transposed (Qt: D x BR, pre-multiplied by scale*log2(e) so that the
// softmax runs in base 2 with no extra multiply), and K/V stream through in blocks
// of BC = 64 keys. Queries sit in the SIMD lanes: S^T = K_blk Qt (BC x BR) and
// O^T += V_blk^T P^T (D x BR) are both "broadcast an element of K/V, FMA a vector
// of Qt/P^T" products, so K and V are read in their natural layout with any
// strides, and the online softmax (running max m, running sum l, rescale alpha)
// reduces over keys = over rows, i.e. vertically, with no horizontal reductions.
// O^T is normalised once at the end; lse = (m + log2 l) * ln 2 is saved.
//
// Backward: one task per (b, h, key block of BCB <= 64 keys), so dK and dV are
// private to the task (accumulated transposed, D x BCB, keys in the lanes). For
// each step of BRB = 128 query rows it recomputes S = Q Kt and P = exp2(S - lse2) (keys in
// lanes, Q read in place), then dV^T += dO^T P, dP = dO Vt, dS = P * (dP - Di),
// dK^T += Q^T dS, dQ += dS K. The exp2 and the dS product are applied to the
// microkernel's accumulators before they are stored (modes kExpRow, kDS), not in
// passes of their own (measured 2-7 % faster backward, the most with causal, whose
// diagonal blocks are now zeroed by a memset instead of a per-vector select). dQ is shared between key blocks, so each
// piece of a thread's range within one head accumulates into a private Nq x Dp buffer: a
// piece covering a whole head adds it into dq at its end; the pieces of a head split between
// ranges (at most 2 (threads - 1) of them) keep their buffers until all threads are done and
// are then added in range order, so dq is bitwise repeatable at any thread count, whichever
// thread ran or claimed a piece. No atomics in the inner loop, one extra O(Nq*D) pass per
// piece — cheaper than the two-pass alternative, which recomputes S and dP (7 instead of 5
// matmuls).
// Di = rowsum(dO * O) and lse2 = lse*log2(e) are precomputed in a first pass.
//
// All products go through one register-blocked microkernel (bgemm below):
//   C[r, c..c+W) (+)= sum_k A[r*a_rs + k*a_ks] * B[k*b_rs + c..c+W)
// with MR x NV*W accumulators (AVX-512: 6 x 64 = 24 zmm, so one call covers all 64 lanes
// of a block with 4 loads + 6 broadcasts per 24 FMAs; measured ~7 % faster end to end than
// 8 x 32. AVX2: 6 x 16, SSE2: 4 x 8). Block sizes (FASTNN_ATTN_BC/BQ/BCB/BRB) of 60..128
// measured within noise of 64 at N = 512 and 1024, except BRB: 128 query rows per backward
// step halve the share of the dV^T / dK^T microkernel calls' C loads and stores (~13 % of
// their time at 64 rows): 1-2.5 % faster backward at N = 256..4096, 1 thread.
// Forward blocks with no masked key take the running maximum in the S microkernel
// (kSetMax), skipping one pass over S^T (~3 % faster forward, 1 thread, loaded box).
// Once every query lane has a running maximum m, such blocks keep m unless it is far too
// low (lazy rescaling, kLazySum): exp2 then runs on the S microkernel's registers with a
// 7-operation exp2, with no max pass and no rescale of O^T; the forward is bound by the
// FMA ports (products + exp2), so this is what counts (~8 % faster forward, 1 thread).
// The O rows of a task and the next task's Q rows are prefetched during its last key
// blocks (store misses stalled the O write-back).
// The transposed copies (Q and K/V blocks in, O and dK/dV out) go through 16 x 16 register
// transposes on AVX-512 (~2 % faster fwd+bwd at N = 1024, ~8 % at N = 256, 1 thread).
// Where the forward's time goes (1 thread, N = 1024, B*H = 32, the VM in its slow mode):
// the S product alone runs at 67 % of the FMA probe, exp2 adds 6 %, the O^T product runs
// at 75 %; with the K/V blocks pinned in L1 it is only 2 % faster.
// Key-outer order: once K and V of a head outgrow L2 (N = 4096 at D = 64: 2 MiB, the whole
// L2), a task streamed them from L3 for every 64 query rows, and the forward ran ~4-6 %
// slower per flop than at N <= 2048 (1 thread, CPU time, alternating in one process:
// 88.7 vs 92.5 / 91.2 GF/s at N = 4096 / 1024 / 2048). Now a task is a group of up to 256
// query rows that visits the keys in chunks of 512 KiB of K and V (1024 keys at D = 64), each
// query block taking the chunk in turn with its O^T / m / l saved in scratch: 94.4 GF/s at
// N = 4096, 95.4 at 8192 (chunks of 256 / 512 / 2048 keys: 92.4 / 93.7 / ~94). At N <= 2048
// chunks cost 0.5-3 % (Q re-packed per visit, state traffic), so K and V of up to 1 MiB
// keep the plain order. Groups run from the last to the first within a head, so that a
// causal range ends on its cheapest unit (whole units are what a finished thread claims).
// No gain from: K packed transposed per head (contiguous broadcasts, 1-3 % slower), 128
// query lanes per task (5 % slower, 15 % at 2 threads N = 4096), key blocks of 32 / 48 /
// 96 / 128, an 8 x 48 tile with 48-lane blocks (3-23 % slower), prefetching C rows.
// The rate does not depend on N (1 thread, thread time, load ~4, B*H*N^2 fixed): forward
// 93 / 94 / 90 GF/s (before the key-outer order; now 92 / 93 / 94) and backward 97 / 97 / 95
// GF/s (5 products) at N = 1024 / 2048 / 4096 (session 9, same method: 95.0 / 95.9 / 96.6);
// a backward with 128-key tasks (Q and dO streamed once per 128 keys, the "two key blocks per
// Q load" layout) ran within the +-5 % noise of 64 at N = 1024 and 4096. So fwd+bwd (7
// products) stays at ~70 % of the FMA probe, the rate of the GEMM on this machine; the fall
// of its ratio to NumPy with N (3.05 / 2.79 / 2.60 in the session-7 quiet run) is NumPy
// getting faster per flop at 2 threads (486 / 421 / 416 ms per 1024^2-equivalent), and 3x
// NumPy at N = 4096 would need 86 % of the probe.
// Bound: compute (4*N^2*D flops forward, 10*N^2*D backward against O(N*D) memory
// traffic per (b, h) and query block); the exp2 pass is ~10% of the forward work at
// D = 64. Threads: contiguous task ranges, balanced by per-task cost (causal tasks
// differ), from a single parallel region per pass. In the forward, a thread that has
// finished its range takes tasks left in the others' (ClaimableRanges): under load a
// thread slowed by the host held up the call by up to 18 % (measured at N = 1024, 2
// threads, load 3); claiming made the forward 1-12 % faster there, results unchanged.
// The backward claims whole pieces of a range within one head (one private dQ each, summed
// in a fixed order): idle thread time 1.7 / 0.5 / 1.2 % instead of 15.9 / 3.4 / 1.0 % (N = 1024,
// causal 1024, 2048; 2 threads, load ~4).
//
// exp2: AVX2 / SSE2: round-to-nearest range reduction x = n + f, f in [-0.5, 0.5], 2^f by a
// degree-6 polynomial (fitted for minimum relative error, c0 = 1), 2^n built in the
// exponent field; max relative error 7.9e-8 (0.93 ulp). AVX-512: x = floor(x) + f by
// vreduceps, f in [0, 1), degree 6 fitted on [0, 1), vscalefps by floor(x); 7.3e-8 (0.61
// ulp); the forward's lazy blocks use a degree-5 fit, 1.5e-7 (1.3 ulp). Measured against
// exp2 in double over [-126, 126.5] in steps of 1e-5. Inputs below -127 (and -inf) give 0
// (AVX-512: gradual underflow; others flush below 2^-126 -- harmless for softmax
// weights); NaN propagates.
#include <cfloat>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <omp.h>

#include "fastnn/allocator.h"
#include "fastnn/attention.h"
#include "fastnn/config.h"
#include "cpu/attention_dropout.h"

#include "cpu/isa_begin.h"

// GCC 12 false positive: _mm512_undefined_ps() inside max/roundscale/scalef, reported
// once vexp2 is inlined into a microkernel epilogue (kExpRow).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

// ---- a minimal float SIMD layer -------------------------------------------------
#if FASTNN_ISA_LEVEL == 2
constexpr int W = 16;
#ifndef FASTNN_ATTN_MR
#define FASTNN_ATTN_MR 6
#define FASTNN_ATTN_NV 4
#endif
constexpr int MR = FASTNN_ATTN_MR;
constexpr int NV = FASTNN_ATTN_NV;  // vectors per microkernel row
using vf = __m512;
inline vf vld(const float* p) { return _mm512_loadu_ps(p); }
inline void vst(float* p, vf x) { _mm512_storeu_ps(p, x); }
inline vf vset(float x) { return _mm512_set1_ps(x); }
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
// 2^n from a float vector n, together with n rounded: returns (round(x), 2^round(x)).
inline vf vround_pow2(vf x, vf* pow2n) {
  __m512i n = _mm512_cvtps_epi32(x);
  *pow2n = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
  return _mm512_cvtepi32_ps(n);
}
// lanes with (base + lane) < thr take a, the others b
inline vf vsel_lt(int base, int thr, vf a, vf b) {
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __mmask16 m = _mm512_cmplt_epi32_mask(_mm512_add_epi32(iota, _mm512_set1_epi32(base)), _mm512_set1_epi32(thr));
  return _mm512_mask_blend_ps(m, b, a);
}
// every lane a <= b (false where a is NaN)
inline bool vall_le(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ) == 0xFFFF; }
#elif FASTNN_ISA_LEVEL == 1
constexpr int W = 8;
constexpr int MR = 6;
constexpr int NV = 2;
using vf = __m256;
inline vf vld(const float* p) { return _mm256_loadu_ps(p); }
inline void vst(float* p, vf x) { _mm256_storeu_ps(p, x); }
inline vf vset(float x) { return _mm256_set1_ps(x); }
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vround_pow2(vf x, vf* pow2n) {
  __m256i n = _mm256_cvtps_epi32(x);
  *pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
  return _mm256_cvtepi32_ps(n);
}
inline vf vsel_lt(int base, int thr, vf a, vf b) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(thr), _mm256_add_epi32(iota, _mm256_set1_epi32(base)));
  return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m));
}
inline bool vall_le(vf a, vf b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_LE_OQ)) == 0xFF; }
#else
// SSE2 (the x86-64 baseline); no FMA, so multiply then add.
constexpr int W = 4;
constexpr int MR = 4;
constexpr int NV = 2;
using vf = __m128;
inline vf vld(const float* p) { return _mm_loadu_ps(p); }
inline void vst(float* p, vf x) { _mm_storeu_ps(p, x); }
inline vf vset(float x) { return _mm_set1_ps(x); }
inline vf vzero() { return _mm_setzero_ps(); }
inline vf vadd(vf a, vf b) { return _mm_add_ps(a, b); }
inline vf vsub(vf a, vf b) { return _mm_sub_ps(a, b); }
inline vf vmul(vf a, vf b) { return _mm_mul_ps(a, b); }
inline vf vmax(vf a, vf b) { return _mm_max_ps(a, b); }
inline vf vmin(vf a, vf b) { return _mm_min_ps(a, b); }
inline vf vfma(vf a, vf b, vf c) { return _mm_add_ps(_mm_mul_ps(a, b), c); }
inline vf vround_pow2(vf x, vf* pow2n) {
  __m128i n = _mm_cvtps_epi32(x);
  *pow2n = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(n, _mm_set1_epi32(127)), 23));
  return _mm_cvtepi32_ps(n);
}
inline vf vsel_lt(int base, int thr, vf a, vf b) {
  __m128i idx = _mm_add_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(base));
  __m128 m = _mm_castsi128_ps(_mm_cmplt_epi32(idx, _mm_set1_epi32(thr)));
  return _mm_or_ps(_mm_and_ps(m, a), _mm_andnot_ps(m, b));
}
inline bool vall_le(vf a, vf b) { return _mm_movemask_ps(_mm_cmple_ps(a, b)) == 0xF; }
#endif

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -INFINITY;
// Lazy rescaling (forward): a clean block reuses the running maximum m of the earlier blocks
// as long as each lane's block sum of P = exp2(S - m) stays <= kLazySum (so every P <= 2^20:
// no overflow of l or O^T, and floating point keeps the same relative precision). Then O^T
// needs no rescale and exp2 runs on the microkernel's registers (kExpLazy), with no max
// pass. Otherwise (a score far above m, or a sum that is inf or NaN) the block is redone
// with the exact running maximum.
constexpr float kLazySum = 1048576.0f;  // 2^20

#if FASTNN_ISA_LEVEL != 2
// 2^x, see the header comment for accuracy. The clamps keep the integer exponent
// in range; max(c, x) / min(c, x) return x when x is NaN, so NaN propagates.
inline vf vexp2_poly(vf f) {
  vf p = vset(1.5345764404628426e-4f);
  p = vfma(p, f, vset(1.3399930903688073e-3f));
  p = vfma(p, f, vset(9.618489071726799e-3f));
  p = vfma(p, f, vset(5.550328642129898e-2f));
  p = vfma(p, f, vset(2.4022646248340607e-1f));
  p = vfma(p, f, vset(6.931471824645996e-1f));
  return vfma(p, f, vset(1.0f));
}
#endif
#if FASTNN_ISA_LEVEL == 2
// AVX-512: f = x - floor(x) in [0, 1) in one vreduceps (0 for x = +-inf), 2^f by a degree-6
// polynomial fitted on [0, 1), and vscalefps multiplies by 2^floor(x) with correct
// underflow to 0 (x = -inf gives 0) and overflow to inf: 8 operations, no clamp. Max
// relative error 7.3e-8 (0.61 ulp), measured as for the other levels.
inline vf vexp2(vf x) {
  const vf f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  vf p = vset(2.1702070e-4f);
  p = vfma(p, f, vset(1.2439683e-3f));
  p = vfma(p, f, vset(9.6788490e-3f));
  p = vfma(p, f, vset(5.5483334e-2f));
  p = vfma(p, f, vset(2.4022985e-1f));
  p = vfma(p, f, vset(6.9314700e-1f));
  p = vfma(p, f, vset(1.0f));
  return _mm512_scalef_ps(p, x);
}
// kExpLazy's exp2, 7 operations instead of 10: f = x - floor(x) in [0, 1) in one vreduceps,
// 2^f by a degree-5 polynomial fitted on [0, 1) (max relative error 1.5e-7, 1.3 ulp,
// evaluated in float32), and vscalefps multiplies by 2^floor(x) itself. Finite x only
// (-inf gives NaN): kExpLazy rejects a block whose sums are not finite.
inline vf vexp2_finite(vf x) {
  const vf f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  vf p = vset(1.8775528e-3f);
  p = vfma(p, f, vset(8.9893276e-3f));
  p = vfma(p, f, vset(5.5826403e-2f));
  p = vfma(p, f, vset(2.4015355e-1f));
  p = vfma(p, f, vset(6.9315308e-1f));
  p = vfma(p, f, vset(9.9999994e-1f));
  return _mm512_scalef_ps(p, x);
}
#else
inline vf vexp2(vf x) {
  x = vmax(vset(-127.0f), x);
  x = vmin(vset(127.0f), x);
  vf p2n;
  vf f = vsub(x, vround_pow2(x, &p2n));
  return vmul(vexp2_poly(f), p2n);
}
inline vf vexp2_finite(vf x) { return vexp2(x); }
#endif

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// ---- transposed copies (packing Q/K/V blocks, writing O/dK/dV back) -------------------
#if FASTNN_ISA_LEVEL == 2
// r[c] = column c of the 16 x 16 tile whose rows are r[0..16): unpack, then shuffles of
// 32-bit pairs and of 128-bit lanes (64 shuffles; a scalar loop takes ~4x as long).
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int x = 0; x < 16; x += 2) {
    t[x] = _mm512_unpacklo_ps(r[x], r[x + 1]);
    t[x + 1] = _mm512_unpackhi_ps(r[x], r[x + 1]);
  }
  // u[4g + k], 128-bit lane L: column 4L + k of rows 4g..4g+3
  for (int g = 0; g < 16; g += 4) {
    r[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
    r[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
    r[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
    r[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 v0 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), v1 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88),
                 w1 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xDD);
    t[k] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    t[8 + k] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    t[4 + k] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
  for (int x = 0; x < 16; ++x) r[x] = t[x];
}
#endif

// dst[c*d_rs + r] = src[r*s_rs + c] * f (f = fc[c] per source column, or fs when fc is null)
// for r < rows, c < cols; rows of src and dst are contiguous. Each dst row gets dst_len >=
// rows values, the ones past `rows` zero (the padding of a scratch block). Returns false
// at the ISA levels without a vector path: the caller then runs its scalar loop.
inline bool transpose_scaled(const float* src, int64_t s_rs, int64_t rows, int64_t cols, float* dst, int64_t d_rs,
                             int64_t dst_len, float fs, const float* fc) {
#if FASTNN_ISA_LEVEL == 2
  for (int64_t c0 = 0; c0 < cols; c0 += 16) {
    const int nc = static_cast<int>(std::min<int64_t>(16, cols - c0));
    const __mmask16 cm = static_cast<__mmask16>((1u << nc) - 1);
    const __m512 fv = fc ? _mm512_maskz_loadu_ps(cm, fc + c0) : _mm512_set1_ps(fs);
    for (int64_t r0 = 0; r0 < dst_len; r0 += 16) {
      __m512 t[16];
      for (int x = 0; x < 16; ++x)
        t[x] = r0 + x < rows ? _mm512_mul_ps(_mm512_maskz_loadu_ps(cm, src + (r0 + x) * s_rs + c0), fv)
                             : _mm512_setzero_ps();
      transpose16x16(t);
      const __mmask16 rm = static_cast<__mmask16>((1u << std::min<int64_t>(16, dst_len - r0)) - 1);
      for (int x = 0; x < nc; ++x) _mm512_mask_storeu_ps(dst + (c0 + x) * d_rs + r0, rm, t[x]);
    }
  }
  return true;
#else
  (void)src, (void)s_rs, (void)rows, (void)cols, (void)dst, (void)d_rs, (void)dst_len, (void)fs, (void)fc;
  return false;
#endif
}

// Prefetch the cache lines of rows [r0, r1) of a row-major block (rows `stride` floats apart,
// `bytes` long), for writing or reading.
template <bool Write>
inline void prefetch_rows(const float* base, int64_t stride, int64_t r0, int64_t r1, int64_t bytes) {
  for (int64_t r = r0; r < r1; ++r) {
    const char* p = reinterpret_cast<const char*>(base + r * stride);
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, Write ? 1 : 0, 3);
  }
}

// ---- the microkernel ----------------------------------------------------------------
// C[r*c_rs + c + (0..NVv*W)] (+)= sum_k A[r*a_rs + k*a_ks] * B[k*b_rs + c + ...], r < R.
// The mode is a template parameter so that each instantiation has a single prologue
// (a runtime flag made the compiler keep the accumulators of every path alive and spill
// them around the k loop): kSet C = AB, kAcc C += AB, kScaleAcc C = C * cs + AB with
// column factors cs (the online-softmax rescale of O^T, folded into the load of C).
// Two modes fold the backward's elementwise passes into the store of C, saving a load
// and a store of every element of the 64 x 64 block and a loop over it:
// kExpRow C = exp2(AB - rv[r] + cs[c]) (P from S, the row lse2 and the key bias) and
// kDS C = cs[r*c_rs + c] * (AB - rv[r]) (dS = P * (dP - Di), cs = P in C's layout).
// The forward's kSetMax is kSet that also raises cs[c] to max_r C[r, c] (the block's
// running maximum per query lane, taken from the registers instead of a pass over S^T).
// kExpLazy (forward, clean blocks once every lane has a running maximum rv[c]): C =
// exp2(AB - rv[c]) straight from the registers, the column sums added to cs[c].
enum Mode { kSet, kAcc, kScaleAcc, kExpRow, kDS, kSetMax, kExpLazy };

template <Mode M, int R, int NVv>
inline void ukr(int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t b_rs,
                float* C, int64_t c_rs, float* cs, const float* rv) {
  vf c[R][NVv];
  if constexpr (M == kScaleAcc) {
    vf f[NVv];
#pragma GCC unroll 4
    for (int v = 0; v < NVv; ++v) f[v] = vld(cs + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NVv; ++v) c[r][v] = vmul(vld(C + r * c_rs + v * W), f[v]);
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NVv; ++v) c[r][v] = M == kAcc ? vld(C + r * c_rs + v * W) : vzero();
  }
  for (int64_t k = 0; k < K; ++k) {
    const float* bk = B + k * b_rs;
    const float* ak = A + k * a_ks;
    vf b[NVv];
#pragma GCC unroll 4
    for (int v = 0; v < NVv; ++v) b[v] = vld(bk + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      vf a = vset(ak[r * a_rs]);
#pragma GCC unroll 4
      for (int v = 0; v < NVv; ++v) c[r][v] = vfma(a, b[v], c[r][v]);
    }
  }
  if constexpr (M == kExpRow) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const vf lr = vset(rv[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NVv; ++v) c[r][v] = vexp2(vadd(vsub(c[r][v], lr), vld(cs + v * W)));
    }
  } else if constexpr (M == kDS) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const vf dr = vset(rv[r]);
#pragma GCC unroll 4
      for (int v = 0; v < NVv; ++v) c[r][v] = vmul(vld(cs + r * c_rs + v * W), vsub(c[r][v], dr));
    }
  } else if constexpr (M == kExpLazy) {
#pragma GCC unroll 4
    for (int v = 0; v < NVv; ++v) {
      const vf mr = vld(rv + v * W);
      vf sum = vzero();
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        c[r][v] = vexp2_finite(vsub(c[r][v], mr));
        sum = vadd(sum, c[r][v]);
      }
      vst(cs + v * W, vadd(vld(cs + v * W), sum));
    }
  } else if constexpr (M == kSetMax) {
#pragma GCC unroll 4
    for (int v = 0; v < NVv; ++v) {
      vf mx = vld(cs + v * W);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) mx = vmax(mx, c[r][v]);
      vst(cs + v * W, mx);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NVv; ++v) vst(C + r * c_rs + v * W, c[r][v]);
}

template <Mode M, int NVv, int R = MR - 1>
inline void ukr_tail(int rows, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                     int64_t b_rs, float* C, int64_t c_rs, float* cs, const float* rv) {
  if constexpr (R >= 1) {
    if (rows == R) return ukr<M, R, NVv>(K, A, a_rs, a_ks, B, b_rs, C, c_rs, cs, rv);
    ukr_tail<M, NVv, R - 1>(rows, K, A, a_rs, a_ks, B, b_rs, C, c_rs, cs, rv);
  }
}

template <Mode M, int NVv>
inline void bgemm_cols(int64_t Mr, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                       int64_t b_rs, float* C, int64_t c_rs, float* cs, const float* rv) {
  // kDS's cs is a matrix laid out like C; the other modes' cs is one value per column
  auto cs_at = [&](int64_t r) { return M == kDS ? cs + r * c_rs : cs; };
  // rv is one value per row, except kExpLazy's (one per column, offset by bgemm)
  auto rv_at = [&](int64_t r) { return rv && M != kExpLazy ? rv + r : rv; };
  int64_t r = 0;
  for (; r + MR <= Mr; r += MR)
    ukr<M, MR, NVv>(K, A + r * a_rs, a_rs, a_ks, B, b_rs, C + r * c_rs, c_rs, cs_at(r), rv_at(r));
  if (r < Mr)
    ukr_tail<M, NVv>(static_cast<int>(Mr - r), K, A + r * a_rs, a_rs, a_ks, B, b_rs, C + r * c_rs, c_rs, cs_at(r),
                     rv_at(r));
}

// C (Mr x N, N a multiple of W) (+)= A (Mr x K, general strides) * B (K x N, rows b_rs apart).
// cs: kScaleAcc / kExpRow one value per column (length N), kDS a matrix laid out like C;
// rv (kExpRow, kDS): one value per row (length Mr); kExpLazy: one per column.
template <Mode M>
void bgemm(int64_t Mr, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
           int64_t b_rs, float* C, int64_t c_rs, float* cs = nullptr, const float* rv = nullptr) {
  auto rv_at = [&](int64_t c) { return rv && M == kExpLazy ? rv + c : rv; };
  int64_t c = 0;
  for (; c + NV * W <= N; c += NV * W)
    bgemm_cols<M, NV>(Mr, K, A, a_rs, a_ks, B + c, b_rs, C + c, c_rs, cs ? cs + c : nullptr, rv_at(c));
  if constexpr (NV > 2) {
    // short blocks (Nq or Nk < 64): two vectors per row still amortise the broadcasts
    for (; c + 2 * W <= N; c += 2 * W)
      bgemm_cols<M, 2>(Mr, K, A, a_rs, a_ks, B + c, b_rs, C + c, c_rs, cs ? cs + c : nullptr, rv_at(c));
  }
  for (; c < N; c += W)
    bgemm_cols<M, 1>(Mr, K, A, a_rs, a_ks, B + c, b_rs, C + c, c_rs, cs ? cs + c : nullptr, rv_at(c));
}

// ---- work partition -------------------------------------------------------------------
// Tasks t = bh * per_head + x, cost cost[x]. Contiguous ranges per thread with about
// equal total cost; bounds has nt + 1 entries.
void split_tasks(int64_t heads_total, const std::vector<int64_t>& cost, int nt, std::vector<int64_t>& bounds) {
  const int64_t per_head = static_cast<int64_t>(cost.size());
  std::vector<int64_t> prefix(per_head + 1, 0);
  for (int64_t x = 0; x < per_head; ++x) prefix[x + 1] = prefix[x] + cost[x];
  const int64_t head_cost = prefix[per_head];
  const int64_t total = head_cost * heads_total;
  const int64_t ntasks = heads_total * per_head;
  bounds.assign(nt + 1, ntasks);
  bounds[0] = 0;
  if (head_cost <= 0) {
    for (int t = 1; t < nt; ++t) bounds[t] = ntasks * t / nt;
    return;
  }
  for (int t = 1; t < nt; ++t) {
    // first task whose cost midpoint lies at or after t*total/nt
    const long double target = static_cast<long double>(total) * t / nt;
    int64_t bh = static_cast<int64_t>(target / head_cost);
    if (bh >= heads_total) { bounds[t] = ntasks; continue; }
    long double rem = target - static_cast<long double>(bh) * head_cost;
    int64_t x = 0;
    while (x < per_head && prefix[x] + cost[x] * 0.5L < rem) ++x;
    bounds[t] = bh * per_head + x;
  }
  for (int t = 1; t <= nt; ++t) bounds[t] = std::max(bounds[t], bounds[t - 1]);
}

// The ranges of split_tasks, each claimable by any thread: a thread works through its own
// range, then takes what is left of the others'. A thread that the host slows down (another
// process on its core) no longer holds up the whole call; on a quiet machine each thread
// does its own range, as before. Each task is claimed exactly once (fetch_add), so results
// do not depend on which thread ran a task as long as tasks are independent (the forward).
class ClaimableRanges {
 public:
  explicit ClaimableRanges(const std::vector<int64_t>& bounds)
      : n_(static_cast<int>(bounds.size()) - 1), r_(new Range[bounds.size() - 1]) {
    for (int t = 0; t < n_; ++t) {
      r_[t].next.store(bounds[t], std::memory_order_relaxed);
      r_[t].end = bounds[t + 1];
    }
  }
  // body(task, end): end is the end of the range the task came from (the next task of the
  // range, if < end, is likely this thread's next one)
  template <class Body>
  void run(int tid, Body&& body) {
    for (int x = 0; x < n_; ++x) {
      Range& r = r_[(tid + x) % n_];
      for (int64_t task; (task = r.next.fetch_add(1, std::memory_order_relaxed)) < r.end;) body(task, r.end);
    }
  }

 private:
  struct alignas(64) Range {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  int n_;
  std::unique_ptr<Range[]> r_;
};

// dst[i*d_rs + d*d_sd] += src[i*s_rs + d] for rows [r0, r1), d < D (a private dQ into dq)
inline void add_rows(float* dst, int64_t d_rs, int64_t d_sd, const float* src, int64_t s_rs, int64_t r0, int64_t r1,
                     int64_t D) {
  for (int64_t i = r0; i < r1; ++i)
    for (int64_t d = 0; d < D; ++d) dst[i * d_rs + d * d_sd] += src[i * s_rs + d];
}

struct Scratch {
  float* base = nullptr;
  explicit Scratch(size_t nfloats) : base(static_cast<float*>(fastnn::cpu_allocator::allocate(nfloats * sizeof(float)))) {}
  ~Scratch() { fastnn::cpu_allocator::release(base); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

#ifndef FASTNN_ATTN_BC
#define FASTNN_ATTN_BC 64
#endif
#ifndef FASTNN_ATTN_BRB
#define FASTNN_ATTN_BRB 128
#endif
#ifndef FASTNN_ATTN_BCB
#define FASTNN_ATTN_BCB 64
#endif
constexpr int64_t kBlockK = FASTNN_ATTN_BC;    // keys per forward block
constexpr int64_t kBlockKB = FASTNN_ATTN_BCB;  // keys per backward task
constexpr int64_t kBlockQB = FASTNN_ATTN_BRB;  // query rows per backward step
#ifndef FASTNN_ATTN_BQ
#define FASTNN_ATTN_BQ 64
#endif
constexpr int64_t kBlockQ = FASTNN_ATTN_BQ;  // query rows (lanes) per forward task

// The forward visits the keys in chunks once K and V of a head (8 * Nk * D bytes) exceed
// kChunkedAbove: then each chunk's K and V (kKeyChunkBytes) stay in L2 while kChunkQueryRows
// query rows go past them (groups of 128 / 256 / 512 / 1024 rows measured within noise at
// N = 4096, 1 thread; 256 keeps the unit a finished thread claims at ~3 ms, not ~11 ms).
// Tuned on a Xeon with 2 MiB of L2 per core (N = 4096 forward, 1 thread: 88.7 -> 94.4
// GFLOP/s). On the AMD Zen 5 (1 MiB of L2) the order does not matter: 1 thread, CPU time, chunks
// of 0 (off) / 256 / 512 / 1024 keys ran at 210 / 204 / 206 / 210 GFLOP/s (N = 2048) and
// 205 / 203 / 206 / 207 (N = 4096), within noise, so the thresholds stay as they are.
constexpr int64_t kChunkedAbove = int64_t{1} << 20;
constexpr int64_t kKeyChunkBytes = int64_t{512} << 10;
constexpr int64_t kChunkQueryRows = 256;

// Keys per forward visit, a multiple of bc; >= Nk means the plain order. request: the
// AttentionArgs knob (< 0 automatic, 0 never chunk, > 0 that many keys, rounded up to bc).
int64_t forward_key_chunk(int64_t request, int64_t NK, int64_t D, int64_t bc) {
  const int64_t whole = std::max(round_up(NK, bc), bc);
  if (request == 0) return whole;
  if (request > 0) return std::min(round_up(request, bc), whole);
  if (8 * NK * D <= kChunkedAbove) return whole;
  return std::max(kKeyChunkBytes / (8 * D) / bc * bc, bc);
}

}  // namespace

// =====================================================================================
void attention_forward(const AttentionArgs& a) {
  const int64_t B = a.batch, H = a.heads, NQ = a.nq, NK = a.nk, D = a.head_dim;
  if (B == 0 || H == 0 || NQ == 0) return;  // out and lse have no elements
  const int64_t off = NK - NQ;  // causal: key j visible from query i iff j <= i + off
  const int64_t br = std::min<int64_t>(kBlockQ, round_up(NQ, W));  // lanes per query block
  const int64_t bc = kBlockK;
  const int64_t nqb = (NQ + br - 1) / br;
  const float c2 = a.scale * kLog2e;
  const bool dropout = a.dropout_p > 0.0f;
  const float keep_scale = dropout ? 1.0f / (1.0f - a.dropout_p) : 1.0f;
  const uint32_t drop_threshold = detail_attention::dropout_threshold(a.dropout_p);

  auto key_end = [&](int64_t i0, int64_t ib) -> int64_t {
    if (!a.causal) return NK;
    return std::max<int64_t>(0, std::min<int64_t>(NK, i0 + ib + off));
  };
  std::vector<int64_t> cost(nqb);
  for (int64_t x = 0; x < nqb; ++x) {
    const int64_t i0 = x * br, ib = std::min(br, NQ - i0);
    cost[x] = (key_end(i0, ib) + bc - 1) / bc * (D + 8) + 1;
  }
  // Key-outer order for long key sequences: a unit of work is a group of query blocks of one
  // head; it visits the keys in chunks of kc, and every query block of the group takes the
  // chunk before the next chunk starts, its running O^T / m / l kept in the thread's scratch
  // between visits. Each query block still sees the key blocks in the same order with the
  // same state, so the result is bitwise that of the plain order (one chunk, one block).
  const int64_t kc = forward_key_chunk(a.key_chunk, NK, D, bc);
  const bool chunked = kc < NK;
  const int64_t group = chunked ? std::max<int64_t>(1, kChunkQueryRows / br) : 1;
  const int64_t ngroups = (nqb + group - 1) / group;
  // Within a head the units run from the last query group to the first: with causal masks
  // the last is the costliest, and a range that ends on a small unit leaves a thread that
  // finished its own range less to wait for (whole units are the claiming grain).
  std::vector<int64_t> unit_cost(ngroups, 0);
  for (int64_t x = 0; x < nqb; ++x) unit_cost[ngroups - 1 - x / group] += cost[x];
  const int64_t nunits = B * H * ngroups;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(fastnn::num_threads(), nunits)));
  std::vector<int64_t> bounds;
  split_tasks(B * H, unit_cost, nt, bounds);
  ClaimableRanges tasks(bounds);

  // per thread: Qt (D x br), S^T (bc x br), alpha, block max, block sum (br each), keep (bc
  // bytes), then per query block of a unit its state: O^T (D x br), m, l (br each)
  const int64_t state_floats = D * br + 2 * br;
  const int64_t per_thread = round_up(D * br + bc * br + 3 * br + bc / 4 + group * state_floats, 16);
  Scratch scratch(static_cast<size_t>(per_thread * nt));

#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    float* qt = scratch.base + tid * per_thread;
    float* st = qt + D * br;
    float* alpha = st + bc * br;
    float* mb = alpha + br;
    float* lb = mb + br;  // kExpLazy: the block sums
    uint8_t* keep = reinterpret_cast<uint8_t*>(lb + br);
    float* const state = lb + br + bc / 4;
    std::vector<char> m_sets(group);  // per query block: every lane has a finite running maximum
    auto first_block = [&](int64_t unit) { return (ngroups - 1 - unit % ngroups) * group; };
    auto q_rows = [&](int64_t bh, int64_t qb) { return a.q + bh / H * a.q_sb + bh % H * a.q_sh + qb * br * a.q_sn; };
    tasks.run(tid, [&](int64_t unit, int64_t range_end) {
      const int64_t bh = unit / ngroups, qb0 = first_block(unit), qb1 = std::min(nqb, qb0 + group);
      const int64_t b = bh / H, h = bh % H;
      const float* K = a.k + b * a.k_sb + h * a.k_sh;
      const float* V = a.v + b * a.v_sb + h * a.v_sh;
      const uint8_t* mask = a.key_padding_mask ? a.key_padding_mask + b * a.mask_sb : nullptr;
      // a query block with no visible key still takes one (empty) visit, which writes its zeros
      auto visits = [&](int64_t qb) {
        return std::max<int64_t>(1, (key_end(qb * br, std::min(br, NQ - qb * br)) + kc - 1) / kc);
      };
      int64_t nchunks = 0;
      for (int64_t qb = qb0; qb < qb1; ++qb) nchunks = std::max(nchunks, visits(qb));
      for (int64_t c = 0; c < nchunks; ++c)
        for (int64_t qb = qb0; qb < qb1; ++qb) {
          const int64_t nvis = visits(qb);
          if (c >= nvis) continue;
          float* ot = state + (qb - qb0) * state_floats;
          float* m = ot + D * br;
          float* l = m + br;
          const int64_t i0 = qb * br, ib = std::min(br, NQ - i0);
          const float* Q = a.q + b * a.q_sb + h * a.q_sh + i0 * a.q_sn;

          if (a.q_sd != 1 || !transpose_scaled(Q, a.q_sn, ib, D, qt, br, br, c2, nullptr)) {
            for (int64_t i = 0; i < ib; ++i)
              for (int64_t d = 0; d < D; ++d) qt[d * br + i] = Q[i * a.q_sn + d * a.q_sd] * c2;
            if (ib < br)
              for (int64_t d = 0; d < D; ++d) std::memset(qt + d * br + ib, 0, (br - ib) * sizeof(float));
          }
          if (c == 0) {
            for (int64_t x = 0; x < br; ++x) { m[x] = kNegInf; l[x] = 0.0f; }
            std::memset(ot, 0, D * br * sizeof(float));
            m_sets[qb - qb0] = 0;
          }
          bool m_set = m_sets[qb - qb0] != 0;  // every lane has a finite running maximum (after a clean block)

          const int64_t jend = key_end(i0, ib);
          const int64_t ja = c * kc, jz = std::min(jend, ja + kc);  // this visit's keys
          const bool last_visit = c == nvis - 1;
          // Over the last (up to 4) key blocks of a visit, prefetch the next visit's Q rows and,
          // on the query block's last visit, its O rows (written at the end: store misses there
          // stalled the transposed write-back, ~2 % of the forward).
          const int64_t nblk = (jz - ja + bc - 1) / bc, npf = std::min<int64_t>(nblk, 4);
          float* const O = a.out + b * a.o_sb + h * a.o_sh + i0 * a.o_sn;
          const float* Qn = nullptr;
          int64_t ibn = 0;
          if (a.q_sd == 1) {
            int64_t bhn = bh, qbn = qb + 1;
            if (qbn == qb1) qbn = c + 1 < nchunks ? qb0 : -1;
            if (qbn < 0 && unit + 1 < range_end) bhn = (unit + 1) / ngroups, qbn = first_block(unit + 1);
            if (qbn >= 0) Qn = q_rows(bhn, qbn), ibn = std::min(br, NQ - qbn * br);
          }
          for (int64_t j0 = ja; j0 < jz; j0 += bc) {
            const int64_t jb = std::min(bc, jz - j0);
            if (const int64_t t = (j0 - ja) / bc - (nblk - npf); t >= 0) {
              if (a.o_sd == 1 && last_visit) prefetch_rows<true>(O, a.o_sn, ib * t / npf, ib * (t + 1) / npf, D * 4);
              if (Qn) prefetch_rows<false>(Qn, a.q_sn, ibn * t / npf, ibn * (t + 1) / npf, D * 4);
            }
            if (mask) {
              int64_t nmasked = 0;
              for (int64_t j = 0; j < jb; ++j) nmasked += mask[(j0 + j) * a.mask_sn] != 0;
              if (nmasked == jb) continue;  // contributes nothing to any row
            }
            // a block with no masked key takes its maximum in the microkernel; the others
            // take it below, after the masked scores are set to -inf
            const bool clean = !mask && !(a.causal && j0 + jb - 1 > i0 + off);
            bool lazy = clean && m_set;
            if (lazy) {
              std::memset(lb, 0, br * sizeof(float));
              bgemm<kExpLazy>(jb, br, D, K + j0 * a.k_sn, a.k_sn, a.k_sd, qt, br, st, br, lb, m);
              for (int64_t x = 0; x < br && lazy; x += W) lazy = vall_le(vld(lb + x), vset(kLazySum));
              if (lazy)
                for (int64_t x = 0; x < br; x += W) vst(l + x, vadd(vld(l + x), vld(lb + x)));
            }
            if (!lazy) {  // the exact running maximum, then P^T = exp2(S^T - m) in a pass
              m_set = m_set || clean;
              if (clean) {
                std::memcpy(mb, m, br * sizeof(float));
                bgemm<kSetMax>(jb, br, D, K + j0 * a.k_sn, a.k_sn, a.k_sd, qt, br, st, br, mb);
              } else {
                bgemm<kSet>(jb, br, D, K + j0 * a.k_sn, a.k_sn, a.k_sd, qt, br, st, br);
              }
              if (mask) {
                for (int64_t j = 0; j < jb; ++j)
                  if (mask[(j0 + j) * a.mask_sn])
                    for (int64_t x = 0; x < br; x += W) vst(st + j * br + x, vset(kNegInf));
              }
              if (a.causal && j0 + jb - 1 > i0 + off) {
                // key jg is visible from lanes with i0 + lane + off >= jg, i.e. lane >= jg - off - i0
                for (int64_t j = 0; j < jb; ++j) {
                  const int64_t thr = j0 + j - off - i0;
                  if (thr <= 0) continue;
                  const int t = static_cast<int>(std::min<int64_t>(thr, br));
                  for (int64_t x = 0; x < br; x += W) {
                    float* sp = st + j * br + x;
                    vst(sp, vsel_lt(static_cast<int>(x), t, vset(kNegInf), vld(sp)));
                  }
                }
              }
              // online softmax, base 2, vertically over the jb keys
              for (int64_t x = 0; x < br; x += W) {
                const vf mold = vld(m + x);
                vf mx;
                int64_t j = 0;
                if (clean) {
                  mx = vld(mb + x);
                } else {
                  // four independent max / sum chains: a single chain is bound by the 4-cycle
                  // latency of vmaxps / vaddps
                  vf m0 = mold, m1 = mold, m2 = mold, m3 = mold;
                  for (; j + 4 <= jb; j += 4) {
                    const float* p = st + j * br + x;
                    m0 = vmax(m0, vld(p));
                    m1 = vmax(m1, vld(p + br));
                    m2 = vmax(m2, vld(p + 2 * br));
                    m3 = vmax(m3, vld(p + 3 * br));
                  }
                  for (; j < jb; ++j) m0 = vmax(m0, vld(st + j * br + x));
                  mx = vmax(vmax(m0, m1), vmax(m2, m3));
                }
                // a lane that has seen only masked keys keeps a finite stand-in maximum, so
                // that exp2(-inf - m) = 0 instead of NaN
                mx = vmax(mx, vset(-FLT_MAX));
                const vf al = vexp2(vsub(mold, mx));
                vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
                for (j = 0; j + 4 <= jb; j += 4) {
                  float* p = st + j * br + x;
                  const vf e0 = vexp2(vsub(vld(p), mx));
                  const vf e1 = vexp2(vsub(vld(p + br), mx));
                  const vf e2 = vexp2(vsub(vld(p + 2 * br), mx));
                  const vf e3 = vexp2(vsub(vld(p + 3 * br), mx));
                  vst(p, e0);
                  vst(p + br, e1);
                  vst(p + 2 * br, e2);
                  vst(p + 3 * br, e3);
                  s0 = vadd(s0, e0);
                  s1 = vadd(s1, e1);
                  s2 = vadd(s2, e2);
                  s3 = vadd(s3, e3);
                }
                for (; j < jb; ++j) {
                  float* p = st + j * br + x;
                  const vf e0 = vexp2(vsub(vld(p), mx));
                  vst(p, e0);
                  s0 = vadd(s0, e0);
                }
                s0 = vadd(s0, s2);
                s1 = vadd(s1, s3);
                vst(l + x, vfma(vld(l + x), al, vadd(s0, s1)));
                vst(m + x, mx);
                vst(alpha + x, al);
              }
            }
            if (dropout) {
              // element index ((b*H + h)*Nq + i)*Nk + j; the kept values are rescaled at the end
              const uint64_t row0 = static_cast<uint64_t>(bh * NQ + i0);
              for (int64_t i = 0; i < ib; ++i) {
                detail_attention::dropout_keep_run(a.seed, a.offset, (row0 + i) * NK + j0, jb, drop_threshold, keep);
                for (int64_t j = 0; j < jb; ++j)
                  if (!keep[j]) st[j * br + i] = 0.0f;
              }
            }
            // O^T = O^T * alpha + V^T P^T (alpha = 1 after a lazy block)
            if (lazy)
              bgemm<kAcc>(D, br, jb, V + j0 * a.v_sn, a.v_sd, a.v_sn, st, br, ot, br);
            else
              bgemm<kScaleAcc>(D, br, jb, V + j0 * a.v_sn, a.v_sd, a.v_sn, st, br, ot, br, alpha);
          }
          m_sets[qb - qb0] = m_set;
          if (!last_visit) continue;
          float* inv = alpha;  // free now: 1/l per row
          for (int64_t i = 0; i < ib; ++i) {
            const float li = l[i];
            inv[i] = li > 0.0f ? keep_scale / li : 0.0f;
            if (a.lse)
              a.lse[b * a.lse_sb + h * a.lse_sh + (i0 + i) * a.lse_sn] =
                  li > 0.0f ? (m[i] + std::log2(li)) * kLn2 : kNegInf;
          }
          if (a.o_sd != 1 || !transpose_scaled(ot, br, D, ib, O, a.o_sn, D, 1.0f, inv)) {
            for (int64_t i = 0; i < ib; ++i)
              for (int64_t d = 0; d < D; ++d) O[i * a.o_sn + d * a.o_sd] = ot[d * br + i] * inv[i];
          }
        }
    });
  }
}

// =====================================================================================
void attention_backward(const AttentionArgs& a) {
  const int64_t B = a.batch, H = a.heads, NQ = a.nq, NK = a.nk, D = a.head_dim;
  if (B == 0 || H == 0) return;
  const int64_t off = NK - NQ;
  const float c2 = a.scale * kLog2e;
  const bool dropout = a.dropout_p > 0.0f;
  const float keep_scale = dropout ? 1.0f / (1.0f - a.dropout_p) : 1.0f;
  const uint32_t drop_threshold = detail_attention::dropout_threshold(a.dropout_p);
  const int nthreads = fastnn::num_threads();

  // ---- pass 1: lse2 = lse*log2(e) (+inf for fully masked rows, so P = 0 there),
  //      Di = rowsum(dO * O), dq = 0
  const int64_t rows = B * H * NQ;
  Scratch rowbuf(static_cast<size_t>(std::max<int64_t>(2 * rows, 1)));
  float* lse2 = rowbuf.base;
  float* Di = rowbuf.base + rows;
  {
    const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, rows / 256 + 1)));
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t bh = r / std::max<int64_t>(NQ, 1), i = r % std::max<int64_t>(NQ, 1);
      const int64_t b = bh / H, h = bh % H;
      const float ls = a.lse[b * a.lse_sb + h * a.lse_sh + i * a.lse_sn];
      lse2[r] = ls == kNegInf ? INFINITY : ls * kLog2e;
      const float* go = a.grad_out + b * a.go_sb + h * a.go_sh + i * a.go_sn;
      const float* o = a.out + b * a.o_sb + h * a.o_sh + i * a.o_sn;
      float* dq = a.dq + b * a.dq_sb + h * a.dq_sh + i * a.dq_sn;
      float acc = 0.0f;
      int64_t d = 0;
      if (a.go_sd == 1 && a.o_sd == 1) {
        // vector partial sums: the scalar chain is bound by the add latency
        vf s = vzero();
        for (; d + W <= D; d += W) s = vfma(vld(go + d), vld(o + d), s);
        alignas(64) float part[W];
        vst(part, s);
        for (int x = 0; x < W; ++x) acc += part[x];
      }
      for (; d < D; ++d) acc += go[d * a.go_sd] * o[d * a.o_sd];
      for (d = 0; d < D; ++d) dq[d * a.dq_sd] = 0.0f;
      Di[r] = acc;
    }
  }
  if (NK == 0) return;  // dk, dv have no elements; dq is zero

  // ---- pass 2: one task per (b, h, key block)
  const int64_t bcb = std::min<int64_t>(kBlockKB, round_up(NK, W));  // lanes per key block
  const int64_t brb = kBlockQB;                                     // query rows per step
  const int64_t nkb = (NK + bcb - 1) / bcb;
  const int64_t Dp = round_up(std::max<int64_t>(D, 1), W);
  auto row_start = [&](int64_t j0) -> int64_t {
    return a.causal ? std::min<int64_t>(NQ, std::max<int64_t>(0, j0 - off)) : 0;
  };
  std::vector<int64_t> cost(nkb);
  for (int64_t x = 0; x < nkb; ++x) cost[x] = (NQ - row_start(x * bcb)) * (D + 4) + D + 1;
  const int64_t ntasks = B * H * nkb;
  const int nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, ntasks)));
  std::vector<int64_t> bounds;
  split_tasks(B * H, cost, nt, bounds);
  // Claimable units: the pieces of each range within one head (segment s = tasks [cut[s],
  // cut[s + 1])), each accumulating dQ over its key blocks in a private buffer. A segment that
  // covers a whole head adds that buffer into the (zeroed) dq rows of the head at its end: the
  // head's only writer. A head split between ranges keeps each piece's buffer (a slot, at most
  // 2 (nt - 1) of them) until every thread is done, then the slots are added into dq in
  // segment order: the sum order depends on the split (shape, thread count) only, never on
  // timing or on which thread claimed a piece.
  std::vector<int64_t> cut, seg_bounds(nt + 1);
  for (int r = 0; r < nt; ++r) {
    seg_bounds[r] = static_cast<int64_t>(cut.size());
    for (int64_t t = bounds[r]; t < bounds[r + 1]; t = std::min(bounds[r + 1], (t / nkb + 1) * nkb)) cut.push_back(t);
  }
  seg_bounds[nt] = static_cast<int64_t>(cut.size());
  const int64_t nseg = static_cast<int64_t>(cut.size());
  cut.push_back(ntasks);
  ClaimableRanges segments(seg_bounds);
  std::vector<int64_t> slot_of(nseg, -1);  // split segments: their slot, in segment order
  std::vector<int64_t> split_heads;        // per split head: its segments [first, end)
  int64_t nslots = 0;
  for (int64_t s = 0; s < nseg; ++s) {
    if (cut[s] % nkb == 0 && cut[s + 1] - cut[s] == nkb) continue;  // a whole head
    if (split_heads.empty() || cut[split_heads[split_heads.size() - 2]] / nkb != cut[s] / nkb) {
      split_heads.push_back(s);
      split_heads.push_back(s + 1);
    }
    split_heads.back() = s + 1;  // a head's pieces are consecutive segments
    slot_of[s] = nslots++;
  }
  // reduction items: (split head, block of 64 dq rows)
  const int64_t rblk = 64, nrblk = (NQ + rblk - 1) / rblk;
  const int64_t nitems = static_cast<int64_t>(split_heads.size() / 2) * nrblk;

  // per thread: Kt, Vt, dKt, dVt (D x bcb), Kp (bcb x Dp), bias (bcb), P, dP, Pd, Z (brb x bcb),
  // keep (bcb bytes), dQ private (NQ x Dp); then the slots (NQ x Dp each) and their first rows
  const int64_t per_thread = round_up(4 * D * bcb + bcb * Dp + bcb + 4 * brb * bcb + bcb / 4 + NQ * Dp, 16);
  Scratch scratch(static_cast<size_t>(per_thread * nt + nslots * NQ * Dp));
  float* const slots = scratch.base + per_thread * nt;
  std::vector<int64_t> slot_lo(nslots, NQ);

#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    float* kt = scratch.base + tid * per_thread;
    float* vt = kt + D * bcb;
    float* dkt = vt + D * bcb;
    float* dvt = dkt + D * bcb;
    float* kp = dvt + D * bcb;
    float* bias = kp + bcb * Dp;
    float* P = bias + bcb;
    float* dP = P + brb * bcb;
    float* Pd = dP + brb * bcb;
    float* Z = Pd + brb * bcb;
    uint8_t* keep = reinterpret_cast<uint8_t*>(Z + brb * bcb);
    float* const dq_own = Z + brb * bcb + bcb / 4;

    segments.run(tid, [&](int64_t seg, int64_t) {
    float* const dqp = slot_of[seg] >= 0 ? slots + slot_of[seg] * NQ * Dp : dq_own;
    int64_t row_lo = NQ;  // rows [row_lo, NQ) of dqp are in use
    for (int64_t task = cut[seg]; task < cut[seg + 1]; ++task) {
      const int64_t bh = task / nkb, kb = task % nkb;
      const int64_t b = bh / H, h = bh % H;
      const int64_t j0 = kb * bcb, jb = std::min(bcb, NK - j0);
      const float* Q = a.q + b * a.q_sb + h * a.q_sh;
      const float* K = a.k + b * a.k_sb + h * a.k_sh + j0 * a.k_sn;
      const float* V = a.v + b * a.v_sb + h * a.v_sh + j0 * a.v_sn;
      const float* GO = a.grad_out + b * a.go_sb + h * a.go_sh;
      const uint8_t* mask = a.key_padding_mask ? a.key_padding_mask + b * a.mask_sb : nullptr;
      float* dK = a.dk + b * a.dk_sb + h * a.dk_sh + j0 * a.dk_sn;
      float* dV = a.dv + b * a.dv_sb + h * a.dv_sh + j0 * a.dv_sn;

      const int64_t i_start = row_start(j0);
      if (i_start < row_lo) {
        // rows [i_start, row_lo) of the private dQ start being used
        std::memset(dqp + i_start * Dp, 0, (row_lo - i_start) * Dp * sizeof(float));
        row_lo = i_start;
      }

      int64_t nlive = 0;
      for (int64_t j = 0; j < bcb; ++j) {
        const bool dead = j >= jb || (mask && mask[(j0 + j) * a.mask_sn]);
        bias[j] = dead ? kNegInf : 0.0f;
        nlive += !dead;
      }
      if (nlive == 0 || i_start >= NQ) {
        for (int64_t j = 0; j < jb; ++j)
          for (int64_t d = 0; d < D; ++d) dK[j * a.dk_sn + d * a.dk_sd] = dV[j * a.dv_sn + d * a.dv_sd] = 0.0f;
        continue;
      }
      if (a.k_sd == 1 && a.v_sd == 1 && transpose_scaled(K, a.k_sn, jb, D, kt, bcb, bcb, c2, nullptr)) {
        transpose_scaled(V, a.v_sn, jb, D, vt, bcb, bcb, 1.0f, nullptr);
        for (int64_t j = 0; j < jb; ++j) {
          const float* kr = K + j * a.k_sn;
          for (int64_t d = 0; d < D; ++d) kp[j * Dp + d] = kr[d] * a.scale;
          for (int64_t d = D; d < Dp; ++d) kp[j * Dp + d] = 0.0f;
        }
        if (jb < bcb) std::memset(kp + jb * Dp, 0, (bcb - jb) * Dp * sizeof(float));
      } else {
        for (int64_t j = 0; j < bcb; ++j) {
          if (j < jb) {
            for (int64_t d = 0; d < D; ++d) {
              const float kv = K[j * a.k_sn + d * a.k_sd];
              kt[d * bcb + j] = kv * c2;
              kp[j * Dp + d] = kv * a.scale;
              vt[d * bcb + j] = V[j * a.v_sn + d * a.v_sd];
            }
            for (int64_t d = D; d < Dp; ++d) kp[j * Dp + d] = 0.0f;
          } else {
            for (int64_t d = 0; d < D; ++d) kt[d * bcb + j] = vt[d * bcb + j] = 0.0f;
            for (int64_t d = 0; d < Dp; ++d) kp[j * Dp + d] = 0.0f;
          }
        }
      }
      std::memset(dkt, 0, 2 * D * bcb * sizeof(float));  // dkt and dvt are adjacent

      for (int64_t i0 = i_start; i0 < NQ; i0 += brb) {
        const int64_t ib = std::min(brb, NQ - i0);
        const float* Qi = Q + i0 * a.q_sn;
        const float* GOi = GO + i0 * a.go_sn;
        const float* l2 = lse2 + bh * NQ + i0;
        const float* di = Di + bh * NQ + i0;
        // P = exp2(Q Kt - lse2 + bias); causal: the keys past the diagonal are zeroed after
        bgemm<kExpRow>(ib, bcb, D, Qi, a.q_sn, a.q_sd, kt, bcb, P, bcb, bias, l2);
        if (a.causal && j0 + jb - 1 > i0 + off) {
          for (int64_t i = 0; i < ib; ++i) {
            // lanes j with j0 + j <= i0 + i + off stay visible
            const int64_t thr = std::max<int64_t>(0, std::min<int64_t>(bcb, i0 + i + off - j0 + 1));
            std::memset(P + i * bcb + thr, 0, (bcb - thr) * sizeof(float));
          }
        }
        const float* Pv = P;
        if (dropout) {
          // Z = keep / (1 - p) per element; Pd = P * Z multiplied V in the forward pass
          const uint64_t row0 = static_cast<uint64_t>(bh * NQ + i0);
          for (int64_t i = 0; i < ib; ++i) {
            detail_attention::dropout_keep_run(a.seed, a.offset, (row0 + i) * NK + j0, jb, drop_threshold, keep);
            for (int64_t j = 0; j < bcb; ++j) {
              const float z = j < jb && keep[j] ? keep_scale : 0.0f;
              Z[i * bcb + j] = z;
              Pd[i * bcb + j] = P[i * bcb + j] * z;
            }
          }
          Pv = Pd;
        }
        // dV^T (D x bcb) += dO^T P_drop
        bgemm<kAcc>(D, bcb, ib, GOi, a.go_sd, a.go_sn, Pv, bcb, dvt, bcb);
        if (!dropout) {
          // dS = P * (dO Vt - Di)
          bgemm<kDS>(ib, bcb, D, GOi, a.go_sn, a.go_sd, vt, bcb, dP, bcb, P, di);
        } else {
          // dP = dO Vt, then dS = P * (dP * Z - Di) in place
          bgemm<kSet>(ib, bcb, D, GOi, a.go_sn, a.go_sd, vt, bcb, dP, bcb);
          for (int64_t i = 0; i < ib; ++i) {
            const vf dvi = vset(di[i]);
            for (int64_t x = 0; x < bcb; x += W) {
              const vf g = vmul(vld(dP + i * bcb + x), vld(Z + i * bcb + x));
              vst(dP + i * bcb + x, vmul(vld(P + i * bcb + x), vsub(g, dvi)));
            }
          }
        }
        // dK^T (D x bcb) += Q^T dS
        bgemm<kAcc>(D, bcb, ib, Qi, a.q_sd, a.q_sn, dP, bcb, dkt, bcb);
        // dQ (ib x Dp) += dS K*scale
        bgemm<kAcc>(ib, Dp, jb, dP, bcb, 1, kp, Dp, dqp + i0 * Dp, Dp);
      }
      if (a.dk_sd == 1 && a.dv_sd == 1 && transpose_scaled(dkt, bcb, D, jb, dK, a.dk_sn, D, a.scale, nullptr)) {
        transpose_scaled(dvt, bcb, D, jb, dV, a.dv_sn, D, 1.0f, nullptr);
      } else {
        for (int64_t j = 0; j < jb; ++j)
          for (int64_t d = 0; d < D; ++d) {
            dK[j * a.dk_sn + d * a.dk_sd] = dkt[d * bcb + j] * a.scale;
            dV[j * a.dv_sn + d * a.dv_sd] = dvt[d * bcb + j];
          }
      }
    }
    if (slot_of[seg] >= 0) {
      slot_lo[slot_of[seg]] = row_lo;  // read after the barrier
    } else if (row_lo < NQ) {
      const int64_t bh = cut[seg] / nkb;
      add_rows(a.dq + bh / H * a.dq_sb + bh % H * a.dq_sh, a.dq_sn, a.dq_sd, dqp, Dp, row_lo, NQ, D);
    }
    });
    if (nitems > 0) {
#pragma omp barrier
#pragma omp for schedule(static)
      for (int64_t it = 0; it < nitems; ++it) {
        const int64_t x = it / nrblk, r0 = it % nrblk * rblk, r1 = std::min(NQ, r0 + rblk);
        const int64_t s0 = split_heads[2 * x], s1 = split_heads[2 * x + 1];
        const int64_t bh = cut[s0] / nkb;
        float* dq = a.dq + bh / H * a.dq_sb + bh % H * a.dq_sh;
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t sl = slot_of[s];
          add_rows(dq, a.dq_sn, a.dq_sd, slots + sl * NQ * Dp, Dp, std::max(r0, slot_lo[sl]), r1, D);
        }
      }
    }
  }
}

#include "cpu/isa_end.h"
