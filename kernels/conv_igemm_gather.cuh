// The implicit-GEMM view of a convolution, shared by the FP32 CUDA-core kernel
// (conv_implicit_gemm.cu) and the tensor-core kernel (conv_implicit_gemm_wmma.cu):
// which element of x / weight / dy is entry (m, k) of the A operand and entry (k, n) of
// the gathered B operand, and where result (m, n) goes, for each pass:
//   forward  Y(Og x P)  = W(Og x K) . col(K x P),  P = N*Ho*Wo, K = Cg*kh*kw, + bias, act
//   dgrad    dX(Cg x N*H*W) = W^T(Cg x Og*kh*kw) . dYcol(Og*kh*kw x N*H*W)
//            dYcol[(o,r,s), (n,h,w)] = dy[n, o, (h+ph-r*dh)/sh, (w+pw-s*dw)/sw] when both
//            divisions are exact and in range, else 0 (every dx element one dot product,
//            written once: no col2im scatter, no atomics)
//   wgrad    dW(Og x K) = dY(Og x P) . col^T(P x K), P split across blockIdx.z (split-K)
// all per group g. Offsets are element indices (the operand may be float or 16-bit: the
// kernel reads it); -1 marks an implicit zero (padding, stride holes, tails).
#pragma once
#include "cuda_compat.cuh"

#include <algorithm>
#include <cstdint>

#include "conv_common.cuh"
#include "fastnn/conv.h"
#include "fastnn/errors.h"

namespace fastnn::cuda_kernels::igemm {

enum Mode : int { kForward = 0, kGradInput = 1, kGradWeight = 2 };

// Both kernels use 64x64 block tiles and K steps of 16, so one split-K plan fits both.
constexpr int kIgemmTile = 64, kIgemmBK = 16;

// Geometry in int (the launcher checks every tensor has < 2^31 elements).
struct Params {
  int M, N, K;            // GEMM sizes per group
  int k_chunk, splits;    // K range of one split (multiple of the kernel's BK), number of splits
  int H, W, Ho, Wo, kh, kw, khw, sh, sw, ph, pw, dh, dw, Cg, Og;
  int xbs, ybs;
  const float* a;         // A operand: weight (forward, dgrad) or dy (wgrad)
  const float* b;         // gathered operand: x (forward, wgrad) or dy (dgrad)
  bool a_16bit, b_16bit;  // operand holds 16-bit elements (the tensor-core kernel's type)
  const float* bias;
  float* out;             // y, dx, dw or the split-K workspace
  int out_split_stride;   // elements between splits' partial dW
  Activation act;
};

// Per-thread state of one column of the gathered operand (meaning depends on the mode).
struct Column {
  int base, u, v;
  bool ok;
};

template <int kMode>
__device__ __forceinline__ Column column(const Params& p, int g, int n) {
  Column c{0, 0, 0, n < p.N};
  if (!c.ok) return c;
  if constexpr (kMode == kForward) {  // n = (image, oh, ow)
    const int hw = p.Ho * p.Wo, img = n / hw, q = n - img * hw, oh = q / p.Wo, ow = q - oh * p.Wo;
    c.base = img * p.xbs + g * p.Cg * p.H * p.W;
    c.u = oh * p.sh - p.ph;
    c.v = ow * p.sw - p.pw;
  } else if constexpr (kMode == kGradInput) {  // n = (image, h, w)
    const int hw = p.H * p.W, img = n / hw, q = n - img * hw, h = q / p.W, w = q - h * p.W;
    c.base = img * p.ybs + g * p.Og * p.Ho * p.Wo;
    c.u = h + p.ph;
    c.v = w + p.pw;
  } else {  // n = (c, r, s)
    const int ch = n / p.khw, rs = n - ch * p.khw, r = rs / p.kw, s = rs - r * p.kw;
    c.base = (g * p.Cg + ch) * p.H * p.W;
    c.u = r * p.dh - p.ph;
    c.v = s * p.dw - p.pw;
  }
  return c;
}

// Offset in p.b of entry (k, column), or -1 for an implicit zero (also past `kend`).
template <int kMode>
__device__ __forceinline__ int gather_offset(const Params& p, const Column& c, int k, int kend) {
  if (!c.ok || k >= kend) return -1;
  if constexpr (kMode == kForward) {  // k = (c, r, s)
    const int ch = k / p.khw, rs = k - ch * p.khw, r = rs / p.kw, s = rs - r * p.kw;
    const int ih = c.u + r * p.dh, iw = c.v + s * p.dw;
    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) return -1;
    return c.base + (ch * p.H + ih) * p.W + iw;
  } else if constexpr (kMode == kGradInput) {  // k = (o, r, s)
    const int o = k / p.khw, rs = k - o * p.khw, r = rs / p.kw, s = rs - r * p.kw;
    const int th = c.u - r * p.dh, tw = c.v - s * p.dw;
    if (th < 0 || tw < 0) return -1;
    const int i = th / p.sh, j = tw / p.sw;
    if (i * p.sh != th || j * p.sw != tw || i >= p.Ho || j >= p.Wo) return -1;
    return c.base + (o * p.Ho + i) * p.Wo + j;
  } else {  // k = (image, oh, ow)
    const int hw = p.Ho * p.Wo, img = k / hw, q = k - img * hw, oh = q / p.Wo, ow = q - oh * p.Wo;
    const int ih = oh * p.sh + c.u, iw = ow * p.sw + c.v;
    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) return -1;
    return img * p.xbs + c.base + ih * p.W + iw;
  }
}

