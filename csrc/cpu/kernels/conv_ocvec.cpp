// Stride-1 convolution forward and grad-weight with the output channels in the vector lanes
// (AVX-512), for layers with many channels (>= 16 per group in and out): 32->64, 64->128,
// 128->128 and their grad-input run as a forward on flipped weights (cpu/conv.cpp picks it;
// the packing reads the flipped weights straight from OIHW, no flipped copy).
//
// Algorithm: per (image, group) the input planes are copied once into a zero-bordered
// per-thread buffer xpad (Cg x Hp x Wp, Hp = Ho + (kh-1)*dh, Wp = Wo + (kw-1)*dw), so every
// tap of every output pixel reads xpad[c][(i + r*dh)*Wp + j + s*dw] with no bounds test.
// Each thread packs the weight tiles it uses, on first use, as panels [g][panel][c][tap][32]
// (zero rows beyond Og). A tile is RP <= 8 consecutive pixels of one output row x 48 output
// channels (RP x 3 zmm accumulators, two panels) or RP <= 12 pixels x 32 channels (RP x 2, one
// panel; channel_tiles: 128 = 48 + 48 + 32, 64 = 32 + 32); per (c, tap) it loads 3 (2) aligned
// weight vectors and broadcasts RP input values, i.e. 3*RP FMAs per 3 + RP loads (2*RP per
// 2 + RP; 8 x 48 was ~4 % faster than 8 x 32 on the 128->128 8x8 forward), every load aligned or a broadcast
// (the masked unaligned pixel loads of the igemm same-width path missed L1 on these
// shapes and ran at ~70 % of the FMA rate). A row's pixels are split into tiles of even
// widths. The tile is transposed into NCHW in registers at the store.
// Blocking: one 32-channel weight tile (Cg*khw*128 B, 147 KiB for 128x3x3) stays in L2
// while it sweeps the image's pixel tiles, in K blocks of whole channels (<= 20 KiB) that
// stay in L1 with the tile's input rows.
// Threads: items are (image, group, output-channel tile range), handed out dynamically; the
// tile range is split when there are fewer than 2 (image, group) pairs per thread (batch 1).
// grad-weight: dY of each image and 32-channel tile is transposed to [pixel][32] (dyT);
// a dW row (input channel c, up to 12 taps, 32 output channels = 2*12 accumulators) sums
// over the pixels dyT[p] x xpad[c][pos(p) + off(tap)] of a batch of images (up to ~1 MiB of
// padded copies and dyT tiles, L2-resident): 2 loads + 12 broadcasts per 24 FMAs, with the
// same padded copies, so no masks and no im2col gather/transposes (the packed GEMM
// path spent ~18 % of 128->128 fwd+bwd there). grad-bias is summed from the same dyT tiles.
// Bound: compute (FMA); extra memory per thread = the packed weights (forward) or the packed
// dW (grad-weight) + one padded image (forward) or a batch's padded images and dyT tiles
// (grad-weight, <= ~1 MiB).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fastnn/activation.h"
#include "fastnn/allocator.h"
#include "fastnn/config.h"
#include "fastnn/conv.h"

#include "cpu/scratch_floats.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/gemm_epilogue.h"

namespace {

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

using Scratch = ::fastnn::cpu::ScratchFloats;

constexpr int64_t OT = 32;  // output channels per tile (2 vectors)
constexpr int kMaxRP = 12;
#if FASTNN_ISA_LEVEL == 2
static_assert(kGemmNR == OT, "weights and dY tiles are packed as the GEMM's B panels");
#endif  // pixels per tile: 24 accumulators + 2 weight vectors + 1 broadcast

#if FASTNN_ISA_LEVEL == 2
// xpad (Cg planes of Hp x Wp) = x planes shifted by (ph, pw), zeros outside the image.
// When every input pixel lands inside the padded plane (stride 1: always), the padded plane
// is the input plane with zeros inserted, so it is written in 16-float pieces of one
// expanding load each (vexpandps: the piece's inside lanes take the next input floats in
// order, the border lanes 0), the masks and counts of the plane's pieces computed once per
// call. A masked load / store per padded row (the general path, kept for the other shapes)
// spent ~4.5 % of a 128->128 8x8 forward on its 1280 short rows per image.
class PlanePadder {
 public:
  PlanePadder(int64_t H, int64_t W, int64_t Hp, int64_t Wp, int64_t ph, int64_t pw)
      : H_(H), W_(W), Hp_(Hp), Wp_(Wp), ph_(ph), pw_(pw), plane_(Hp * Wp), pieces_(cdiv(plane_, 16)) {
    expand_ = ph >= 0 && pw >= 0 && ph + H <= Hp && pw + W <= Wp && pieces_ <= kMaxPieces;
    if (!expand_) return;
    for (int64_t q = 0; q < pieces_; ++q) mask_[q] = 0, count_[q] = 0;
    for (int64_t r = ph; r < ph + H; ++r)
      for (int64_t p = r * Wp + pw; p < r * Wp + pw + W; ++p) {
        mask_[p / 16] = static_cast<__mmask16>(mask_[p / 16] | (1u << (p % 16)));
        ++count_[p / 16];
      }
  }

