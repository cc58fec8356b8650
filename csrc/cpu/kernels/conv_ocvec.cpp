// Stride-1 convolution forward with the output channels in the vector lanes (AVX-512),
// for layers with many channels (>= 16 per group): 64->128 16x16, 128->128 8x8 and their
// grad-input run as a forward on flipped weights (cpu/conv.cpp picks it).
//
// Algorithm: per (image, group) the input planes are copied once into a zero-bordered
// per-thread buffer xpad (Cg x Hp x Wp, Hp = Ho + (kh-1)*dh, Wp = Wo + (kw-1)*dw), so every
// tap of every output pixel reads xpad[c][(i + r*dh)*Wp + j + s*dw] with no bounds test.
// The weights are packed once per call as [g][32-channel tile][c][tap][32] (zero rows
// beyond Og). A tile is RP <= 12 consecutive pixels of one output row x 32 output channels
// (RP x 2 zmm accumulators); per (c, tap) it loads 2 aligned weight vectors and broadcasts
// RP input values, i.e. 2*RP FMAs per 2 + RP loads, every load aligned or a broadcast
// (the masked unaligned pixel loads of the igemm same-width path missed L1 on these
// shapes and ran at ~70 % of the FMA rate). The tile is transposed into NCHW at the store.
// Blocking: one 32-channel weight tile (Cg*khw*128 B, 147 KiB for 128x3x3) stays in L2
// while it sweeps the image's pixel tiles; the tile's input rows stay in L1.
// Threads: items are (image, group, output-channel tile range); the tile range is split
// when there are fewer than 2 (image, group) pairs per thread (batch 1).
// Bound: compute (FMA); extra memory = the packed weights + one padded image per thread.
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
#include "cpu/kernels/gemm_epilogue.h"

