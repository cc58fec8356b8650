// Implicit-GEMM convolution (forward, grad-input, grad-weight) on the GEMM microkernel.
//
// Per image n and group g the convolution is a GEMM over the column matrix
// col(k, p), k = (c, r, s) < K = Cg*kh*kw, p = (i, j) < P = Ho*Wo:
//   forward  Y(Og x P)   = W(Og x K) . col(K x P)          (+ bias_row, activation)
//   dW       dW(Og x K) += dY(Og x P) . col(K x P)^T       (summed over the batch)
//   dX       dcol(K x P) = W^T(K x Og) . dY(Og x P), then scattered (col2im) into dX
// col is never materialised: the forward gathers input patches straight into the
// microkernel's packed B layout (kc x NR panels, padding = zeros written by the gather),
// driven by per-panel "run" tables (which contiguous input spans each tap reads; built
// once per panel, reused for every channel); dW gathers col rows over a pixel chunk the
// same way and transposes them 8x8 into B panels (pixels are its reduction dim); dX
// computes dcol for a block of <= ~256 rows x nc pixels in a per-thread buffer and
// scatter-adds it at once, so every thread owns distinct input channels (no atomics,
// no full column buffer).
// Blocking: kc / nc from gemm_blocking(); W is packed once per call into A panels
// (forward) and reused for every image and pixel block.
// Threads: work items are (image, group, pixel block[, row block]); pixel blocks shrink
// (down to one NR panel) until there are >= 2 items per thread, so both cores are busy
// at batch 1; dW gives each thread a private accumulator (O x K floats), reduced at the end.
// Bound: compute (FMA) when Og >= ~2*MR and K >= ~64; for small Og the gather (one
// load+store per element of col per Og/MR micro-panels) dominates and it is memory/L1 bound.
// AVX-512, stride 1 and out_w == in_w (every 'same' 3x3 / 5x5 layer, and their grad-input
// run as a forward): the input position of pixel p for tap (r, s) is p + delta(r, s), so
// a 32-pixel row of a B panel is ONE masked load from x (mask = pixels whose tap lands in
// the image, zeros elsewhere). The forward then packs nothing: a conv microkernel
// (tile_linear, 12 x 32 like the GEMM one) reads B straight from x through a per-panel
// table of (delta, mask) per tap; K blocks hold whole channels. Packing was 13-28 % of the
// forward / grad-input time on the benchmark layers. Small images go several per work item
// so an A micro-panel serves ~8 tiles. grad-weight with few col rows (K <= 64: stem layers)
// uses dot products over pixels on the same masked loads (backward_weight_linear).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "fastnn/activation.h"
#include "fastnn/allocator.h"
#include "fastnn/config.h"
#include "fastnn/conv.h"

#include "cpu/scratch_floats.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/gemm_epilogue.h"

namespace {

constexpr int64_t MR = kGemmMR, NR = kGemmNR;

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

using Scratch = ::fastnn::cpu::ScratchFloats;

// Geometry of the column matrix of one (image, group).
struct ColGeo {
  int64_t H, W, Ho, Wo, kw, khw, sh, sw, ph, pw, dh, dw;
  explicit ColGeo(const Conv2dArgs& a)
      : H(a.in_h), W(a.in_w), Ho(a.out_h), Wo(a.out_w), kw(a.kernel_w), khw(a.kernel_h * a.kernel_w),
        sh(a.stride_h), sw(a.stride_w), ph(a.pad_h), pw(a.pad_w), dh(a.dil_h), dw(a.dil_w) {}
};

// Range [*tlo, *thi) of t in [0, len) with 0 <= wi0 + t*sw < W.
inline void valid_cols(int64_t wi0, int64_t sw, int64_t W, int64_t len, int64_t* tlo, int64_t* thi) {
  int64_t lo = wi0 >= 0 ? 0 : (-wi0 + sw - 1) / sw;
  int64_t hi = wi0 > W - 1 ? 0 : (W - 1 - wi0) / sw + 1;
  lo = std::min(lo, len);
  hi = std::clamp(hi, lo, len);
  *tlo = lo, *thi = hi;
}

// dxg(col2im of row k over pixels p0 .. p0+np) += src[t].
void scatter_row(const ColGeo& g, float* dxg, int64_t k, int64_t p0, int64_t np, const float* src) {
  const int64_t c = k / g.khw, rs = k % g.khw, r = rs / g.kw, s = rs % g.kw;
  float* xc = dxg + c * g.H * g.W;
  int64_t ho = p0 / g.Wo, wo = p0 % g.Wo;
  for (int64_t j = 0; j < np;) {
    const int64_t len = std::min(np - j, g.Wo - wo);
    const int64_t hi = ho * g.sh - g.ph + r * g.dh;
    if (hi >= 0 && hi < g.H) {
      float* xr = xc + hi * g.W;
      const float* sp = src + j;
      const int64_t wi0 = wo * g.sw - g.pw + s * g.dw;
      int64_t tlo, thi;
      valid_cols(wi0, g.sw, g.W, len, &tlo, &thi);
      if (g.sw == 1) {
        float* d = xr + wi0;
        for (int64_t t = tlo; t < thi; ++t) d[t] += sp[t];
      } else {
        for (int64_t t = tlo; t < thi; ++t) xr[wi0 + t * g.sw] += sp[t];
      }
    }
    j += len;
    wo = 0;
    ++ho;
  }
}

// Forward B block: col(k0 .. k0+kc, p0 .. p0+nb) as ceil(nb/NR) panels of kc x NR.
// For one panel (NR pixels) the positions a tap (r, s) reads are the same for every input
// channel, so they are worked out once per panel and tap as "runs" (pixels j .. j+n read
// xc[src + t*sw]); the per-row work is then a zero fill of NR floats plus a few short
// copies, with no divisions or bounds tests.
struct Run {
  int64_t src;  // offset in the channel plane of the run's first element
  int32_t j, n; // panel column and length
};

#if FASTNN_ISA_LEVEL == 2
inline void copy_run(float* d, const float* s, int64_t n) {
  for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
  if (n > 0) {
    const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
    _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));  // masked lanes never fault
  }
}
#else
inline void copy_run(float* d, const float* s, int64_t n) {
  for (int64_t t = 0; t < n; ++t) d[t] = s[t];
}
#endif