  void pad(const float* x, int64_t Cg, float* xpad) const {
    if (!expand_) return pad_rows(x, Cg, xpad);
    const int64_t full = plane_ / 16;
    const __mmask16 tail = static_cast<__mmask16>((1u << (plane_ % 16)) - 1u);
    for (int64_t c = 0; c < Cg; ++c, xpad += plane_) {
      const float* src = x + c * H_ * W_;
      for (int64_t q = 0; q < full; ++q) {
        _mm512_storeu_ps(xpad + q * 16, _mm512_maskz_expandloadu_ps(mask_[q], src));
        src += count_[q];
      }
      if (tail) _mm512_mask_storeu_ps(xpad + full * 16, tail, _mm512_maskz_expandloadu_ps(mask_[full], src));
    }
  }

 private:
  static constexpr int64_t kMaxPieces = 256;  // planes up to 4096 floats (64 x 64)
  // Each row is written in 16-float pieces by masked loads / stores (lanes outside the image
  // read nothing and stay 0), with the masks of the first 8 pieces computed once.
  void pad_rows(const float* x, int64_t Cg, float* xpad) const {
    const int64_t H = H_, W = W_, Hp = Hp_, Wp = Wp_, ph = ph_, pw = pw_;
    auto piece_masks = [&](int64_t q, __mmask16& load, __mmask16& store) {
      const int64_t n = std::min<int64_t>(16, Wp - q);
      store = static_cast<__mmask16>((1u << n) - 1u);
      const int64_t lo = std::max<int64_t>(0, pw - q), hi = std::min<int64_t>(n, W + pw - q);  // q+l-pw in [0, W)
      load = hi > lo ? static_cast<__mmask16>(((1u << hi) - 1u) & ~((1u << lo) - 1u)) : 0;
    };
    constexpr int kCached = 8;
    __mmask16 load_m[kCached], store_m[kCached];
    for (int i = 0; i < kCached && i * 16 < Wp; ++i) piece_masks(i * 16, load_m[i], store_m[i]);
    for (int64_t c = 0; c < Cg; ++c) {
      const float* xc = x + c * H * W;
      float* dc = xpad + c * Hp * Wp;
      for (int64_t yy = 0; yy < Hp; ++yy) {
        float* d = dc + yy * Wp;
        const int64_t hi = yy - ph;
        const bool inside = hi >= 0 && hi < H;
        const float* src = xc + hi * W - pw;  // src[t] is the row's column t - pw (read only where valid)
        for (int64_t q = 0, i = 0; q < Wp; q += 16, ++i) {
          __mmask16 load, store;
          if (i < kCached) load = load_m[i], store = store_m[i];
          else piece_masks(q, load, store);
          const __m512 v = inside && load ? _mm512_maskz_loadu_ps(load, src + q) : _mm512_setzero_ps();
          _mm512_mask_storeu_ps(d + q, store, v);
        }
      }
    }
  }

  int64_t H_, W_, Hp_, Wp_, ph_, pw_, plane_, pieces_;
  bool expand_ = false;
  __mmask16 mask_[kMaxPieces];
  uint8_t count_[kMaxPieces];
};

// Prefetches a block of floats into L2 a few lines per step of the compute loop. Each thread
// pads (and, in grad-weight, transposes dY of) its next image in a short burst between long
// compute phases, so the hardware prefetcher never ran ahead and those bursts waited on
// memory (~3 % of a 128->128 8x8 forward / grad-weight); a burst of prefetches instead
// stalled on the fill buffers, spread over the compute they are hidden.
struct SpreadPrefetch {
  const char* p = nullptr;
  int64_t lines = 0, per_step = 0;
  void start(const float* q, int64_t n, int64_t steps) {
    p = reinterpret_cast<const char*>(q), lines = cdiv(n, 16), per_step = cdiv(lines, std::max<int64_t>(1, steps));
  }
  void step() {
    for (int64_t k = 0; k < per_step && lines > 0; ++k, --lines, p += 64) _mm_prefetch(p, _MM_HINT_T1);
  }
};

// dst[i][o] (rows of 32 floats) = src[o * stride + i * step] for i < count, o < ov, and 0
// for o >= ov: two 16-lane gathers per row (int32 indices: the front end keeps 31 * stride
// below 2^31). Packs the weights and transposes dY tiles; the scalar transposes were ~2 %
// (forward) and ~4 % (grad-weight) of the 128->128 8x8 layer.
void gather_rows32(const float* src, int64_t stride, int64_t ov, int64_t count, int64_t step, float* dst) {
  const __m512i idx0 = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(stride)));
  const __m512i idx1 = _mm512_add_epi32(idx0, _mm512_set1_epi32(static_cast<int>(16 * stride)));
  const __mmask16 m0 = static_cast<__mmask16>(ov >= 16 ? 0xffffu : (1u << ov) - 1u);
  const __mmask16 m1 = static_cast<__mmask16>(ov >= 32 ? 0xffffu : ov > 16 ? (1u << (ov - 16)) - 1u : 0u);
  for (int64_t i = 0; i < count; ++i, src += step, dst += OT) {
    _mm512_store_ps(dst, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, idx0, src, 4));
    _mm512_store_ps(dst + 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, idx1, src, 4));
  }
}

