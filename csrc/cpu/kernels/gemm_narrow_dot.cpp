// Narrow GEMM (n <= 12 output columns, e.g. an MLP's 64 x 128 x 10 classifier head) as dot
// products: C(i, j) = A(i, :) . B(:, j), A's rows read in place (unit column stride).
//
// Why: the 12 x 32 microkernel's vectors run along n, so with n = 10 it uses 10 of 16 lanes
// and pays one A broadcast per FMA; computing C^T = B^T A^T instead fills the lanes but must
// transpose A first (16 x 16 register transposes: ~40 % of a 64 x 128 x 10 product). Here
// the vectors run along k: nothing of A is moved, B (k x n, tiny) is packed once.
//
// Layout: B is packed as column pairs, 8 k values at a time, chunk-major:
//   bp[(c * P + q) * 16 + h * 8 + l] = B(8c + l, 2q + h)   (P = ceil(n / 2) pairs; zero padded)
// so one 16-lane FMA of an A chunk broadcast to both halves (A(i, 8c .. 8c+8), a load-port
// vbroadcastf32x8) against pair q accumulates 8 partial sums for each of C(i, 2q) and
// C(i, 2q+1). Register tile: 4 rows x P pairs (<= 24 accumulators); per 8 k values 4 + P
// loads and 4P FMAs: FMA bound for P >= 2 (n = 1..2 is a matrix-vector product, load bound).
// At the end of k each accumulator holds 2 x 8 partial sums: 8 accumulators reduce to one
// vector of 16 sums in 3 fold stages (blend, blend, shuffle, add per pair of vectors) plus one
// permute, ~1 cycle per output beside k/16 cycles of FMAs per output (k = 128: ~12 %).
// Summation order: 8 interleaved partial sums over k, then a pairwise tree; the error bound is
// the usual k * eps * sum |a||b| (the tests check against float64).
// Threads share the 4-row blocks (own share first, then stealing); every element is computed
// the same way whatever the thread count, the thread that takes it or the strides of C (same bits).
// Bound: FMA (compute) for n >= 4 and k >~ 64; reading A once (m * k floats) otherwise.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "fastnn/activation.h"
#include "fastnn/allocator.h"
#include "fastnn/gemm.h"

#include "cpu/parallel.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/gemm_microkernel.h"
#if FASTNN_ISA_LEVEL == 2
#include "cpu/kernels/gemm_epilogue.h"
#include "cpu/kernels/gemm_narrow_dot.h"

// GCC 12 false positive: _mm512_undefined_ps() inside the broadcast / shuffle intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

constexpr int kRows = 4;                       // A rows per register tile
constexpr int kMaxPairs = kNarrowDotMaxN / 2;  // 6
constexpr int64_t kStackK = 1024;              // packed B on the stack up to here (48 KiB)
constexpr int kMaxThreads = 64;                // as the driver (gemm_run)

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The 8 rows of a row-major B chunk (r[l] = B(8c + l, 0..16), zero beyond k and n) into the
// 8 pair vectors out + 16 q (q < pairs): an 8 x 8 transpose of 64-bit units (column pairs)
// in three shuffle stages, then one permute per pair from (l, h)-interleaved to h-major order.
// 30 shuffles per 8 rows instead of one 16-lane gather per pair.
inline void transpose_chunk(const __m512* r, int64_t pairs, float* out) {
  __m512d t[8], s[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_pd(_mm512_castps_pd(r[2 * i]), _mm512_castps_pd(r[2 * i + 1]));
    t[2 * i + 1] = _mm512_unpackhi_pd(_mm512_castps_pd(r[2 * i]), _mm512_castps_pd(r[2 * i + 1]));
  }
#pragma GCC unroll 2
  for (int i = 0; i < 2; ++i) {  // s[4i + x]: rows 4i .. 4i+3, units {x, x + 4} (x = 0..3)
    s[4 * i + 0] = _mm512_shuffle_f64x2(t[4 * i], t[4 * i + 2], 0x88);
    s[4 * i + 1] = _mm512_shuffle_f64x2(t[4 * i + 1], t[4 * i + 3], 0x88);
    s[4 * i + 2] = _mm512_shuffle_f64x2(t[4 * i], t[4 * i + 2], 0xDD);
    s[4 * i + 3] = _mm512_shuffle_f64x2(t[4 * i + 1], t[4 * i + 3], 0xDD);
  }
  const __m512i h_major = _mm512_set_epi32(15, 13, 11, 9, 7, 5, 3, 1, 14, 12, 10, 8, 6, 4, 2, 0);
#pragma GCC unroll 4
  for (int x = 0; x < 4; ++x) {
    const __m512d lo = _mm512_shuffle_f64x2(s[x], s[4 + x], 0x88);  // unit x of rows 0..7
    const __m512d hi = _mm512_shuffle_f64x2(s[x], s[4 + x], 0xDD);  // unit x + 4
    if (x < pairs) _mm512_storeu_ps(out + 16 * x, _mm512_permutexvar_ps(h_major, _mm512_castpd_ps(lo)));
    if (x + 4 < pairs) _mm512_storeu_ps(out + 16 * (x + 4), _mm512_permutexvar_ps(h_major, _mm512_castpd_ps(hi)));
  }
}