// Runs of every tap for the pixels p0 .. p0+nv; tap_begin[tap] .. tap_begin[tap+1] index `runs`.
void build_runs(const ColGeo& g, int64_t p0, int64_t nv, Run* runs, int64_t* tap_begin) {
  int64_t nr = 0;
  for (int64_t tap = 0; tap < g.khw; ++tap) {
    tap_begin[tap] = nr;
    const int64_t r = tap / g.kw, s = tap % g.kw;
    int64_t ho = p0 / g.Wo, wo = p0 % g.Wo;
    for (int64_t j = 0; j < nv;) {
      const int64_t len = std::min(nv - j, g.Wo - wo);
      const int64_t hi = ho * g.sh - g.ph + r * g.dh;
      if (hi >= 0 && hi < g.H) {
        const int64_t wi0 = wo * g.sw - g.pw + s * g.dw;
        int64_t tlo, thi;
        valid_cols(wi0, g.sw, g.W, len, &tlo, &thi);
        if (thi > tlo)
          runs[nr++] = Run{hi * g.W + wi0 + tlo * g.sw, static_cast<int32_t>(j + tlo), static_cast<int32_t>(thi - tlo)};
      }
      j += len;
      wo = 0;
      ++ho;
    }
  }
  tap_begin[g.khw] = nr;
}

int64_t max_runs(const ColGeo& g, int64_t np) { return g.khw * (std::min<int64_t>(np, cdiv(np, g.Wo) + 1) + 1); }

void pack_col_block(const ColGeo& g, const float* xg, int64_t k0, int64_t kc, int64_t p0, int64_t nb, float* bp,
                    Run* runs, int64_t* tap_begin) {
  const int64_t HW = g.H * g.W;
  for (int64_t q = 0; q * NR < nb; ++q) {
    const int64_t nv = std::min(NR, nb - q * NR);
    build_runs(g, p0 + q * NR, nv, runs, tap_begin);
    float* panel = bp + q * kc * NR;
    int64_t c = k0 / g.khw, tap = k0 % g.khw;
    for (int64_t kk = 0; kk < kc; ++kk) {
      float* d = panel + kk * NR;
      for (int64_t j = 0; j < NR; ++j) d[j] = 0.0f;
      const float* xc = xg + c * HW;
      const int64_t e = tap_begin[tap + 1];
      if (g.sw == 1) {
        for (int64_t u = tap_begin[tap]; u < e; ++u) copy_run(d + runs[u].j, xc + runs[u].src, runs[u].n);
      } else {
        for (int64_t u = tap_begin[tap]; u < e; ++u) {
          const float* src = xc + runs[u].src;
          float* dd = d + runs[u].j;
          for (int64_t t = 0; t < runs[u].n; ++t) dd[t] = src[t * g.sw];
        }
      }
      if (++tap == g.khw) tap = 0, ++c;
    }
  }
}

