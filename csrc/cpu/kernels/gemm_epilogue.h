// Vectorised activations for the GEMM epilogue, written once with GCC vector
// extensions so each ISA compile (16/32/64-byte vectors) gets its own code. Include
// after "cpu/isa_begin.h" (like gemm_microkernel.h).
//
// Accuracy (float32, vs the exact function): exp: Cephes polynomial, ~2 ulp;
// sigmoid / gelu_tanh: via exp, ~3 ulp relative; tanh: via exp away from 0 (abs error
// ~1e-7 near |x| = 0.25), odd Taylor series below |x| < 0.25 (no cancellation);
// gelu (erf form): Abramowitz-Stegun 7.1.26, abs error of erf <= 1.5e-7, so
// |gelu error| <= ~1e-7 * |x|. Inputs are clamped where exp would overflow; NaN
// propagates.
#pragma once
#ifndef FASTNN_ISA_NS
#error "include cpu/kernels/gemm_epilogue.h after cpu/isa_begin.h"
#endif

typedef float gemm_vf __attribute__((vector_size(FASTNN_VEC_BYTES), aligned(4), may_alias));
typedef int32_t gemm_vi __attribute__((vector_size(FASTNN_VEC_BYTES), aligned(4), may_alias));
constexpr int kGemmVecLanes = FASTNN_VEC_BYTES / 4;

static inline gemm_vf gemm_splat(float f) { return gemm_vf{} + f; }

static inline gemm_vf gemm_vexp(gemm_vf x) {
  // exp(x) = 2^n * exp(r), n = round(x / ln2), |r| <= ln2/2.
  x = x > 88.0f ? gemm_splat(88.0f) : x;
  x = x < -87.0f ? gemm_splat(-87.0f) : x;
  const gemm_vf magic = gemm_splat(12582912.0f);  // 1.5 * 2^23: adds round to nearest
  gemm_vf n = (x * 1.44269504088896341f + magic) - magic;
  gemm_vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  gemm_vf p = gemm_splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  gemm_vi e = (__builtin_convertvector(n, gemm_vi) + 127) << 23;
  return p * reinterpret_cast<gemm_vf&>(e);
}

static inline gemm_vf gemm_vsigmoid(gemm_vf x) { return 1.0f / (1.0f + gemm_vexp(-x)); }

static inline gemm_vf gemm_vtanh(gemm_vf x) {
  gemm_vf big = 1.0f - 2.0f / (gemm_vexp(2.0f * x) + 1.0f);
  gemm_vf x2 = x * x;
  // tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - ...
  gemm_vf small = x + x * x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315 + x2 * (62.0f / 2835))));
  gemm_vf ax = x < 0.0f ? -x : x;
  return ax < 0.25f ? small : big;
}

static inline gemm_vf gemm_verf(gemm_vf x) {
  gemm_vf ax = x < 0.0f ? -x : x;
  gemm_vf t = 1.0f / (1.0f + 0.3275911f * ax);
  gemm_vf poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f +
                 t * (-1.453152027f + t * 1.061405429f))));
  gemm_vf y = 1.0f - poly * gemm_vexp(-ax * ax);
  return x < 0.0f ? -y : y;
}

static inline gemm_vf gemm_activate(gemm_vf x, Activation act) {
  switch (act) {
    case Activation::relu:
      return x < 0.0f ? gemm_splat(0.0f) : x;  // NaN propagates, as in torch.relu
    case Activation::gelu:
      return 0.5f * x * (1.0f + gemm_verf(x * 0.70710678118654752f));
    case Activation::gelu_tanh: {
      // 0.5 x (1 + tanh(u)) == x * sigmoid(2u): no cancellation for negative x.
      gemm_vf u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
      return x * gemm_vsigmoid(2.0f * u);
    }
    case Activation::sigmoid:
      return gemm_vsigmoid(x);
    case Activation::tanh:
      return gemm_vtanh(x);
    default:
      return x;
  }
}

// Epilogue of one vector of C already holding acc (alpha not yet applied). c_old is
// only used when beta != 0; bias_col_v / bias_row are the (broadcast) biases or 0.
// always_inline: GCC otherwise calls it out of line from the large microkernels (~2 % of a
// 2048^2 product).
__attribute__((always_inline)) static inline gemm_vf gemm_epilogue_vec(gemm_vf acc, gemm_vf c_old, gemm_vf bias, const GemmEpilogue& ep) {
  gemm_vf v = ep.alpha == 1.0f ? acc : acc * ep.alpha;
  if (ep.beta != 0.0f) v = v + c_old * ep.beta;
  v = v + bias;
  return ep.act == Activation::none ? v : gemm_activate(v, ep.act);
}

// Epilogue of a tile held in memory: t is rows x ld accumulators (ld a multiple of the
// vector width, at least cols rounded up), C is written through general strides. The
// slow path for edge tiles and non-unit column strides; same arithmetic as the fast path.
static inline void gemm_epilogue_tile(const float* t, int64_t ld, int64_t rows, int64_t cols, float* c,
                                      int64_t c_rs, int64_t c_cs, const GemmEpilogue& ep) {
  alignas(64) float old[kGemmVecLanes], bias[kGemmVecLanes], out[kGemmVecLanes];
  for (int64_t i = 0; i < rows; ++i) {
    const float br = ep.bias_row ? ep.bias_row[i] : 0.0f;
    float* crow = c + i * c_rs;
    for (int64_t j0 = 0; j0 < cols; j0 += kGemmVecLanes) {
      const int64_t w = cols - j0 < kGemmVecLanes ? cols - j0 : kGemmVecLanes;
      for (int l = 0; l < kGemmVecLanes; ++l) {
        old[l] = (l < w && ep.beta != 0.0f) ? crow[(j0 + l) * c_cs] : 0.0f;
        bias[l] = ((l < w && ep.bias_col) ? ep.bias_col[j0 + l] : 0.0f) + br;
      }
      const gemm_vf acc = *reinterpret_cast<const gemm_vf*>(t + i * ld + j0);
      *reinterpret_cast<gemm_vf*>(out) = gemm_epilogue_vec(
          acc, *reinterpret_cast<const gemm_vf*>(old), *reinterpret_cast<const gemm_vf*>(bias), ep);
      for (int64_t l = 0; l < w; ++l) crow[(j0 + l) * c_cs] = out[l];
    }
  }
}