// B (k x n, element (p, j) at b[p*rs + j*cs]) into the pair layout above (kp = 8 * chunks rows).
void pack_b_pairs(int64_t k, int64_t n, const float* b, int64_t rs, int64_t cs, float* out) {
  const int64_t pairs = cdiv(n, 2), chunks = cdiv(k, 8);
  const bool gather = rs != 1 && 8 * (rs < 0 ? -rs : rs) + 2 * (cs < 0 ? -cs : cs) < (int64_t(1) << 28);
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i half = _mm512_srli_epi32(lane, 3), row = _mm512_and_si512(lane, _mm512_set1_epi32(7));
  // Lane h*8 + l reads B(8c + l, 2q + h): offset l*rs + h*cs from the chunk's first element.
  const __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(row, _mm512_set1_epi32(static_cast<int32_t>(gather ? rs : 0))),
                                       _mm512_mullo_epi32(half, _mm512_set1_epi32(static_cast<int32_t>(gather ? cs : 0))));
  if (cs == 1 && rs != 1) {  // row-major B (a matmul's right operand): transposed 8 rows at a time
    const __mmask16 cols = static_cast<__mmask16>((1u << n) - 1u);
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t kv = std::min<int64_t>(8, k - 8 * c);
      __m512 r[8];
#pragma GCC unroll 8
      for (int l = 0; l < 8; ++l) r[l] = l < kv ? _mm512_maskz_loadu_ps(cols, b + (8 * c + l) * rs) : _mm512_setzero_ps();
      transpose_chunk(r, pairs, out + c * pairs * 16);
    }
    return;
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t kv = std::min<int64_t>(8, k - 8 * c);
    for (int64_t q = 0; q < pairs; ++q) {
      float* o = out + (c * pairs + q) * 16;
      const int64_t nv = std::min<int64_t>(2, n - 2 * q);
      const __mmask16 rows_ok = static_cast<__mmask16>((1u << kv) - 1u);
      const __mmask16 mask = static_cast<__mmask16>(rows_ok | (nv == 2 ? rows_ok << 8 : 0));
      const float* src = b + 8 * c * rs + 2 * q * cs;
      if (rs == 1) {  // B^T rows contiguous (linear's weight): two masked 8-float copies
        const __m256 lo = _mm256_maskz_loadu_ps(static_cast<__mmask8>(rows_ok), src);
        const __m256 hi = nv == 2 ? _mm256_maskz_loadu_ps(static_cast<__mmask8>(rows_ok), src + cs)
                                  : _mm256_setzero_ps();
        _mm512_storeu_ps(o, _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
      } else if (gather) {
        _mm512_storeu_ps(o, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, idx, src, 4));
      } else {
        for (int h = 0; h < 2; ++h)
          for (int l = 0; l < 8; ++l) o[h * 8 + l] = h < nv && l < kv ? src[l * rs + h * cs] : 0.0f;
      }
    }
  }
}