// Applies the runs of one tap to one channel: d[0 .. np) = col row (zeros where padded).
inline void apply_runs(const ColGeo& g, const float* xc, const Run* runs, int64_t b, int64_t e, int64_t np, float* d) {
  for (int64_t j = 0; j < np; ++j) d[j] = 0.0f;
  if (g.sw == 1) {
    for (int64_t u = b; u < e; ++u) copy_run(d + runs[u].j, xc + runs[u].src, runs[u].n);
  } else {
    for (int64_t u = b; u < e; ++u) {
      const float* src = xc + runs[u].src;
      float* dd = d + runs[u].j;
      for (int64_t t = 0; t < runs[u].n; ++t) dd[t] = src[t * g.sw];
    }
  }
}

#if FASTNN_ISA_LEVEL >= 1
// dst[i*ds + j] = src[j*ss + i], 8 x 8 (unpack / shuffle / lane permute).
inline void transpose8x8(const float* src, int64_t ss, float* dst, int64_t ds) {
  const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ss), r2 = _mm256_loadu_ps(src + 2 * ss),
               r3 = _mm256_loadu_ps(src + 3 * ss), r4 = _mm256_loadu_ps(src + 4 * ss),
               r5 = _mm256_loadu_ps(src + 5 * ss), r6 = _mm256_loadu_ps(src + 6 * ss),
               r7 = _mm256_loadu_ps(src + 7 * ss);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
               t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
               t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0)),
               s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2)),
               s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0)),
               s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2)),
               s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0)),
               s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2)),
               s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0)),
               s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst, _mm256_permute2f128_ps(s0, s4, 0x20));
  _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(s1, s5, 0x20));
  _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(s2, s6, 0x20));
  _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(s3, s7, 0x20));
  _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(s0, s4, 0x31));
  _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(s1, s5, 0x31));
  _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(s2, s6, 0x31));
  _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(s3, s7, 0x31));
}
#endif

// panel[p*NR + j] = t[j*ts + p], p < kc, j < NR.
void transpose_to_panel(const float* t, int64_t ts, int64_t kc, float* panel) {
  int64_t p = 0;
#if FASTNN_ISA_LEVEL >= 1
  for (; p + 8 <= kc; p += 8)
    for (int64_t j = 0; j < NR; j += 8) transpose8x8(t + j * ts + p, ts, panel + p * NR + j, NR);
#endif
  for (; p < kc; ++p)
    for (int64_t j = 0; j < NR; ++j) panel[p * NR + j] = t[j * ts + p];
}

// dW B block: B(p, j) = col(k0 + j, p0 + p), p < kc pixels, j < nb rows of col. Each
// col row is gathered contiguously into `tmp` (NR rows of ts >= kc floats) with the
// pixel runs of its tap (built once per pixel chunk by the caller), then NR rows at a
// time are transposed into the k-major panel.
void pack_colT_block(const ColGeo& g, const float* xg, int64_t kc, int64_t k0, int64_t nb, float* bp,
                     const Run* runs, const int64_t* tap_begin, float* tmp, int64_t ts) {
  const int64_t HW = g.H * g.W;
  int64_t c = k0 / g.khw, tap = k0 % g.khw;
  for (int64_t q = 0; q * NR < nb; ++q) {
    const int64_t nv = std::min(NR, nb - q * NR);
    for (int64_t j = 0; j < nv; ++j) {
      apply_runs(g, xg + c * HW, runs, tap_begin[tap], tap_begin[tap + 1], kc, tmp + j * ts);
      if (++tap == g.khw) tap = 0, ++c;
    }
    for (int64_t j = nv; j < NR; ++j)
      for (int64_t p = 0; p < kc; ++p) tmp[j * ts + p] = 0.0f;
    transpose_to_panel(tmp, ts, kc, bp + q * kc * NR);
  }
}

#if FASTNN_ISA_LEVEL == 2
// ---- stride-1, same-width convolutions: B read straight from x (see the header) ----
struct TapLoad {
  int64_t delta;  // offset of the tap's input for pixel p relative to p, in the channel plane
  uint32_t mask;  // bit l: pixel p0 + l of the panel reads a real input element
};

bool linear_taps(const Conv2dArgs& a) { return a.stride_h == 1 && a.stride_w == 1 && a.out_w == a.in_w; }

// taps[t] of panel q (pixels q*NR .. q*NR + NR; pixels >= P get mask bit 0).
void build_tap_loads(const ColGeo& g, int64_t P, int64_t q, TapLoad* taps) {
  int64_t ii[NR], jj[NR];
  for (int64_t l = 0; l < NR; ++l) {
    const int64_t p = q * NR + l;
    ii[l] = p < P ? p / g.Wo : -(int64_t{1} << 40);  // far outside: never valid
    jj[l] = p % g.Wo;
  }
  for (int64_t t = 0; t < g.khw; ++t) {
    const int64_t dr = (t / g.kw) * g.dh - g.ph, ds = (t % g.kw) * g.dw - g.pw;
    uint32_t m = 0;
    for (int64_t l = 0; l < NR; ++l) {
      const int64_t hi = ii[l] + dr, wi = jj[l] + ds;
      if (hi >= 0 && hi < g.H && wi >= 0 && wi < g.W) m |= uint32_t{1} << l;
    }
    taps[t] = TapLoad{dr * g.W + ds, m};
  }
}

