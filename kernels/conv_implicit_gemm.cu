// 2-D convolution as an implicit GEMM on CUDA cores (FP32), forward / grad input /
// grad weight, any stride, padding, dilation and groups (Conv2dArgs, fastnn/conv.h).
//
// Per group g (blockIdx.z), with P = N*Ho*Wo output pixels and K = Cg*kh*kw:
//   forward  Y(Og x P)  = W(Og x K) . col(K x P)            + bias, activation fused
//   dgrad    dX(Cg x N*H*W) = W^T(Cg x Og*kh*kw) . dYcol(Og*kh*kw x N*H*W)
//            dYcol[(o,r,s), (n,h,w)] = dy[n, o, (h+ph-r*dh)/sh, (w+pw-s*dw)/sw] when the
//            divisions are exact and in range, else 0: every dx element is one dot product,
//            written once (no col2im scatter, no atomics);
//   wgrad    dW(Og x K) = dY(Og x P) . col^T(P x K), K split across blockIdx.z when the
//            tile grid is too small to fill the GPU; partial sums go to a workspace and a
//            fixed-order reduction writes dW (deterministic, no atomics).
// The im2col matrix is never materialised: each K step gathers a BK x BN tile of it
// straight into shared memory. A thread loads a fixed column of the B tile, so the
// column's decode (image, output position) happens once per block, the row decode
// (channel, tap) once per K step.
//
// Tiling: 64x64 output tile per block of 256 threads, BK = 16, both operand tiles stored
// k-major in shared memory (8.5 KiB); each thread accumulates a 4x4 register tile at rows
// ty+16i, cols tx+16j (the inner loop reads operands as warp broadcasts / consecutive
// words). Tails: the gathers fill zeros, the epilogue masks.
//
// Bound: per K step a block reads 2*64*16 floats and does 2*64*64*16 flops (16 flop/B
// of shared-memory traffic, 32 FMAs per 8 shared loads per thread): compute-bound on
// paper for the large layers (A100 19.5 TFLOP/s FP32, H100 SXM 67 TFLOP/s FP32); this
// baseline without double buffering reaches perhaps 40-60% of that. The bench layers of
// issue 4 are tiny for a GPU (57-302 MFLOP, a few microseconds at peak): launch latency
// and the tile count (small grids) bound them, hence split-K for wgrad. The tensor-core
// path (TF32 / BF16 via wmma) is the one to use for throughput.
#include "cuda_compat.cuh"

#include <algorithm>
#include <cstdint>

#include "conv.cuh"
#include "conv_common.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels {
namespace {
using conv_detail::activate;

constexpr int BM = 64, BN = 64, BK = 16, kThreads = 256, kLd = BM + 4;
constexpr int kTargetBlocks = 2 * 132;  // two waves on an H100
constexpr int kMinSplitK = 256;         // never split K into chunks shorter than this

enum Mode : int { kForward = 0, kGradInput = 1, kGradWeight = 2 };

// Geometry in int (the launcher checks every tensor has < 2^31 elements).
struct Params {
  int M, N, K;            // GEMM sizes per group
  int k_chunk, splits;    // K range of one split (multiple of BK), number of splits
  int H, W, Ho, Wo, kh, kw, khw, sh, sw, ph, pw, dh, dw, Cg, Og;
  int xbs, ybs;
  const float* a;         // A operand: weight (forward, dgrad) or dy (wgrad)
  const float* b;         // gathered operand: x (forward, wgrad) or dy (dgrad)
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

// Element (k, column) of the gathered operand; 0 outside the tensor or past `kend`.
template <int kMode>
__device__ __forceinline__ float gather(const Params& p, const Column& c, int k, int kend) {
  if (!c.ok || k >= kend) return 0.0f;
  if constexpr (kMode == kForward) {  // k = (c, r, s)
    const int ch = k / p.khw, rs = k - ch * p.khw, r = rs / p.kw, s = rs - r * p.kw;
    const int ih = c.u + r * p.dh, iw = c.v + s * p.dw;
    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) return 0.0f;
    return p.b[c.base + (ch * p.H + ih) * p.W + iw];
  } else if constexpr (kMode == kGradInput) {  // k = (o, r, s)
    const int o = k / p.khw, rs = k - o * p.khw, r = rs / p.kw, s = rs - r * p.kw;
    const int th = c.u - r * p.dh, tw = c.v - s * p.dw;
    if (th < 0 || tw < 0) return 0.0f;
    const int i = th / p.sh, j = tw / p.sw;
    if (i * p.sh != th || j * p.sw != tw || i >= p.Ho || j >= p.Wo) return 0.0f;
    return p.b[c.base + (o * p.Ho + i) * p.Wo + j];
  } else {  // k = (image, oh, ow)
    const int hw = p.Ho * p.Wo, img = k / hw, q = k - img * hw, oh = q / p.Wo, ow = q - oh * p.Wo;
    const int ih = oh * p.sh + c.u, iw = ow * p.sw + c.v;
    if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) return 0.0f;
    return p.b[img * p.xbs + c.base + ih * p.W + iw];
  }
}