// One fold stage on a pair of vectors, width W lanes: within each group of 2W lanes, the
// result's first W lanes are a's two halves added, the next W lanes b's.
template <int W>
inline __m512 fold(__m512 a, __m512 b) {
  if constexpr (W == 4) {
    const __m512 x = _mm512_mask_blend_ps(0xF0F0, a, b);  // a0 b1 a2 b3 (128-bit blocks)
    const __m512 t = _mm512_mask_blend_ps(0x0F0F, a, b);  // b0 a1 b2 a3
    return _mm512_add_ps(x, _mm512_shuffle_f32x4(t, t, 0xB1));
  } else if constexpr (W == 2) {
    const __m512 x = _mm512_mask_blend_ps(0xCCCC, a, b);
    const __m512 t = _mm512_mask_blend_ps(0x3333, a, b);
    return _mm512_add_ps(x, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
  } else {
    const __m512 x = _mm512_mask_blend_ps(0xAAAA, a, b);
    const __m512 t = _mm512_mask_blend_ps(0x5555, a, b);
    return _mm512_add_ps(x, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
  }
}

// 8 accumulators of 2 x 8 partial sums (v[i]: lanes 0-7 output 2i, lanes 8-15 output 2i+1)
// -> the 16 sums in order. After the three folds lane l holds output bitreverse4(l).
inline __m512 reduce8(const __m512* v) {
  const __m512 s0 = fold<4>(v[0], v[1]), s1 = fold<4>(v[2], v[3]);
  const __m512 s2 = fold<4>(v[4], v[5]), s3 = fold<4>(v[6], v[7]);
  const __m512 u = fold<1>(fold<2>(s0, s1), fold<2>(s2, s3));
  const __m512i bitrev = _mm512_set_epi32(15, 7, 11, 3, 13, 5, 9, 1, 14, 6, 10, 2, 12, 4, 8, 0);
  return _mm512_permutexvar_ps(bitrev, u);
}

// Rows [0, R) of C = A B for all n (<= 2P) columns: A row r at a + r*lda, B packed by pairs.
template <int R, int P>
void dot_rows(int64_t k, const float* a, int64_t lda, const float* bp, float* c, int64_t c_rs, int64_t c_cs,
              int64_t n, const GemmEpilogue& ep) {
  __m512 acc[R][P];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 6
    for (int q = 0; q < P; ++q) acc[r][q] = _mm512_setzero_ps();
  const int64_t full = k / 8;
  const float* ap = a;
  for (int64_t ch = 0; ch < full; ++ch) {
    __m512 av[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) av[r] = _mm512_broadcast_f32x8(_mm256_loadu_ps(ap + r * lda));
#pragma GCC unroll 6
    for (int q = 0; q < P; ++q) {
      const __m512 bv = _mm512_loadu_ps(bp + q * 16);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][q] = _mm512_fmadd_ps(av[r], bv, acc[r][q]);
    }
    ap += 8;
    bp += P * 16;
  }
  if (k > full * 8) {  // the last k % 8 values: A zero-masked (B is zero-padded)
    const __mmask8 mk = static_cast<__mmask8>((1u << (k - full * 8)) - 1u);
    __m512 av[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) av[r] = _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(mk, ap + r * lda));
#pragma GCC unroll 6
    for (int q = 0; q < P; ++q) {
      const __m512 bv = _mm512_loadu_ps(bp + q * 16);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][q] = _mm512_fmadd_ps(av[r], bv, acc[r][q]);
    }
  }
  // Sums: o[r * 2P + j] = C(r, j) before the epilogue (16 floats of slack for the reads below).
  constexpr int kVecs = R * P, kGroups = (kVecs + 7) / 8;
  alignas(64) float o[kGroups * 16 + 16];