// (s0, s1) += the 32-float rows src[i * stride], i < count, added in order.
inline void sum_rows32(const float* src, int64_t stride, int64_t count, __m512& s0, __m512& s1) {
  for (int64_t i = 0; i < count; ++i, src += stride)
    s0 = _mm512_add_ps(s0, _mm512_load_ps(src)), s1 = _mm512_add_ps(s1, _mm512_load_ps(src + 16));
}

// y[o * P + j] = v[j][o / 16][o % 16] for the ov <= 16 * NV channels o and the RP pixels j: the
// tile transposed into NCHW rows in registers, 8 pixels x 2 vectors at a time. Rows r < 8 of a
// 16 x 16 block are pixels (p0 + r) of channels vb*16 + 0..15, rows 8 + r the same pixels of
// channels vb*16 + 16..31 (zeros when the tile has no vector vb + 1); after the transpose, row c
// holds channel c's 8 pixels in its low half and channel c + 16's in its high half, each stored
// by one masked store. The scalar transposed store (2 * 32 * RP scalar loads / stores per tile)
// was ~3 % of a 128->128 8x8 forward.
template <int RP, int NV>
inline void store_channel_rows(const __m512 (&v)[RP][NV], float* y, int64_t P, int64_t ov) {
#pragma GCC unroll 2
  for (int vb = 0; vb < NV; vb += 2) {
    const bool pair = vb + 1 < NV;
    const int vb1 = pair ? vb + 1 : vb;  // in range; unused when !pair
    const int64_t ovr = ov - vb * 16;
    if (ovr <= 0) break;
    float* yv = y + vb * 16 * P;
#pragma GCC unroll 2
    for (int p0 = 0; p0 < RP; p0 += 8) {
      const int n = RP - p0 < 8 ? RP - p0 : 8;
      __m512 r[16];
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) {
        r[j] = j < n ? v[p0 + j][vb] : _mm512_setzero_ps();
        r[8 + j] = j < n && pair ? v[p0 + j][vb1] : _mm512_setzero_ps();
      }
      // Butterfly transpose: at block size b, rows i and i + b (i & b == 0) swap their b x b
      // off-diagonal blocks, lanes L with L & b set in row i <-> lanes L - b of row i + b.
#pragma GCC unroll 4
      for (int b = 8; b >= 1; b /= 2) {
        alignas(64) int lo[16], hi[16];
        for (int L = 0; L < 16; ++L) {
          lo[L] = (L & b) ? 16 + L - b : L;
          hi[L] = (L & b) ? 16 + L : L + b;
        }
        const __m512i ilo = _mm512_load_si512(lo), ihi = _mm512_load_si512(hi);
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) {
          if (i & b) continue;
          const __m512 a = r[i], c = r[i + b];
          r[i] = _mm512_permutex2var_ps(a, ilo, c);
          r[i + b] = _mm512_permutex2var_ps(a, ihi, c);
        }
      }
      const __mmask16 low = static_cast<__mmask16>((1u << n) - 1u), high = static_cast<__mmask16>(low << 8);
#pragma GCC unroll 16
      for (int c = 0; c < 16; ++c) {
        if (c < ovr) _mm512_mask_storeu_ps(yv + c * P + p0, low, r[c]);
        if (c + 16 < ovr) _mm512_mask_storeu_ps(yv + (c + 16) * P + p0 - 8, high, r[c]);  // lanes 8.. -> pixels p0..
      }
    }
  }
}