// Row k of the A operand: A(m, k) = p.a[off + m * mstride].
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

template <int kMode>
__device__ __forceinline__ void store(const Params& p, int g, int split, int m, int n, float acc) {
  if constexpr (kMode == kForward) {
    const int hw = p.Ho * p.Wo, img = n / hw, q = n - img * hw, o = g * p.Og + m;
    const float v = acc + (p.bias ? p.bias[o] : 0.0f);
    p.out[img * p.ybs + o * hw + q] = activate(v, p.act);
  } else if constexpr (kMode == kGradInput) {
    const int hw = p.H * p.W, img = n / hw, q = n - img * hw;
    p.out[img * p.xbs + (g * p.Cg + m) * hw + q] = acc;
  } else {
    p.out[split * p.out_split_stride + (g * p.Og + m) * p.N + n] = acc;
  }
}

template <int kMode>
__global__ void __launch_bounds__(kThreads) conv_igemm_kernel(Params p) {
  FASTNN_DYNAMIC_SHARED(float, smem);
  float* As = smem;             // [BK][kLd]: As[kk][m]
  float* Bs = smem + BK * kLd;  // [BK][kLd]: Bs[kk][n]
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int g = blockIdx.z / p.splits, split = blockIdx.z - g * p.splits;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kbeg = split * p.k_chunk, kend = min(p.K, kbeg + p.k_chunk);
  const Column col = column<kMode>(p, g, n0 + tid % BN);
  const int a_kk = tid % BK, a_m = tid / BK, b_kk = tid / BN, b_n = tid % BN;

  float acc[4][4] = {};
  for (int k0 = kbeg; k0 < kend; k0 += BK) {
    const ARow ar = a_row<kMode>(p, g, k0 + a_kk, kend);
#pragma unroll
    for (int i = 0; i < BM / 16; ++i) {
      const int m = a_m + 16 * i;
      As[a_kk * kLd + m] = (ar.ok && m0 + m < p.M) ? p.a[ar.off + (m0 + m) * ar.mstride] : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < BK / 4; ++i) {
      const int kk = b_kk + 4 * i;
      Bs[kk * kLd + b_n] = gather<kMode>(p, col, k0 + kk, kend);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[kk * kLd + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk * kLd + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= p.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx + 16 * j;
      if (n < p.N) store<kMode>(p, g, split, m, n, acc[i][j]);
    }
  }
}

// dw[i] = sum over splits s (in order) of ws[s * total + i].
__global__ void __launch_bounds__(256) split_k_reduce_kernel(const float* ws, int splits, int total, float* dw) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  float s = 0.0f;
  for (int k = 0; k < splits; ++k) s += ws[k * total + i];
  dw[i] = s;
}