// C(12 x 32 tile, rows < ROWS, columns < n_valid) = epilogue(sum over nch channels and the
// khw taps of A column * B row), A packed (MR floats per k, k = (channel, tap)), B row of
// (channel ch, tap t) = maskz_load(taps[t].mask, xp + ch*HW + taps[t].delta), xp = the
// panel's first pixel in channel 0 of the block. Masked-off lanes are never read (no fault
// even where xp + delta points outside the image).
template <int ROWS>
void tile_linear(int64_t nch, int64_t khw, const float* __restrict ap, const float* xp, int64_t HW,
                 const TapLoad* __restrict taps, float* c, int64_t c_rs, int64_t n_valid, const GemmEpilogue& ep) {
  __m512 acc[ROWS][2];
#pragma GCC unroll 12
  for (int i = 0; i < ROWS; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (int64_t ch = 0; ch < nch; ++ch, xp += HW) {
#pragma GCC unroll 3
    for (int64_t t = 0; t < khw; ++t) {
      const float* src = xp + taps[t].delta;
      const uint32_t m = taps[t].mask;
      const __m512 b0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), src);
      const __m512 b1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), src + 16);
#pragma GCC unroll 12
      for (int i = 0; i < ROWS; ++i) {
        const __m512 av = _mm512_set1_ps(ap[i]);
        acc[i][0] = _mm512_fmadd_ps(av, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(av, b1, acc[i][1]);
      }
      ap += MR;
    }
  }
  const __mmask16 mk0 = n_valid >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n_valid) - 1u);
  const __mmask16 mk1 = n_valid >= 32 ? __mmask16(0xFFFF) : n_valid <= 16 ? __mmask16(0) : __mmask16((1u << (n_valid - 16)) - 1u);
#pragma GCC unroll 12
  for (int i = 0; i < ROWS; ++i) {
    float* crow = c + i * c_rs;
    const gemm_vf br = gemm_splat(ep.bias_row ? ep.bias_row[i] : 0.0f);
    const __m512 o0 = ep.beta != 0.0f ? _mm512_maskz_loadu_ps(mk0, crow) : _mm512_setzero_ps();
    const __m512 o1 = ep.beta != 0.0f ? _mm512_maskz_loadu_ps(mk1, crow + 16) : _mm512_setzero_ps();
    _mm512_mask_storeu_ps(crow, mk0, (__m512)gemm_epilogue_vec((gemm_vf)acc[i][0], (gemm_vf)o0, br, ep));
    _mm512_mask_storeu_ps(crow + 16, mk1, (__m512)gemm_epilogue_vec((gemm_vf)acc[i][1], (gemm_vf)o1, br, ep));
  }
}

using TileLinearFn = void (*)(int64_t, int64_t, const float*, const float*, int64_t, const TapLoad*, float*, int64_t,
                              int64_t, const GemmEpilogue&);
constexpr TileLinearFn kTileLinear[12] = {tile_linear<1>, tile_linear<2>, tile_linear<3>,  tile_linear<4>,
                                          tile_linear<5>, tile_linear<6>, tile_linear<7>,  tile_linear<8>,
                                          tile_linear<9>, tile_linear<10>, tile_linear<11>, tile_linear<12>};

// grad-weight on the same geometry, as dot products over pixels (the pixels are the
// reduction, so vectorising along them keeps every operand a plain or masked row load):
// a DO x DK tile of dW (output channels x col rows) holds DO*DK vector accumulators of
// 16 pixel lanes, fed per 16 pixels by DO dY loads and DK masked x loads (DO*DK FMAs per
// DO + DK loads), summed over a chunk of images and reduced across lanes once per chunk.
constexpr int kDwDO = 4, kDwDK = 6;  // 24 accumulators + 4 dY + 1 x register
constexpr int64_t kDwLinearMaxK = 64;

struct DwRows {           // the DK col rows of one tile
  int64_t off[kDwDK];     // c*HW + delta(tap): start of row k for pixel 0
  const uint16_t* m[kDwDK];  // masks of the tap per 16-pixel block (stride khw)
};

inline float hsum16(__m512 v) {  // (GCC 12 warns inside the masked builtins of _mm512_reduce_add_ps)
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) t[l] += t[l + w];
  return t[0];
}