// Tile over the nk (channel, tap) steps k of a K block: acc = (acc_in or 0) + sum over k of
// w[k] (16 * NV lanes) x xp[off[k] + j] (xp = the tile's first pixel in the block's first channel
// of xpad, off[k] = channel * plane + the tap's offset: one flat loop, whose exit the branch
// predictor misses once per block instead of once per channel). The weights of a step are
// lanes 0..31 of the packed panel w[k] (rows of 32) and, for NV == 3, lanes 0..15 of the
// second panel wb[k] (rows of 32, the upper 16 zero and never read). Not the last block:
// acc -> acc_io ([pixel][16 * NV], in L1). Last block: epilogue(acc + bias) transposed into y
// (ov valid channel rows, stride P).
template <int RP, int NV>
void ocvec_tile(int64_t nk, const int64_t* __restrict off, const float* __restrict w, const float* __restrict wb,
                const float* xp, float* acc_io, bool first, bool last, const float* bias, Activation act, float* y,
                int64_t P, int64_t ov) {
  static_assert(NV == 2 || NV == 3, "32- or 48-channel tiles");
  constexpr int TW = 16 * NV;
  __m512 acc[RP][NV];
#pragma GCC unroll 12
  for (int j = 0; j < RP; ++j)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[j][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(acc_io + j * TW + v * 16);
  for (int64_t k = 0; k < nk; ++k, w += OT, wb += OT) {
    const float* s = xp + off[k];
    __m512 wv[NV];
    wv[0] = _mm512_load_ps(w), wv[1] = _mm512_load_ps(w + 16);
    if (NV == 3) wv[NV - 1] = _mm512_load_ps(wb);
#pragma GCC unroll 12
    for (int j = 0; j < RP; ++j) {
      const __m512 a = _mm512_set1_ps(s[j]);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_fmadd_ps(a, wv[v], acc[j][v]);
    }
  }
  if (!last) {
#pragma GCC unroll 12
    for (int j = 0; j < RP; ++j)
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) _mm512_store_ps(acc_io + j * TW + v * 16, acc[j][v]);
    return;
  }
  GemmEpilogue ep;
  ep.act = act;
#pragma GCC unroll 3
  for (int v = 0; v < NV; ++v) {
    const gemm_vf b = bias ? (gemm_vf)_mm512_loadu_ps(bias + v * 16) : gemm_splat(0.0f);
#pragma GCC unroll 12
    for (int j = 0; j < RP; ++j) acc[j][v] = (__m512)gemm_epilogue_vec((gemm_vf)acc[j][v], gemm_splat(0.0f), b, ep);
  }
  store_channel_rows<RP, NV>(acc, y, P, ov);
}

using OcvecTileFn = void (*)(int64_t, const int64_t*, const float*, const float*, const float*, float*, bool,
                             bool, const float*, Activation, float*, int64_t, int64_t);
constexpr int kMaxRP48 = 8;  // 48-channel tiles: 8 x 3 accumulators + 3 weight vectors + 1 broadcast
constexpr OcvecTileFn kOcvecTile[kMaxRP] = {
    ocvec_tile<1, 2>, ocvec_tile<2, 2>, ocvec_tile<3, 2>,  ocvec_tile<4, 2>,  ocvec_tile<5, 2>,  ocvec_tile<6, 2>,
    ocvec_tile<7, 2>, ocvec_tile<8, 2>, ocvec_tile<9, 2>, ocvec_tile<10, 2>, ocvec_tile<11, 2>, ocvec_tile<12, 2>};
constexpr OcvecTileFn kOcvecTile48[kMaxRP48] = {ocvec_tile<1, 3>, ocvec_tile<2, 3>, ocvec_tile<3, 3>,
                                                ocvec_tile<4, 3>, ocvec_tile<5, 3>, ocvec_tile<6, 3>,
                                                ocvec_tile<7, 3>, ocvec_tile<8, 3>};

// grad-weight, same layout: acc[t] (32 output-channel lanes) += sum over the pixels of dyT[p]
// (32 lanes) x xpad[pos(p) + off[t]] for NT taps of one input channel, over nb images (dyT
// and xc `dy_img` / `x_img` floats apart); acc lives in dwp ([tap][32], loaded and stored
// once per call: the packed dW is L2-resident, and per image those loads and stores were
// ~6 % of the 128->128 8x8 grad-weight). dyT = the images' dY tiles transposed to
// [pixel][32]; 2 loads + NT broadcasts per 2*NT FMAs.
template <int NT>
void ocvec_dw_taps(int64_t nb, int64_t Ho, int64_t Wo, int64_t Wp, const int64_t* __restrict off,
                   const float* __restrict dyT, int64_t dy_img, const float* xc, int64_t x_img, float* dwp) {
  __m512 acc[NT][2];
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t) acc[t][0] = _mm512_load_ps(dwp + t * OT), acc[t][1] = _mm512_load_ps(dwp + t * OT + 16);
  for (int64_t b = 0; b < nb; ++b) {
    const float* d = dyT + b * dy_img;
    const float* xr = xc + b * x_img;
    for (int64_t i = 0; i < Ho; ++i, xr += Wp) {
      for (int64_t j = 0; j < Wo; ++j, d += OT) {
        const __m512 d0 = _mm512_load_ps(d), d1 = _mm512_load_ps(d + 16);
#pragma GCC unroll 12
        for (int t = 0; t < NT; ++t) {
          const __m512 a = _mm512_set1_ps(xr[j + off[t]]);
          acc[t][0] = _mm512_fmadd_ps(a, d0, acc[t][0]);
          acc[t][1] = _mm512_fmadd_ps(a, d1, acc[t][1]);
        }
      }
    }
  }
#pragma GCC unroll 12
  for (int t = 0; t < NT; ++t) _mm512_store_ps(dwp + t * OT, acc[t][0]), _mm512_store_ps(dwp + t * OT + 16, acc[t][1]);
}

using OcvecDwFn = void (*)(int64_t, int64_t, int64_t, int64_t, const int64_t*, const float*, int64_t, const float*,
                           int64_t, float*);
