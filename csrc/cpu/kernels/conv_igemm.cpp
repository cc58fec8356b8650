// Implicit-GEMM convolution (forward, grad-input, grad-weight) on the GEMM microkernel.
//
// Per image n and group g the convolution is a GEMM over the column matrix
// col(k, p), k = (c, r, s) < K = Cg*kh*kw, p = (i, j) < P = Ho*Wo:
//   forward  Y(Og x P)   = W(Og x K) . col(K x P)          (+ bias_row, activation)
//   dW       dW(Og x K) += dY(Og x P) . col(K x P)^T       (summed over the batch)
//   dX       dcol(K x P) = W^T(K x Og) . dY(Og x P), then scattered (col2im) into dX
// col is never materialised: the forward gathers input patches straight into the
// microkernel's packed B layout (kc x NR panels, padding = zeros written by the gather);
// dW gathers the transposed tile (pixels as the reduction dim) into the same layout; dX
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

constexpr int64_t MR = kGemmMR, NR = kGemmNR;

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

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

// dst[t*DS] = col(k, p0 + t), t < np. xg: the group's first input channel of the image.
template <int64_t DS>
void gather_row(const ColGeo& g, const float* xg, int64_t k, int64_t p0, int64_t np, float* dst) {
  const int64_t c = k / g.khw, rs = k % g.khw, r = rs / g.kw, s = rs % g.kw;
  const float* xc = xg + c * g.H * g.W;
  int64_t ho = p0 / g.Wo, wo = p0 % g.Wo;
  for (int64_t j = 0; j < np;) {
    const int64_t len = std::min(np - j, g.Wo - wo);
    const int64_t hi = ho * g.sh - g.ph + r * g.dh;
    float* d = dst + j * DS;
    if (hi < 0 || hi >= g.H) {
      for (int64_t t = 0; t < len; ++t) d[t * DS] = 0.0f;
    } else {
      const float* xr = xc + hi * g.W;
      const int64_t wi0 = wo * g.sw - g.pw + s * g.dw;
      int64_t tlo, thi;
      valid_cols(wi0, g.sw, g.W, len, &tlo, &thi);
      for (int64_t t = 0; t < tlo; ++t) d[t * DS] = 0.0f;
      if (g.sw == 1) {
        const float* src = xr + wi0;
        for (int64_t t = tlo; t < thi; ++t) d[t * DS] = src[t];
      } else {
        for (int64_t t = tlo; t < thi; ++t) d[t * DS] = xr[wi0 + t * g.sw];
      }
      for (int64_t t = thi; t < len; ++t) d[t * DS] = 0.0f;
    }
    j += len;
    wo = 0;
    ++ho;
  }
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
void pack_col_block(const ColGeo& g, const float* xg, int64_t k0, int64_t kc, int64_t p0, int64_t nb, float* bp) {
  for (int64_t q = 0; q * NR < nb; ++q) {
    const int64_t nv = std::min(NR, nb - q * NR);
    float* panel = bp + q * kc * NR;
    for (int64_t kk = 0; kk < kc; ++kk) {
      float* d = panel + kk * NR;
      gather_row<1>(g, xg, k0 + kk, p0 + q * NR, nv, d);
      for (int64_t j = nv; j < NR; ++j) d[j] = 0.0f;
    }
  }
}

// dW B block: B(p, j) = col(k0 + j, p0 + p), p < kc pixels, j < nb rows of col.
void pack_colT_block(const ColGeo& g, const float* xg, int64_t p0, int64_t kc, int64_t k0, int64_t nb, float* bp) {
  for (int64_t q = 0; q * NR < nb; ++q) {
    const int64_t nv = std::min(NR, nb - q * NR);
    float* panel = bp + q * kc * NR;
    for (int64_t j = 0; j < nv; ++j) gather_row<NR>(g, xg, k0 + q * NR + j, p0, kc, panel + j);
    for (int64_t j = nv; j < NR; ++j)
      for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = 0.0f;
  }
}

struct Scratch {  // a cpu_allocator block, released on scope exit
  float* p;
  explicit Scratch(int64_t floats)
      : p(static_cast<float*>(cpu_allocator::allocate(static_cast<size_t>(std::max<int64_t>(floats, 16)) * 4))) {}
  ~Scratch() { cpu_allocator::release(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace

// ------------------------------------------------------------------------------------
void conv2d_forward_igemm(const Conv2dArgs& a) {
  const ColGeo geo(a);
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t K = Cg * geo.khw, P = a.out_h * a.out_w;
  const GemmBlocking bl = gemm_blocking();
  const int64_t kc = std::min(bl.kc, K);
  const int64_t Mp = cdiv(Og, MR) * MR;
  const int nt_max = num_threads();

  // W packed once: [g][k block][Og panels], block (g, pc) at g*Mp*K + pc*Mp.
  Scratch wp(G * Mp * K);
  {
    const int64_t nkb = cdiv(K, kc);
    const int nt = static_cast<int>(std::min<int64_t>(nt_max, G * nkb));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t it = 0; it < G * nkb; ++it) {
      const int64_t g = it / nkb, pc = (it % nkb) * kc, kcb = std::min(kc, K - pc);
      gemm_pack_a(Og, kcb, a.weight + (g * Og) * K + pc, K, 1, wp.p + g * Mp * K + pc * Mp);
    }
  }

  // Pixel blocks (multiples of NR) and row blocks so that every thread gets work.
  const int64_t panels = cdiv(P, NR);
  int64_t ncp = std::min(panels, std::max<int64_t>(1, bl.nc / NR));
  while (ncp > 1 && N * G * cdiv(panels, ncp) < 2 * nt_max) ncp = cdiv(ncp, 2);
  const int64_t nc = ncp * NR, npb = cdiv(P, nc);
  int64_t nmb = 1;
  const int64_t mpanels = cdiv(Og, MR);
  if (N * G * npb < 2 * nt_max) nmb = std::min(mpanels, cdiv(2 * nt_max, N * G * npb));
  const int64_t mb_panels = cdiv(mpanels, nmb);
  const int64_t items = N * G * npb * nmb;
  const int nt = static_cast<int>(std::min<int64_t>(nt_max, items));
  const int64_t xbs = a.xbs(), ybs = a.ybs();

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    Scratch bbuf(kc * nc);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      int64_t rem = it;
      const int64_t mb = rem % nmb;
      rem /= nmb;
      const int64_t pb = rem % npb;
      rem /= npb;
      const int64_t g = rem % G, n = rem / G;
      const int64_t m0 = mb * mb_panels * MR, m1 = std::min(Og, m0 + mb_panels * MR);
      if (m0 >= m1) continue;
      const int64_t p0 = pb * nc, nb = std::min(nc, P - p0);
      const float* xg = a.x + n * xbs + g * Cg * geo.H * geo.W;
      float* yg = a.y + n * ybs + g * Og * P;
      for (int64_t pc = 0; pc < K; pc += kc) {
        const int64_t kcb = std::min(kc, K - pc);
        const bool last = pc + kcb >= K;
        pack_col_block(geo, xg, pc, kcb, p0, nb, bbuf.p);
        const float* ablk = wp.p + g * Mp * K + pc * Mp;
        for (int64_t ir = m0; ir < m1; ir += MR) {
          GemmEpilogue ep;
          ep.beta = pc == 0 ? 0.0f : 1.0f;
          if (last) {
            ep.bias_row = a.bias ? a.bias + g * Og + ir : nullptr;
            ep.act = a.activation;
          }
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
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / npc, p0 = (it % npc) * kc, kcb = std::min(kc, P - p0);
      for (int64_t g = 0; g < G; ++g) {
        const float* xg = a.x + n * xbs + g * Cg * geo.H * geo.W;
        gemm_pack_a(Og, kcb, a.dy + n * ybs + g * Og * P + p0, P, 1, abuf.p);
        float* wg = mine + g * Og * K;
        for (int64_t jc = 0; jc < K; jc += ncK) {
          const int64_t nb = std::min(ncK, K - jc);
          pack_colT_block(geo, xg, p0, kcb, jc, nb, bbuf.p);
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