template <int DO, int DK>
void dw_tile_linear(const float* dy, int64_t ybs, int64_t P, const float* x, int64_t xbs, int64_t nimg,
                    const DwRows& rows, int64_t khw, float* dw, int64_t K, bool accumulate) {
  __m512 acc[DO][DK];
#pragma GCC unroll 4
  for (int i = 0; i < DO; ++i)
#pragma GCC unroll 6
    for (int j = 0; j < DK; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t nblk = cdiv(P, 16);
  for (int64_t n = 0; n < nimg; ++n, dy += ybs, x += xbs) {
    for (int64_t h = 0; h < nblk; ++h) {
      const int64_t p = h * 16;
      const __mmask16 pm = P - p >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (P - p)) - 1u);
      __m512 d[DO];
#pragma GCC unroll 4
      for (int i = 0; i < DO; ++i) d[i] = _mm512_maskz_loadu_ps(pm, dy + i * P + p);
#pragma GCC unroll 6
      for (int j = 0; j < DK; ++j) {
        const __m512 xv = _mm512_maskz_loadu_ps(rows.m[j][h * khw], x + rows.off[j] + p);
#pragma GCC unroll 4
        for (int i = 0; i < DO; ++i) acc[i][j] = _mm512_fmadd_ps(d[i], xv, acc[i][j]);
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < DO; ++i)
#pragma GCC unroll 6
    for (int j = 0; j < DK; ++j) {
      const float v = hsum16(acc[i][j]);
      dw[i * K + j] = accumulate ? dw[i * K + j] + v : v;
    }
}

using DwTileFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, const DwRows&, int64_t,
                          float*, int64_t, bool);
template <int DO>
constexpr DwTileFn kDwRow[kDwDK] = {dw_tile_linear<DO, 1>, dw_tile_linear<DO, 2>, dw_tile_linear<DO, 3>,
                                    dw_tile_linear<DO, 4>, dw_tile_linear<DO, 5>, dw_tile_linear<DO, 6>};
constexpr const DwTileFn* kDwTile[kDwDO] = {kDwRow<1>, kDwRow<2>, kDwRow<3>, kDwRow<4>};

// Threads own disjoint output-channel tiles (no private copies, no reduction, and every dW
// element is summed in the same order whatever the thread count); images go by chunks of
// >= ~2048 pixels so that a chunk's x and dY rows stay in L2 across the tile's col rows.
void backward_weight_linear(const Conv2dArgs& a) {
  const ColGeo geo(a);
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t K = Cg * geo.khw, P = a.out_h * a.out_w, HW = geo.H * geo.W, khw = geo.khw;
  const int64_t panels = cdiv(P, NR), nblk = 2 * panels;
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  // Per 16-pixel block and tap: the mask (from the forward's 32-pixel panel tables).
  Scratch tapbuf(panels * khw * static_cast<int64_t>(sizeof(TapLoad) / sizeof(float)));
  TapLoad* taps = reinterpret_cast<TapLoad*>(tapbuf.p);
  Scratch maskbuf(cdiv(nblk * khw, 2));
  uint16_t* m16 = reinterpret_cast<uint16_t*>(maskbuf.p);
  for (int64_t q = 0; q < panels; ++q) {
    build_tap_loads(geo, P, q, taps + q * khw);
    for (int64_t t = 0; t < khw; ++t) {
      m16[(2 * q) * khw + t] = static_cast<uint16_t>(taps[q * khw + t].mask);
      m16[(2 * q + 1) * khw + t] = static_cast<uint16_t>(taps[q * khw + t].mask >> 16);
    }
  }
  const int64_t otiles = cdiv(Og, kDwDO), items = G * otiles;
  const int64_t chunk = std::min(N, std::max<int64_t>(1, cdiv(2048, P)));
  const int nt = static_cast<int>(std::min<int64_t>(num_threads(), items));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t ib = items * t / nth, ie = items * (t + 1) / nth;
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
      const int64_t nimg = std::min(chunk, N - n0);
      for (int64_t it = ib; it < ie; ++it) {
        const int64_t g = it / otiles, o0 = (it % otiles) * kDwDO, mo = std::min<int64_t>(kDwDO, Og - o0);
        const float* dyp = a.dy + n0 * ybs + (g * Og + o0) * P;
        const float* xg = a.x + n0 * xbs + g * Cg * HW;
        for (int64_t k0 = 0; k0 < K; k0 += kDwDK) {
          const int64_t nk = std::min<int64_t>(kDwDK, K - k0);
          DwRows rows;
          for (int64_t j = 0; j < nk; ++j) {
            const int64_t k = k0 + j, c = k / khw, tap = k % khw;
            rows.off[j] = c * HW + taps[tap].delta;  // delta does not depend on the panel
            rows.m[j] = m16 + tap;
          }
          kDwTile[mo - 1][nk - 1](dyp, ybs, P, xg, xbs, nimg, rows, khw, a.dw + (g * Og + o0) * K + k0, K, n0 > 0);
        }
      }
    }
  }
}
#else
bool linear_taps(const Conv2dArgs&) { return false; }
struct TapLoad {
  int64_t delta;
  uint32_t mask;
};
#endif
using TapLoadSlot = TapLoad;


}  // namespace