#pragma GCC unroll 3
  for (int g = 0; g < kGroups; ++g) {
    __m512 v[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const int x = g * 8 + i;
      v[i] = x < kVecs ? acc[x / P][x % P] : _mm512_setzero_ps();
    }
    _mm512_store_ps(o + g * 16, reduce8(v));
  }
  if (c_cs == 1) {
    const __mmask16 mn = static_cast<__mmask16>((1u << n) - 1u);
    const __m512 bc = ep.bias_col ? _mm512_maskz_loadu_ps(mn, ep.bias_col) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m512 br = ep.bias_row ? _mm512_set1_ps(ep.bias_row[r]) : _mm512_setzero_ps();
      float* crow = c + r * c_rs;
      const __m512 old = ep.beta != 0.0f ? _mm512_maskz_loadu_ps(mn, crow) : _mm512_setzero_ps();
      const gemm_vf res = gemm_epilogue_vec((gemm_vf)_mm512_maskz_loadu_ps(mn, o + r * 2 * P), (gemm_vf)old,
                                            (gemm_vf)(bc + br), ep);
      _mm512_mask_storeu_ps(crow, mn, (__m512)res);
    }
  } else {
    gemm_epilogue_tile(o, 2 * P, R, n, c, c_rs, c_cs, ep);
  }
}

using DotRowsFn = void (*)(int64_t, const float*, int64_t, const float*, float*, int64_t, int64_t, int64_t,
                           const GemmEpilogue&);
template <int R>
constexpr DotRowsFn kDotRows[kMaxPairs] = {dot_rows<R, 1>, dot_rows<R, 2>, dot_rows<R, 3>,
                                           dot_rows<R, 4>, dot_rows<R, 5>, dot_rows<R, 6>};
constexpr const DotRowsFn* kDotTiles[kRows] = {kDotRows<1>, kDotRows<2>, kDotRows<3>, kDotRows<4>};

}  // namespace

bool gemm_narrow_dot_applies(const GemmArgs& g) {
  return g.n >= 1 && g.n <= kNarrowDotMaxN && g.m >= 1 && g.k >= 1 && g.a_cs == 1 && g.alpha != 0.0f;
}

void gemm_narrow_dot(const GemmArgs& g, int nt) {
  const int64_t m = g.m, n = g.n, k = g.k;
  const int64_t pairs = cdiv(n, 2);
  const int64_t bp_floats = cdiv(k, 8) * pairs * 16;
  alignas(64) float bp_stack[kStackK / 8 * kMaxPairs * 16];
  float* bp = k <= kStackK ? bp_stack : static_cast<float*>(cpu_allocator::allocate(bp_floats * sizeof(float)));
  pack_b_pairs(k, n, g.b, g.b_rs, g.b_cs, bp);  // once, by the calling thread: k * n floats
  const int64_t blocks = cdiv(m, kRows);
  nt = static_cast<int>(std::min<int64_t>(nt, blocks));
  // Each thread works through its own share of the 4-row blocks from the front, then steals
  // from the back of the others' (a late or preempted thread does not hold up the call).
  detail::StealRange shares[kMaxThreads];
  nt = std::min(nt, kMaxThreads);
  for (int t = 0; t < nt; ++t)
    shares[t].init(static_cast<uint32_t>(blocks * t / nt), static_cast<uint32_t>(blocks * (t + 1) / nt));
  auto body = [&](int tid) {
    GemmEpilogue ep;
    ep.alpha = g.alpha;
    ep.beta = g.beta;
    ep.act = g.activation;
    ep.bias_col = g.bias_col;
    auto rows_block = [&](int64_t blk) {
      const int64_t i = blk * kRows, rows = std::min<int64_t>(kRows, m - i);
      ep.bias_row = g.bias_row ? g.bias_row + i : nullptr;
      kDotTiles[rows - 1][pairs - 1](k, g.a + i * g.a_rs, g.a_rs, bp, g.c + i * g.c_rs, g.c_rs, g.c_cs, n, ep);
    };
    if (nt == 1) {  // no claims (a compare-exchange per block is ~5 % of a 64 x 128 x 10 product)
      for (int64_t blk = 0; blk < blocks; ++blk) rows_block(blk);
      return;
    }
    for (int s = 0; s < nt; ++s) {
      detail::StealRange& share = shares[(tid + s) % nt];
      for (int64_t blk; (blk = share.take(s == 0)) >= 0;) rows_block(blk);
    }
  };
  if (nt <= 1) {
    body(0);
  } else {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num());
  }
  if (bp != bp_stack) cpu_allocator::release(bp);
}

#endif  // FASTNN_ISA_LEVEL == 2
#include "cpu/isa_end.h"