constexpr OcvecDwFn kOcvecDw[kMaxRP] = {ocvec_dw_taps<1>, ocvec_dw_taps<2>, ocvec_dw_taps<3>,  ocvec_dw_taps<4>,
                                        ocvec_dw_taps<5>, ocvec_dw_taps<6>, ocvec_dw_taps<7>,  ocvec_dw_taps<8>,
                                        ocvec_dw_taps<9>, ocvec_dw_taps<10>, ocvec_dw_taps<11>, ocvec_dw_taps<12>};
#endif

}  // namespace

void conv2d_forward_igemm(const Conv2dArgs& a);
void conv2d_backward_weight_igemm(const Conv2dArgs& a);

#if FASTNN_ISA_LEVEL == 2
namespace {

// Where weight (o, c, tap) of the forward's OIHW tensor (o = g*Og + o', tap < khw) is:
// w[g*g_stride + o'*o_stride + c*c_stride + (flipped ? khw-1-tap : tap)]. A plain forward
// reads its own weights; the grad-input (a forward on dY with W'[g*Cg + c][o][tap] =
// W[g*Og + o][c][khw-1-tap]) reads the original weights through this view, so the flipped
// copy is never written (it was a serial pass over the weights before the packing).
struct WeightView {
  const float* w;
  int64_t g_stride, o_stride, c_stride;
  bool flipped;
};

// The output-channel tiles of a group of Og channels: 48 channels (3 vectors, 8 pixels: 2 + 8 loads
// per 24 FMAs against 2 + 8 per 16 for 32 channels, ~4 % faster on the 128->128 8x8 layer, more
// when the box runs loads slowly) where Og allows, the remainder in 32-channel tiles:
// 128 = 48 + 48 + 32, 64 = 32 + 32 (48 + 16 would leave a 16-channel tile of 1 weight load per
// 1 FMA per pixel), 49 = 32 + 17, 129 = 48 + 48 + 33 (a partial 48-channel tile).
struct OcTile {
  int64_t o0, ov, nv;  // first channel, valid channels, vectors (2 or 3)
};

std::vector<OcTile> channel_tiles(int64_t Og) {
  std::vector<OcTile> t;
  auto add = [&](int64_t width, int64_t ov) {
    const int64_t o0 = t.empty() ? 0 : t.back().o0 + t.back().ov;
    t.push_back({o0, ov, width / 16});
  };
  if (Og <= 32) {
    add(32, Og);
    return t;
  }
  const int64_t q = Og / 48, r = Og % 48;
  if (r == 0 || r > 32) {
    for (int64_t i = 0; i < q; ++i) add(48, 48);
    if (r) add(48, r);
  } else if (r > 16 || q == 0) {
    for (int64_t i = 0; i < q; ++i) add(48, 48);
    add(32, r);
  } else {  // 1 <= r <= 16, q >= 1: the last 48 + r channels as 32 + (16 + r)
    for (int64_t i = 0; i + 1 < q; ++i) add(48, 48);
    add(32, 32);
    add(32, 16 + r);
  }
  return t;
}

void forward_ocvec(const Conv2dArgs& a, const WeightView& wv) {
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t kh = a.kernel_h, kw = a.kernel_w, khw = kh * kw, K = Cg * khw;
  const int64_t Ho = a.out_h, Wo = a.out_w, P = Ho * Wo;
  const int64_t Hp = Ho + (kh - 1) * a.dil_h, Wp = Wo + (kw - 1) * a.dil_w, plane = Hp * Wp;
  const std::vector<OcTile> tiles = channel_tiles(Og);
  const int64_t ntile = static_cast<int64_t>(tiles.size());
  // Packed panels of a group: a 32-channel tile has one ([c][tap][32]), a 48-channel tile two
  // (channels 0..31 and 32..47, the second's upper 16 lanes zero).
  std::vector<int64_t> panel0(static_cast<size_t>(ntile + 1), 0);
  for (int64_t t = 0; t < ntile; ++t) panel0[t + 1] = panel0[t] + (tiles[t].nv == 3 ? 2 : 1);
  const int64_t npanel = panel0[ntile];
  const int nt_max = num_threads();
  // (image, group) pairs, each split into `nsplit` ranges of channel tiles when there
  // are too few pairs to keep every thread busy.
  int64_t nsplit = 1;
  if (N * G < 2 * nt_max) nsplit = std::min(ntile, cdiv(2 * nt_max, N * G));
  const int64_t per_split = cdiv(ntile, nsplit);
  const int64_t items = N * G * nsplit;
  const int nt = static_cast<int>(std::min<int64_t>(nt_max, items));
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  const PlanePadder padder(a.in_h, a.in_w, Hp, Wp, a.pad_h, a.pad_w);
  // K blocks of whole channels whose weight block (kch * khw * 128 or 192 B <= ~20 KiB) stays in
  // L1 while it sweeps the image (a whole 32-channel weight tile streamed from L2 per
  // pixel tile stalled on the weight loads); partial sums go through accbuf.
  constexpr int64_t kBlockFloats = 20480 / 4;
  auto channel_block = [&](int64_t width) {
    const int64_t kch = std::max<int64_t>(1, kBlockFloats / (khw * width));
    return cdiv(Cg, cdiv(Cg, kch));
  };
  const int64_t kch32 = channel_block(32), kch48 = channel_block(48);
  // Pixel tiles of a row: as few as fit the tile's maximum width and of even widths (16 = 8 + 8,
  // not 12 + 4: a 4-pixel tile has 8 accumulators, too few to hide the FMA latency; 64->128
  // 16x16 ~+3 %). jb32 / jb48: tile q = pixels jb[q] .. jb[q+1] (no divisions per tile).
  auto row_tiles = [&](int64_t max_rp) {
    const int64_t n = cdiv(Wo, max_rp);
    std::vector<int64_t> jb(static_cast<size_t>(n + 1));
    for (int64_t q = 0; q <= n; ++q) jb[q] = Wo * q / n;
    return jb;
  };
  const std::vector<int64_t> jb32 = row_tiles(kMaxRP), jb48 = row_tiles(kMaxRP48);
  // xpad offsets of the block's (channel, tap) steps: kch * khw <= max(kBlockFloats / 32, 64)
  // (kh*kw <= 64 here, checked by the front end).
  int64_t off[std::max<int64_t>(kBlockFloats / OT, 64)];
  for (int64_t k = 0; k < kch32 * khw; ++k)
    off[k] = (k / khw) * plane + (k % khw / kw) * a.dil_h * Wp + (k % kw) * a.dil_w;

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    // Each thread packs the weight tiles it uses into its own copy when it first needs them
    // ([g][panel][c][tap][32]): no barrier between packing and computing (a thread that woke
    // late held the other up there), and the tiles are written into the L2 that reads them.
    Scratch wp(G * npanel * K * OT);
    std::vector<uint8_t> packed(static_cast<size_t>(G * ntile), 0);
    auto pack_panel = [&](int64_t g, int64_t o0, int64_t ov, float* d) {
      const float* src = wv.w + g * wv.g_stride + o0 * wv.o_stride;
      if (!wv.flipped && wv.c_stride == khw && wv.o_stride == K) {  // [o][k] rows: a plain transpose
        gemm_pack_b(K, ov, src, 1, K, d);  // 16 x 16 register transposes (the gathers: ~1.5 % of 128->128)
        return;
      }
      for (int64_t c = 0; c < Cg; ++c)  // the 32 output channels of one (c, tap) are o_stride apart
        gather_rows32(src + c * wv.c_stride + (wv.flipped ? khw - 1 : 0), wv.o_stride, ov, khw, wv.flipped ? -1 : 1,
                      d + c * khw * OT);
    };
    auto weight_tile = [&](int64_t g, int64_t tile) -> const float* {
      const OcTile& t = tiles[tile];
      float* d = wp.p + (g * npanel + panel0[tile]) * K * OT;
      if (packed[g * ntile + tile]) return d;
      packed[g * ntile + tile] = 1;
      pack_panel(g, t.o0, std::min(OT, t.ov), d);
      if (t.nv == 3) pack_panel(g, t.o0 + OT, t.ov - OT, d + K * OT);
      return d;
    };
    Scratch xpad(Cg * plane), accbuf(P * 48);
    SpreadPrefetch pf_x, pf_y;
    int64_t padded = -1;  // (image, group) currently in xpad
    const int64_t nth = omp_get_num_threads();
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t sp = it % nsplit, ng = it / nsplit, g = ng % G, n = ng / G;
      const int64_t t0 = sp * per_split, t1 = std::min(ntile, t0 + per_split);
      if (t0 >= t1) continue;
      if (padded != ng) {
        padder.pad(a.x + n * xbs + g * Cg * a.in_h * a.in_w, Cg, xpad.p);
        padded = ng;
        // Items are handed out in turn (dynamic: the two cores of the VM run at uneven
        // speeds, a static split left one waiting ~5 % of a 128->128 8x8 forward at the end),
        // so this thread's next item is most likely `nth` items on.
        const int64_t next = (it + nth) / nsplit;
        if (next < N * G && next != ng) {
          const int64_t n1 = next / G, g1 = next % G;
          const int64_t steps = (t1 - t0) * cdiv(Cg, kch32) * Ho * static_cast<int64_t>(jb32.size() - 1);
          pf_x.start(a.x + n1 * xbs + g1 * Cg * a.in_h * a.in_w, Cg * a.in_h * a.in_w, steps);
          pf_y.start(a.y + n1 * ybs + g1 * Og * P, Og * P, steps);
        }
      }
      float* yg = a.y + n * ybs + g * Og * P;
      for (int64_t tile = t0; tile < t1; ++tile) {
        const OcTile& t = tiles[tile];
        const int64_t o0 = t.o0, ov = t.ov, tw = t.nv * 16;
        const float* wt = weight_tile(g, tile);
        const float* wt2 = t.nv == 3 ? wt + K * OT : wt;
        const float* bias = a.bias ? a.bias + g * Og + o0 : nullptr;
        // A partial tile's bias lanes beyond ov are read from a padded copy.
        alignas(64) float bpad[48];
        if (bias && ov < tw) {
          for (int64_t o = 0; o < tw; ++o) bpad[o] = o < ov ? bias[o] : 0.0f;
          bias = bpad;
        }
        const bool wide = t.nv == 3;
        const int64_t kch = wide ? kch48 : kch32;
        const std::vector<int64_t>& jb = wide ? jb48 : jb32;
        const OcvecTileFn* fns = wide ? kOcvecTile48 : kOcvecTile;
        const int64_t ntj = static_cast<int64_t>(jb.size()) - 1;
        for (int64_t c0 = 0; c0 < Cg; c0 += kch) {
          const int64_t nch = std::min(kch, Cg - c0);
          for (int64_t i = 0; i < Ho; ++i)
            for (int64_t q = 0; q < ntj; ++q) {
              const int64_t j0 = jb[q], rp = jb[q + 1] - j0;
              pf_x.step(), pf_y.step();
              fns[rp - 1](nch * khw, off, wt + c0 * khw * OT, wt2 + c0 * khw * OT, xpad.p + c0 * plane + i * Wp + j0,
                          accbuf.p + (i * Wo + j0) * tw, c0 == 0, c0 + nch >= Cg, bias, a.activation,
                          yg + o0 * P + i * Wo + j0, P, ov);
            }
        }
      }
    }
  }
}

}  // namespace
#endif