Params geometry(const Conv2dArgs& a, const char* op) {
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

template <int kMode>
void launch(Params& p, int64_t groups, const char* name, cudaStream_t stream) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.splits == 1) p.k_chunk = p.K;
  const int64_t gz = groups * p.splits, gy = (p.M + BM - 1) / BM, gx = (p.N + BN - 1) / BN;
  if (gz > 65535 || gy > 65535)
    throw ValueError(detail::concat(name, ": groups * splits = ", gz, " or ", gy,
                                    " row tiles exceed the CUDA grid limit (65535)"));
  auto* k = &conv_igemm_kernel<kMode>;
  FASTNN_LAUNCH(k, dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(gz)), kThreads,
                2 * BK * kLd * sizeof(float), stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("conv_igemm_kernel");
}

}  // namespace

void conv2d_forward_igemm(const Conv2dArgs& a, cudaStream_t stream) {
  Params p = geometry(a, "conv2d");
  p.M = p.Og, p.N = static_cast<int>(a.batch * a.out_h * a.out_w), p.K = p.Cg * p.khw;
  p.a = a.weight, p.b = a.x, p.bias = a.bias, p.out = a.y, p.act = a.activation;
  launch<kForward>(p, a.groups, "conv2d", stream);
}

void conv2d_backward_input_igemm(const Conv2dArgs& a, cudaStream_t stream) {
  Params p = geometry(a, "conv2d_backward");
  p.M = p.Cg, p.N = static_cast<int>(a.batch * a.in_h * a.in_w), p.K = p.Og * p.khw;
  p.a = a.weight, p.b = a.dy, p.out = a.dx;
  launch<kGradInput>(p, a.groups, "conv2d_backward", stream);
}

namespace {
// Split-K plan of wgrad: enough blocks for two waves, chunks of >= kMinSplitK, a multiple of BK.
Params wgrad_plan(const Conv2dArgs& a) {
  Params p = geometry(a, "conv2d_backward");
  p.M = p.Og, p.N = p.Cg * p.khw, p.K = static_cast<int>(a.batch * a.out_h * a.out_w);
  const int64_t tiles = ((p.M + BM - 1) / BM) * int64_t{(p.N + BN - 1) / BN} * a.groups;
  int64_t splits = std::min<int64_t>((kTargetBlocks + tiles - 1) / tiles, (p.K + kMinSplitK - 1) / kMinSplitK);
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535 / std::max<int64_t>(a.groups, 1)));
  const int64_t chunk = ((p.K + splits - 1) / splits + BK - 1) / BK * BK;
  p.k_chunk = static_cast<int>(std::max<int64_t>(chunk, BK));
  p.splits = static_cast<int>(std::max<int64_t>(1, (p.K + p.k_chunk - 1) / p.k_chunk));
  return p;
}
}  // namespace

int64_t conv2d_backward_weight_workspace(const Conv2dArgs& a) {
  const Params p = wgrad_plan(a);
  return p.splits > 1 ? int64_t{p.splits} * a.out_channels * p.N : 0;
}

void conv2d_backward_weight_igemm(const Conv2dArgs& a, float* workspace, cudaStream_t stream) {
  Params p = wgrad_plan(a);
  if (p.M <= 0 || p.N <= 0) return;
  const int total = static_cast<int>(a.out_channels) * p.N;
  p.a = a.dy, p.b = a.x;
  p.out = p.splits > 1 ? workspace : a.dw;
  p.out_split_stride = total;
  conv_detail::expect_int32_extent(int64_t{p.splits} * total, "conv2d_backward", "the split-K workspace");
  launch<kGradWeight>(p, a.groups, "conv2d_backward", stream);
  if (p.splits > 1) {
    FASTNN_LAUNCH(split_k_reduce_kernel, conv_detail::blocks_for(total, 256), 256, 0, stream)(workspace, p.splits,
                                                                                             total, a.dw);
    FASTNN_CUDA_CHECK_LAUNCH("split_k_reduce_kernel");
  }
}

}  // namespace fastnn::cuda_kernels