// ------------------------------------------------------------------------------------
void conv2d_forward_igemm(const Conv2dArgs& a) {
  const ColGeo geo(a);
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t K = Cg * geo.khw, P = a.out_h * a.out_w;
  const GemmBlocking bl = gemm_blocking();
  const bool linear = linear_taps(a);
  // Linear path: K blocks of whole channels (its microkernel walks channel x tap).
  const int64_t kc = linear ? std::min(K, std::max<int64_t>(1, bl.kc / geo.khw) * geo.khw) : std::min(bl.kc, K);
  const int64_t Mp = cdiv(Og, MR) * MR;
  const int nt_max = num_threads();

  // W packed once: [g][k block][Og panels], block (g, pc) at g*Mp*K + pc*Mp.
  Scratch wp(G * Mp * K);
  const int64_t nkb = cdiv(K, kc);

  // Pixel blocks (multiples of NR) and row blocks so that every thread gets work.
  const int64_t panels = cdiv(P, NR);
  int64_t ncp = std::min(panels, std::max<int64_t>(1, bl.nc / NR));
  while (ncp > 1 && N * G * cdiv(panels, ncp) < 2 * nt_max) ncp = cdiv(ncp, 2);
  const int64_t nc = ncp * NR, npb = cdiv(P, nc);
  int64_t nmb = 1;
  const int64_t mpanels = cdiv(Og, MR);
  if (N * G * npb < 2 * nt_max) nmb = std::min(mpanels, cdiv(2 * nt_max, N * G * npb));
  const int64_t mb_panels = cdiv(mpanels, nmb);
  // Linear path, small images: an item takes `ig` images so that each A micro-panel
  // (MR x kc, loaded into L1) serves ~8 tiles instead of P / NR (2 at 8x8).
  int64_t ig = 1;
  if (linear && npb == 1) {
    ig = std::clamp<int64_t>(8 * NR / P, 1, N);
    while (ig > 1 && cdiv(N, ig) * G * nmb < 2 * nt_max) --ig;
  }
  const int64_t ngrp = cdiv(N, ig);
  const int64_t items = ngrp * G * npb * nmb;
  const int nt = static_cast<int>(std::min<int64_t>(nt_max, items));
  const int64_t xbs = a.xbs(), ybs = a.ybs();

  const int64_t panels_all = cdiv(P, NR);
  Scratch tapbuf(linear ? panels_all * geo.khw * static_cast<int64_t>(sizeof(TapLoadSlot) / sizeof(float)) : 0);
  [[maybe_unused]] TapLoadSlot* tap_loads = reinterpret_cast<TapLoadSlot*>(tapbuf.p);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#if FASTNN_ISA_LEVEL == 2
    if (linear) {  // done before the barrier that ends the W packing below
#pragma omp for schedule(static) nowait
      for (int64_t q = 0; q < panels_all; ++q) build_tap_loads(geo, P, q, tap_loads + q * geo.khw);
    }
#endif
    Scratch bbuf(linear ? 0 : kc * nc);
    Scratch runbuf(max_runs(geo, NR) * static_cast<int64_t>(sizeof(Run) / sizeof(float)) + geo.khw + 1 +
                   static_cast<int64_t>(sizeof(int64_t) / sizeof(float)) * (geo.khw + 1));
    Run* runs = reinterpret_cast<Run*>(runbuf.p);
    int64_t* tap_begin = reinterpret_cast<int64_t*>(runs + max_runs(geo, NR));
    // Packing W inside the same parallel region: one fork/join per call (on a loaded VM
    // every extra barrier can cost a scheduler time slice).
#pragma omp for schedule(static)
    for (int64_t it = 0; it < G * nkb; ++it) {
      const int64_t g = it / nkb, pc = (it % nkb) * kc, kcb = std::min(kc, K - pc);
      gemm_pack_a(Og, kcb, a.weight + (g * Og) * K + pc, K, 1, wp.p + g * Mp * K + pc * Mp);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      int64_t rem = it;
      const int64_t mb = rem % nmb;
      rem /= nmb;
      const int64_t pb = rem % npb;
      rem /= npb;
      const int64_t g = rem % G, n = (rem / G) * ig;
      [[maybe_unused]] const int64_t nimg = std::min(ig, N - n);
      const int64_t m0 = mb * mb_panels * MR, m1 = std::min(Og, m0 + mb_panels * MR);
      if (m0 >= m1) continue;
      const int64_t p0 = pb * nc, nb = std::min(nc, P - p0);
      const float* xg = a.x + n * xbs + g * Cg * geo.H * geo.W;
      float* yg = a.y + n * ybs + g * Og * P;
      for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = std::min(kc, K - pc);
        const bool last = pc + kcb >= K;
        const float* ablk = wp.p + g * Mp * K + pc * Mp;
        // C accumulates over the k blocks; bias and activation once, on the last
        auto rows_epilogue = [&](int64_t ir) {
          GemmEpilogue ep;
          ep.beta = pc == 0 ? 0.0f : 1.0f;
          if (last) {
            ep.bias_row = a.bias ? a.bias + g * Og + ir : nullptr;
            ep.act = a.activation;
          }
          return ep;
        };
#if FASTNN_ISA_LEVEL == 2
        if (linear) {
          const int64_t HW = geo.H * geo.W;
          for (int64_t ir = m0; ir < m1; ir += MR) {
            const GemmEpilogue ep = rows_epilogue(ir);
            const int64_t mv = std::min(MR, m1 - ir);
            for (int64_t u = 0; u < nimg; ++u)
              for (int64_t q = 0; q * NR < nb; ++q)
                kTileLinear[mv - 1](kcb / geo.khw, geo.khw, ablk + ir * kcb,
                                    xg + u * xbs + (pc / geo.khw) * HW + p0 + q * NR, HW,
                                    tap_loads + (p0 / NR + q) * geo.khw, yg + u * ybs + ir * P + p0 + q * NR, P,
                                    std::min(NR, nb - q * NR), ep);
          }
          continue;
        }
#endif
        pack_col_block(geo, xg, pc, kcb, p0, nb, bbuf.p, runs, tap_begin);
        for (int64_t ir = m0; ir < m1; ir += MR) {
          const GemmEpilogue ep = rows_epilogue(ir);
          const int64_t mv = std::min(MR, m1 - ir);
          for (int64_t q = 0; q * NR < nb; ++q)
            gemm_microkernel(kcb, ablk + ir * kcb, bbuf.p + q * kcb * NR, yg + ir * P + p0 + q * NR, P, 1, mv,
                             std::min(NR, nb - q * NR), ep);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------
void conv2d_backward_weight_igemm(const Conv2dArgs& a) {
#if FASTNN_ISA_LEVEL == 2
  // Few col rows (stem layers: K = 25, 27): the GEMM's transposing gather dominates and
  // the dot-product kernel wins (1.5x); with K in the hundreds its 4-row dY reuse makes it
  // L2-bound and the packed GEMM wins (measured 0.65-0.8x there).
  if (linear_taps(a) && a.in_channels / a.groups * a.kernel_h * a.kernel_w <= kDwLinearMaxK) {
    backward_weight_linear(a);
    return;
  }
#endif
  const ColGeo geo(a);
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t K = Cg * geo.khw, P = a.out_h * a.out_w, O = a.out_channels;
  const GemmBlocking bl = gemm_blocking();
  const int nt_max = num_threads();
  // Reduction (pixel) chunks; shrink them until every thread has work.
  int64_t kc = std::min(bl.kc, P);
  while (kc > 8 && N * cdiv(P, kc) < 2 * nt_max) kc = cdiv(kc, 2);
  const int64_t npc = cdiv(P, kc);
  const int64_t ncK = std::min(K, std::max<int64_t>(NR, bl.nc / NR * NR));
  const int64_t Mp = cdiv(Og, MR) * MR;
  const int64_t items = N * npc;
  const int nt = static_cast<int>(std::min<int64_t>(nt_max, items));
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  const int64_t wsize = O * K;
  Scratch acc(static_cast<int64_t>(nt) * wsize);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num();
    float* mine = acc.p + t * wsize;
    std::memset(mine, 0, static_cast<size_t>(wsize) * 4);
    Scratch abuf(Mp * kc), bbuf(kc * cdiv(ncK, NR) * NR);
    const int64_t ts = cdiv(kc, 16) * 16, nruns = max_runs(geo, kc);
    Scratch tmp(NR * ts);
    Scratch runbuf(nruns * static_cast<int64_t>(sizeof(Run) / sizeof(float)) + 2 * (geo.khw + 1));
    Run* runs = reinterpret_cast<Run*>(runbuf.p);
    int64_t* tap_begin = reinterpret_cast<int64_t*>(runs + nruns);
    // static: which items a thread sums into its private dW must not depend on timing, or the
    // final reduction adds them in a different order from run to run (bitwise determinism).
#pragma omp for schedule(static, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / npc, p0 = (it % npc) * kc, kcb = std::min(kc, P - p0);
      build_runs(geo, p0, kcb, runs, tap_begin);
      for (int64_t g = 0; g < G; ++g) {
        const float* xg = a.x + n * xbs + g * Cg * geo.H * geo.W;
        gemm_pack_a(Og, kcb, a.dy + n * ybs + g * Og * P + p0, P, 1, abuf.p);
        float* wg = mine + g * Og * K;
        for (int64_t jc = 0; jc < K; jc += ncK) {
          const int64_t nb = std::min(ncK, K - jc);
          pack_colT_block(geo, xg, kcb, jc, nb, bbuf.p, runs, tap_begin, tmp.p, ts);
          GemmEpilogue ep;
          ep.beta = 1.0f;
          for (int64_t ir = 0; ir < Og; ir += MR) {
            const int64_t mv = std::min(MR, Og - ir);
            for (int64_t q = 0; q * NR < nb; ++q)
              gemm_microkernel(kcb, abuf.p + ir * kcb, bbuf.p + q * kcb * NR, wg + ir * K + jc + q * NR, K, 1, mv,
                               std::min(NR, nb - q * NR), ep);
          }
        }
      }
    }
    // Implicit barrier above; reduce the private accumulators, split by element range.
    const int nth = omp_get_num_threads();
    const int64_t chunk = cdiv(wsize, nth);
    const int64_t b = std::min(wsize, t * chunk), e = std::min(wsize, b + chunk);
    for (int64_t i = b; i < e; ++i) {
      float s = acc.p[i];
      for (int u = 1; u < nth; ++u) s += acc.p[u * wsize + i];
      a.dw[i] = s;
    }
  }
}

// ------------------------------------------------------------------------------------
void conv2d_backward_input_igemm(const Conv2dArgs& a) {
  const ColGeo geo(a);
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t K = Cg * geo.khw, P = a.out_h * a.out_w, HW = a.in_h * a.in_w;
  const GemmBlocking bl = gemm_blocking();
  const int nt_max = num_threads();
  const int64_t kc = std::min(bl.kc, Og);
  // Channel chunks: <= ~256 rows of dcol, and enough items for every thread.
  int64_t cc = std::clamp<int64_t>(256 / geo.khw, 1, Cg);
  while (cc > 1 && N * G * cdiv(Cg, cc) < 2 * nt_max) cc = cdiv(cc, 2);
  const int64_t ncc = cdiv(Cg, cc);
  const int64_t Rmax = cc * geo.khw;
  const int64_t nc = std::min(cdiv(P, NR) * NR, std::max<int64_t>(NR, 256 / NR * NR));
  const int64_t items = N * G * ncc;
  const int nt = static_cast<int>(std::min<int64_t>(nt_max, items));
  const int64_t xbs = a.xbs(), ybs = a.ybs();

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Scratch abuf(cdiv(Rmax, MR) * MR * kc), bbuf(kc * nc), dcol(Rmax * nc);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t ci = it % ncc, g = (it / ncc) % G, n = it / (ncc * G);
      const int64_t c0 = ci * cc, c1 = std::min(Cg, c0 + cc);
      const int64_t k0 = c0 * geo.khw, R = (c1 - c0) * geo.khw;
      float* dxg = a.dx + n * xbs + g * Cg * HW;
      std::memset(dxg + c0 * HW, 0, static_cast<size_t>((c1 - c0) * HW) * 4);
      for (int64_t p0 = 0; p0 < P; p0 += nc) {
        const int64_t nb = std::min(nc, P - p0);
        for (int64_t pc = 0; pc < Og; pc += kc) {
          const int64_t kcb = std::min(kc, Og - pc);
          gemm_pack_b(kcb, nb, a.dy + n * ybs + (g * Og + pc) * P + p0, P, 1, bbuf.p);
          gemm_pack_a(R, kcb, a.weight + (g * Og + pc) * K + k0, 1, K, abuf.p);
          GemmEpilogue ep;
          ep.beta = pc == 0 ? 0.0f : 1.0f;
          for (int64_t ir = 0; ir < R; ir += MR) {
            const int64_t mv = std::min(MR, R - ir);
            for (int64_t q = 0; q * NR < nb; ++q)
              gemm_microkernel(kcb, abuf.p + ir * kcb, bbuf.p + q * kcb * NR, dcol.p + ir * nb + q * NR, nb, 1, mv,
                               std::min(NR, nb - q * NR), ep);
          }
        }
        for (int64_t i = 0; i < R; ++i) scatter_row(geo, dxg, k0 + i, p0, nb, dcol.p + i * nb);
      }
    }
  }
}

#include "cpu/isa_end.h"