namespace {

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct Scratch {  // a cpu_allocator block (64-byte aligned), released on scope exit
  float* p;
  explicit Scratch(int64_t floats)
      : p(static_cast<float*>(cpu_allocator::allocate(static_cast<size_t>(std::max<int64_t>(floats, 16)) * 4))) {}
  ~Scratch() { cpu_allocator::release(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

constexpr int64_t OT = 32;  // output channels per tile (2 vectors)
constexpr int kMaxRP = 12;  // pixels per tile: 24 accumulators + 2 weight vectors + 1 broadcast

// xpad (Cg planes of Hp x Wp) = x planes shifted by (ph, pw), zeros outside the image.
[[maybe_unused]] void pad_planes(const float* x, int64_t Cg, int64_t H, int64_t W, int64_t Hp, int64_t Wp, int64_t ph, int64_t pw,
                float* xpad) {
  const int64_t c0 = std::max<int64_t>(0, pw), c1 = std::min<int64_t>(Wp, W + pw);  // valid columns of a row
  for (int64_t c = 0; c < Cg; ++c) {
    const float* xc = x + c * H * W;
    float* dc = xpad + c * Hp * Wp;
    for (int64_t y = 0; y < Hp; ++y) {
      float* d = dc + y * Wp;
      const int64_t hi = y - ph;
      if (hi < 0 || hi >= H || c1 <= c0) {
        std::memset(d, 0, static_cast<size_t>(Wp) * 4);
        continue;
      }
      for (int64_t t = 0; t < c0; ++t) d[t] = 0.0f;
      std::memcpy(d + c0, xc + hi * W + (c0 - pw), static_cast<size_t>(c1 - c0) * 4);
      for (int64_t t = c1; t < Wp; ++t) d[t] = 0.0f;
    }
  }
}

#if FASTNN_ISA_LEVEL == 2
// Tile over the channels c0 .. c0 + nch of a K block: acc = (acc_in or 0) + sum over the
// (channel, tap) steps of w[k] (32 lanes) x xp[off[tap] + j] (xp = the tile's first pixel in
// the block's first channel of xpad). Not the last block: acc -> acc_io ([pixel][32], in
// L1). Last block: epilogue(acc + bias) transposed into y (ov valid channel rows, stride P).
template <int RP>
void ocvec_tile(int64_t nch, int64_t khw, int64_t plane, const int64_t* __restrict off, const float* __restrict w,
                const float* xp, float* acc_io, bool first, bool last, const float* bias, Activation act, float* y,
                int64_t P, int64_t ov) {
  __m512 acc[RP][2];
#pragma GCC unroll 12
  for (int j = 0; j < RP; ++j) {
    acc[j][0] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc_io + j * OT);
    acc[j][1] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc_io + j * OT + 16);
  }
  for (int64_t c = 0; c < nch; ++c, xp += plane) {
    for (int64_t t = 0; t < khw; ++t, w += OT) {
      const float* s = xp + off[t];
      const __m512 w0 = _mm512_load_ps(w), w1 = _mm512_load_ps(w + 16);
#pragma GCC unroll 12
      for (int j = 0; j < RP; ++j) {
        const __m512 a = _mm512_set1_ps(s[j]);
        acc[j][0] = _mm512_fmadd_ps(a, w0, acc[j][0]);
        acc[j][1] = _mm512_fmadd_ps(a, w1, acc[j][1]);
      }
    }
  }
  if (!last) {
#pragma GCC unroll 12
    for (int j = 0; j < RP; ++j) {
      _mm512_store_ps(acc_io + j * OT, acc[j][0]);
      _mm512_store_ps(acc_io + j * OT + 16, acc[j][1]);
    }
    return;
  }
  const gemm_vf b0 = bias ? (gemm_vf)_mm512_loadu_ps(bias) : gemm_splat(0.0f);
  const gemm_vf b1 = bias ? (gemm_vf)_mm512_loadu_ps(bias + 16) : gemm_splat(0.0f);
  GemmEpilogue ep;
  ep.act = act;
  alignas(64) float t[RP][OT];
#pragma GCC unroll 12
  for (int j = 0; j < RP; ++j) {
    _mm512_store_ps(t[j], (__m512)gemm_epilogue_vec((gemm_vf)acc[j][0], gemm_splat(0.0f), b0, ep));
    _mm512_store_ps(t[j] + 16, (__m512)gemm_epilogue_vec((gemm_vf)acc[j][1], gemm_splat(0.0f), b1, ep));
  }
  for (int64_t o = 0; o < ov; ++o)
#pragma GCC unroll 12
    for (int j = 0; j < RP; ++j) y[o * P + j] = t[j][o];
}

using OcvecTileFn = void (*)(int64_t, int64_t, int64_t, const int64_t*, const float*, const float*, float*, bool,
                             bool, const float*, Activation, float*, int64_t, int64_t);
constexpr OcvecTileFn kOcvecTile[kMaxRP] = {ocvec_tile<1>, ocvec_tile<2>, ocvec_tile<3>,  ocvec_tile<4>,
                                            ocvec_tile<5>, ocvec_tile<6>, ocvec_tile<7>,  ocvec_tile<8>,
                                            ocvec_tile<9>, ocvec_tile<10>, ocvec_tile<11>, ocvec_tile<12>};
#endif

}  // namespace

void conv2d_forward_igemm(const Conv2dArgs& a);

void conv2d_forward_ocvec(const Conv2dArgs& a) {
#if FASTNN_ISA_LEVEL == 2
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t kh = a.kernel_h, kw = a.kernel_w, khw = kh * kw, K = Cg * khw;
  const int64_t Ho = a.out_h, Wo = a.out_w, P = Ho * Wo;
  const int64_t Hp = Ho + (kh - 1) * a.dil_h, Wp = Wo + (kw - 1) * a.dil_w, plane = Hp * Wp;
  const int64_t ntile = cdiv(Og, OT);
  const int nt_max = num_threads();
  // (image, group) pairs, each split into `nsplit` ranges of channel tiles when there
  // are too few pairs to keep every thread busy.
  int64_t nsplit = 1;
  if (N * G < 2 * nt_max) nsplit = std::min(ntile, cdiv(2 * nt_max, N * G));
  const int64_t per_split = cdiv(ntile, nsplit);
  const int64_t items = N * G * nsplit;
  const int nt = static_cast<int>(std::min<int64_t>(nt_max, std::max<int64_t>(items, G * ntile)));
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  int64_t off[64];  // tap offsets in xpad (kh*kw <= 64 here, checked by the front end)
  for (int64_t t = 0; t < khw; ++t) off[t] = (t / kw) * a.dil_h * Wp + (t % kw) * a.dil_w;
  Scratch wp(G * ntile * K * OT);
  // K blocks of whole channels whose weight block (kch * khw * 128 B <= ~20 KiB) stays in
  // L1 while it sweeps the image (a whole 32-channel weight tile streamed from L2 per
  // pixel tile stalled on the weight loads); partial sums go through accbuf.
  int64_t kch = std::max<int64_t>(1, 20480 / (khw * OT * 4));
  kch = cdiv(Cg, cdiv(Cg, kch));

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static)
    for (int64_t it = 0; it < G * ntile; ++it) {  // pack W: [g][tile][c][tap][32]
      const int64_t g = it / ntile, o0 = (it % ntile) * OT, ov = std::min(OT, Og - o0);
      float* d = wp.p + it * K * OT;
      const float* src = a.weight + (g * Og + o0) * K;
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t o = 0; o < ov; ++o) d[k * OT + o] = src[o * K + k];
        for (int64_t o = ov; o < OT; ++o) d[k * OT + o] = 0.0f;
      }
    }
    Scratch xpad(Cg * plane), accbuf(P * OT);
    int64_t padded = -1;  // (image, group) currently in xpad
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t sp = it % nsplit, ng = it / nsplit, g = ng % G, n = ng / G;
      const int64_t t0 = sp * per_split, t1 = std::min(ntile, t0 + per_split);
      if (t0 >= t1) continue;
      if (padded != ng) {
        pad_planes(a.x + n * xbs + g * Cg * a.in_h * a.in_w, Cg, a.in_h, a.in_w, Hp, Wp, a.pad_h, a.pad_w, xpad.p);
        padded = ng;
      }
      float* yg = a.y + n * ybs + g * Og * P;
      for (int64_t tile = t0; tile < t1; ++tile) {
        const int64_t o0 = tile * OT, ov = std::min(OT, Og - o0);
        const float* wt = wp.p + (g * ntile + tile) * K * OT;
        const float* bias = a.bias ? a.bias + g * Og + o0 : nullptr;
        // A partial tile's bias lanes beyond ov are read from a padded copy.
        alignas(64) float bpad[OT];
        if (bias && ov < OT) {
          for (int64_t o = 0; o < OT; ++o) bpad[o] = o < ov ? bias[o] : 0.0f;
          bias = bpad;
        }
        for (int64_t c0 = 0; c0 < Cg; c0 += kch) {
          const int64_t nch = std::min(kch, Cg - c0);
          for (int64_t i = 0; i < Ho; ++i)
            for (int64_t j0 = 0; j0 < Wo; j0 += kMaxRP) {
              const int64_t rp = std::min<int64_t>(kMaxRP, Wo - j0);
              kOcvecTile[rp - 1](nch, khw, plane, off, wt + c0 * khw * OT, xpad.p + c0 * plane + i * Wp + j0,
                                 accbuf.p + (i * Wo + j0) * OT, c0 == 0, c0 + nch >= Cg, bias, a.activation,
                                 yg + o0 * P + i * Wo + j0, P, ov);
            }
        }
      }
    }
  }
#else
  conv2d_forward_igemm(a);  // the front end only picks this kernel at the AVX-512 level
#endif
}

#include "cpu/isa_end.h"