void conv2d_forward_ocvec(const Conv2dArgs& a) {
#if FASTNN_ISA_LEVEL == 2
  const int64_t Og = a.out_channels / a.groups, K = a.in_channels / a.groups * a.kernel_h * a.kernel_w;
  forward_ocvec(a, WeightView{a.weight, Og * K, K, a.kernel_h * a.kernel_w, false});
#else
  conv2d_forward_igemm(a);  // the front end only picks this kernel at the AVX-512 level
#endif
}

// b = the grad-input's forward on dY (cpu/conv.cpp, backward_input_as_forward) with
// b.weight = the original OIHW weights (out_channels = b.in_channels, in_channels = b.out_channels).
void conv2d_backward_input_ocvec(const Conv2dArgs& b) {
#if FASTNN_ISA_LEVEL == 2
  const int64_t G = b.groups, Og = b.in_channels / G, Cg = b.out_channels / G, khw = b.kernel_h * b.kernel_w;
  forward_ocvec(b, WeightView{b.weight, Og * Cg * khw, khw, Cg * khw, true});
#else
  (void)b;  // the front end only picks this kernel at the AVX-512 level
#endif
}

// dW[o][c][tap] = sum over images and pixels of dY[o][p] * xpad[c][p + off(tap)] (and db when
// a.db is set: the front end then skips its own bias reduction), output
// channels in the lanes. Threads: with at least as many images as threads, each thread sums
// a fixed contiguous range of images into a private packed dW and the private copies are
// added in thread order (the result does not depend on timing); with fewer images, each
// thread owns a range of (group, channel tile, input channel) rows over all images.
void conv2d_backward_weight_ocvec(const Conv2dArgs& a) {
#if FASTNN_ISA_LEVEL == 2
  const int64_t N = a.batch, G = a.groups, Cg = a.in_channels / G, Og = a.out_channels / G;
  const int64_t kh = a.kernel_h, kw = a.kernel_w, khw = kh * kw;
  const int64_t Ho = a.out_h, Wo = a.out_w, P = Ho * Wo;
  const int64_t Hp = Ho + (kh - 1) * a.dil_h, Wp = Wo + (kw - 1) * a.dil_w, plane = Hp * Wp;
  const int64_t ntile = cdiv(Og, OT), rows = G * ntile * Cg;  // rows of the packed dW: khw x 32 floats each
  const int64_t wsize = rows * khw * OT;
  const int nt_max = num_threads();
  const bool by_image = N >= nt_max;
  const int nt = static_cast<int>(by_image ? std::min<int64_t>(nt_max, N) : std::min<int64_t>(nt_max, rows));
  const int64_t xbs = a.xbs(), ybs = a.ybs();
  int64_t off[64];
  const PlanePadder padder(a.in_h, a.in_w, Hp, Wp, a.pad_h, a.pad_w);
  for (int64_t t = 0; t < khw; ++t) off[t] = (t / kw) * a.dil_h * Wp + (t % kw) * a.dil_w;
  // Images per pass: their padded copies and dY tiles (<= ~1 MiB) stay in L2 while each dW
  // row sums over all of them (16 images per thread for 128->128 8x8).
  const int64_t per_image = Cg * plane + P * OT;
  const int64_t nbatch = std::max<int64_t>(1, std::min<int64_t>(cdiv(N, nt), (1 << 18) / per_image));
  Scratch acc(static_cast<int64_t>(by_image ? nt : 1) * wsize);
  // grad-bias rides along (the plain reduction ran on one thread for the 128->128 8x8 layer):
  // per-thread partial sums of the dY tiles, [g][tile][32], reduced in thread order.
  const int64_t nbias = G * ntile * OT;
  Scratch dbacc(a.db ? static_cast<int64_t>(by_image ? nt : 1) * nbias : 0);
  if (a.db) std::memset(dbacc.p, 0, static_cast<size_t>((by_image ? nt : 1) * nbias) * 4);

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t n0 = by_image ? N * t / nth : 0, n1 = by_image ? N * (t + 1) / nth : N;
    const int64_t r0 = by_image ? 0 : rows * t / nth, r1 = by_image ? rows : rows * (t + 1) / nth;
    float* mine = acc.p + (by_image ? t * wsize : 0);
    std::memset(mine + r0 * khw * OT, 0, static_cast<size_t>((r1 - r0) * khw * OT) * 4);
    Scratch xpad(nbatch * Cg * plane), dyT(nbatch * P * OT);
    SpreadPrefetch pf_x, pf_y;
    for (int64_t nb0 = n0; nb0 < n1; nb0 += nbatch) {
      const int64_t nb = std::min(nbatch, n1 - nb0);
      for (int64_t g = r0 / (ntile * Cg); g < G && g * ntile * Cg < r1; ++g) {
        for (int64_t b = 0; b < nb; ++b)
          padder.pad(a.x + (nb0 + b) * xbs + g * Cg * a.in_h * a.in_w, Cg, xpad.p + b * Cg * plane);
        if (nb0 + nb < n1) {  // the next batch of images (the groups in between ride along)
          const int64_t steps = ntile * Cg * cdiv(khw, kMaxRP), nn = std::min(nbatch, n1 - nb0 - nb) - 1;
          pf_x.start(a.x + (nb0 + nb) * xbs + g * Cg * a.in_h * a.in_w, nn * xbs + Cg * a.in_h * a.in_w, steps);
          pf_y.start(a.dy + (nb0 + nb) * ybs + g * Og * P, nn * ybs + Og * P, steps);
        }
        for (int64_t tile = 0; tile < ntile; ++tile) {
          const int64_t rb = (g * ntile + tile) * Cg;  // first row of this tile
          const int64_t c0 = std::max<int64_t>(0, r0 - rb), c1 = std::min<int64_t>(Cg, r1 - rb);
          if (c0 >= c1) continue;
          const int64_t o0 = tile * OT, ov = std::min(OT, Og - o0);
          for (int64_t b = 0; b < nb; ++b) {  // dyT[b][p][o]: the GEMM's B-panel layout (kGemmNR == OT)
            gemm_pack_b(P, ov, a.dy + (nb0 + b) * ybs + (g * Og + o0) * P, 1, P, dyT.p + b * P * OT);
            if (a.db && c0 == 0) {  // this thread owns the tile's first row: it sums the tile's db
              float* d = dbacc.p + (by_image ? t * nbias : 0) + (g * ntile + tile) * OT;
              __m512 s0 = _mm512_load_ps(d), s1 = _mm512_load_ps(d + 16);
              sum_rows32(dyT.p + b * P * OT, OT, P, s0, s1);
              _mm512_store_ps(d, s0), _mm512_store_ps(d + 16, s1);
            }
          }
          for (int64_t c = c0; c < c1; ++c)
            for (int64_t t0 = 0; t0 < khw; t0 += kMaxRP) {
              const int64_t ntap = std::min<int64_t>(kMaxRP, khw - t0);
              pf_x.step(), pf_y.step();
              kOcvecDw[ntap - 1](nb, Ho, Wo, Wp, off + t0, dyT.p, P * OT, xpad.p + c * plane, Cg * plane,
                                 mine + ((rb + c) * khw + t0) * OT);
            }
        }
      }
    }
    // Every row must be finished before any is unpacked (the unpack splits rows differently).
#pragma omp barrier
    // Unpack (and, by image, reduce in thread order) into OIHW: row (g, tile, c) -> dw[g*Og + o][c][tap].
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t c = r % Cg, tile = (r / Cg) % ntile, g = r / (Cg * ntile);
      const int64_t o0 = tile * OT, ov = std::min(OT, Og - o0);
      float* dst = a.dw + ((g * Og + o0) * Cg + c) * khw;
      const int64_t copies = by_image ? nth : 1;  // thread order: the sums do not depend on timing
      alignas(64) float sum[OT];
      for (int64_t tp = 0; tp < khw; ++tp) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        sum_rows32(acc.p + (r * khw + tp) * OT, wsize, copies, s0, s1);
        _mm512_store_ps(sum, s0), _mm512_store_ps(sum + 16, s1);
        for (int64_t o = 0; o < ov; ++o) dst[o * Cg * khw + tp] = sum[o];
      }
      if (a.db && c == 0) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        sum_rows32(dbacc.p + (g * ntile + tile) * OT, nbias, copies, s0, s1);
        _mm512_store_ps(sum, s0), _mm512_store_ps(sum + 16, s1);
        for (int64_t o = 0; o < ov; ++o) a.db[g * Og + o0 + o] = sum[o];
      }
    }
  }
#else
  conv2d_backward_weight_igemm(a);  // the front end only picks this kernel at the AVX-512 level
#endif
}

#include "cpu/isa_end.h"