// Row k of the A operand: A(m, k) is element off + m * mstride of p.a.
struct ARow {
  int off, mstride;
  bool ok;
};

template <int kMode>
__device__ __forceinline__ ARow a_row(const Params& p, int g, int k, int kend) {
  ARow r{0, 0, k < kend};
  if (!r.ok) return r;
  if constexpr (kMode == kForward) {  // W[g*Og + m, k]
    r.off = g * p.Og * p.K + k;
    r.mstride = p.K;
  } else if constexpr (kMode == kGradInput) {  // W[g*Og + o, m, r, s], k = (o, r, s)
    const int o = k / p.khw, rs = k - o * p.khw;
    r.off = (g * p.Og + o) * p.Cg * p.khw + rs;
    r.mstride = p.khw;
  } else {  // dy[image, g*Og + m, oh, ow], k = (image, oh, ow)
    const int hw = p.Ho * p.Wo, img = k / hw, q = k - img * hw;
    r.off = img * p.ybs + g * p.Og * hw + q;
    r.mstride = hw;
  }
  return r;
}

// Result (m, n) of group g (split `split` of wgrad's K).
template <int kMode>
__device__ __forceinline__ void store(const Params& p, int g, int split, int m, int n, float acc) {
  if constexpr (kMode == kForward) {
    const int hw = p.Ho * p.Wo, img = n / hw, q = n - img * hw, o = g * p.Og + m;
    const float v = acc + (p.bias ? p.bias[o] : 0.0f);
    p.out[img * p.ybs + o * hw + q] = conv_detail::activate(v, p.act);
  } else if constexpr (kMode == kGradInput) {
    const int hw = p.H * p.W, img = n / hw, q = n - img * hw;
    p.out[img * p.xbs + (g * p.Cg + m) * hw + q] = acc;
  } else {
    p.out[split * p.out_split_stride + (g * p.Og + m) * p.N + n] = acc;
  }
}

// ---- host side -------------------------------------------------------------------------

inline Params geometry(const Conv2dArgs& a, const char* op) {
  using conv_detail::expect_int32_extent;
  expect_int32_extent(a.batch * a.xbs(), op, "x");
  expect_int32_extent(a.batch * a.ybs(), op, "y");
  expect_int32_extent(a.out_channels * (a.in_channels / a.groups) * a.kernel_h * a.kernel_w, op, "weight");
  Params p{};
  p.H = static_cast<int>(a.in_h), p.W = static_cast<int>(a.in_w);
  p.Ho = static_cast<int>(a.out_h), p.Wo = static_cast<int>(a.out_w);
  p.kh = static_cast<int>(a.kernel_h), p.kw = static_cast<int>(a.kernel_w), p.khw = p.kh * p.kw;
  p.sh = static_cast<int>(a.stride_h), p.sw = static_cast<int>(a.stride_w);
  p.ph = static_cast<int>(a.pad_h), p.pw = static_cast<int>(a.pad_w);
  p.dh = static_cast<int>(a.dil_h), p.dw = static_cast<int>(a.dil_w);
  p.Cg = static_cast<int>(a.in_channels / a.groups), p.Og = static_cast<int>(a.out_channels / a.groups);
  p.xbs = static_cast<int>(a.xbs()), p.ybs = static_cast<int>(a.ybs());
  p.splits = 1;
  p.act = Activation::none;
  return p;
}

// GEMM view of each pass; operands marked 16-bit when x / weight are (Conv2dArgs::dtype).
inline Params forward_params(const Conv2dArgs& a) {
  Params p = geometry(a, "conv2d");
  p.M = p.Og, p.N = static_cast<int>(a.batch * a.out_h * a.out_w), p.K = p.Cg * p.khw;
  p.a = a.weight, p.b = a.x, p.bias = a.bias, p.out = a.y, p.act = a.activation;
  p.a_16bit = p.b_16bit = a.dtype != DType::float32;
  p.k_chunk = p.K;
  return p;
}

inline Params grad_input_params(const Conv2dArgs& a) {
  Params p = geometry(a, "conv2d_backward");
  p.M = p.Cg, p.N = static_cast<int>(a.batch * a.in_h * a.in_w), p.K = p.Og * p.khw;
  p.a = a.weight, p.b = a.dy, p.out = a.dx;
  p.a_16bit = a.dtype != DType::float32;
  p.k_chunk = p.K;
  return p;
}

// Split-K plan of wgrad for tiles of bm x bn with K steps of bk: enough blocks for two
// waves of an H100 (132 SMs), chunks of >= 256 (a multiple of bk).
inline Params grad_weight_params(const Conv2dArgs& a, int bm, int bn, int bk) {
  Params p = geometry(a, "conv2d_backward");
  p.M = p.Og, p.N = p.Cg * p.khw, p.K = static_cast<int>(a.batch * a.out_h * a.out_w);
  p.a = a.dy, p.b = a.x;
  p.b_16bit = a.dtype != DType::float32;
  constexpr int64_t kTargetBlocks = 2 * 132, kMinChunk = 256;
  const int64_t tiles = ((p.M + bm - 1) / bm) * int64_t{(p.N + bn - 1) / bn} * a.groups;
  int64_t splits = std::min<int64_t>((kTargetBlocks + tiles - 1) / tiles, (p.K + kMinChunk - 1) / kMinChunk);
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535 / std::max<int64_t>(a.groups, 1)));
  const int64_t chunk = ((p.K + splits - 1) / splits + bk - 1) / bk * bk;
  p.k_chunk = static_cast<int>(std::max<int64_t>(chunk, bk));
  p.splits = static_cast<int>(std::max<int64_t>(1, (p.K + p.k_chunk - 1) / p.k_chunk));
  p.out_split_stride = static_cast<int>(a.out_channels) * p.N;
  conv_detail::expect_int32_extent(int64_t{p.splits} * p.out_split_stride, "conv2d_backward",
                                   "the split-K workspace");
  return p;
}

inline dim3 grid_of(const Params& p, int64_t groups, int bm, int bn, const char* op) {
  const int64_t gz = groups * p.splits, gy = (p.M + bm - 1) / bm, gx = (p.N + bn - 1) / bn;
  if (gz > 65535 || gy > 65535)
    throw ValueError(detail::concat(op, ": groups * splits = ", gz, " or ", gy,
                                    " row tiles exceed the CUDA grid limit (65535)"));
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz));
}

// conv_implicit_gemm_wmma.cu: pass `mode` on tensor cores; `operand` is the element type of
// x / weight (float32: TF32, bfloat16, float16); p.M, p.N > 0.
void launch_igemm_wmma(int mode, const Params& p, int64_t groups, DType operand, cudaStream_t stream);

}  // namespace fastnn::cuda_kernels::igemm
