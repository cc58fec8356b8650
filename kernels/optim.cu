// Fused multi-tensor optimizers (CudaBackend::adam / sgd / grad_norm / scale_), the
// semantics of fastnn/optim.h; the CPU kernels (csrc/cpu/kernels/optim_kernels.cpp) are
// the reference and this file evaluates the same float formulas in the same order.
//
// Algorithm (apex-style multi_tensor_apply): the host cuts every tensor into chunks of
// kChunk = 64K elements and packs, per launch, up to kMaxTensors(D) tensor addresses for
// each of the D lists plus a block -> (tensor, chunk) table into ONE kernel argument
// (ListMeta<D>, < 4 KiB, passed by value: no host->device copy, no device metadata
// buffer). A list longer than one launch holds (tensors or kMaxBlocks chunks) takes
// several launches; a tensor cut by a launch boundary continues in the next one. Each
// block of 512 threads owns one chunk: 16-byte float4 loads/stores when every list's
// chunk start is 16-byte aligned (chunks are multiples of 4 elements, so only the tensor
// base matters), then a scalar tail (< 4 elements, or the whole chunk when misaligned).
// Every arithmetic step is an explicit round-to-nearest intrinsic (__fmul_rn, fmaf, ...)
// so nvcc cannot contract differently from the CPU kernels: results are bitwise those of
// fastnn::cpu::adam/sgd/scale_ (the emulator tests assert it).
// found_inf (AMP): a first kernel reads every grad (/ grad_scale) and sets *found_inf = 1
// on the device when one is Inf/NaN; the update kernels read *found_inf and return at
// once. No host round trip; the stream orders the two passes.
// grad_norm: per-chunk partials in double (deterministic tree per block) into a device
// workspace, one single-block kernel reduces them in a fixed order; the host applies
// the root (same std::sqrt/std::pow as the CPU path).
// Bound: memory. Adam moves 28 B/param (read p g m v, write p m v; 36 B with amsgrad),
// SGD+momentum 20 B, scale 8 B, norm 4 B; ~10 flops per Adam element is < 0.5 flop/B,
// far below A100/H100 balance points (docs/CUDA.md has the roofline numbers).
#include "cuda_compat.cuh"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda_backend/check.h"
#include "cuda_backend/kernels.h"
#include "fastnn/optim.h"

namespace fastnn::cuda_kernels {
namespace {

constexpr int kThreads = 512;
constexpr int64_t kChunk = 65536;  // elements per block; a multiple of 4 (float4 alignment carries over)
constexpr int kMaxBlocks = 320;    // chunks per launch

// Tensor capacity per launch for D lists: keeps sizeof(ListMeta<D>) + op params < 4 KiB,
// the kernel-parameter limit of every architecture we target.
constexpr int max_tensors(int depth) {
  return depth == 1 ? 110 : depth == 2 ? 64 : depth == 3 ? 48 : depth == 4 ? 48 : 36;
}

template <int D>
struct ListMeta {
  static constexpr int kTensors = max_tensors(D);
  float* ptr[D][kTensors];
  int64_t numel[kTensors];
  int block_chunk[kMaxBlocks];
  unsigned char block_tensor[kMaxBlocks];
};
static_assert(sizeof(ListMeta<1>) < 3800 && sizeof(ListMeta<2>) < 3800 && sizeof(ListMeta<3>) < 3800 &&
                  sizeof(ListMeta<4>) < 3800 && sizeof(ListMeta<5>) < 3800,
              "kernel arguments must stay below 4 KiB");

__device__ __forceinline__ bool is_finite(float x) { return fabsf(x) <= FLT_MAX; }  // false for NaN

// Shared by the element-wise kernels: this block's chunk of tensor `t` in every list.
template <int D>
struct ChunkView {
  float* p[D];
  int64_t n;      // elements in this chunk
  int64_t nvec;   // float4 groups handled vectorised
};

template <int D>
__device__ __forceinline__ ChunkView<D> chunk_of(const ListMeta<D>& meta) {
  ChunkView<D> c;
  const int t = meta.block_tensor[blockIdx.x];
  const int64_t start = static_cast<int64_t>(meta.block_chunk[blockIdx.x]) * kChunk;
  const int64_t rest = meta.numel[t] - start;
  c.n = rest < kChunk ? rest : kChunk;
  bool aligned = true;
#pragma unroll
  for (int d = 0; d < D; ++d) {
    c.p[d] = meta.ptr[d][t] + start;
    aligned = aligned && (reinterpret_cast<uintptr_t>(c.p[d]) % 16 == 0);
  }
  c.nvec = aligned ? c.n / 4 : 0;
  return c;
}

__device__ __forceinline__ float& lane(float4& v, int c) {
  return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

// Element-wise update: op(x) rewrites x[0..D) in place; lists whose bit is set in
// Op::kWrite<D> are stored back (grads never are).
template <int D, typename Op>
__global__ void __launch_bounds__(kThreads) multi_tensor_kernel(ListMeta<D> meta, Op op, const float* found_inf) {
  if (found_inf != nullptr && *found_inf != 0.0f) return;  // AMP: skipped step (no barrier below)
  const ChunkView<D> c = chunk_of(meta);
  constexpr unsigned kWrite = Op::template write_mask<D>();
  for (int64_t i = threadIdx.x; i < c.nvec; i += blockDim.x) {
    float4 r[D];
#pragma unroll
    for (int d = 0; d < D; ++d) r[d] = reinterpret_cast<const float4*>(c.p[d])[i];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      float x[D];
#pragma unroll
      for (int d = 0; d < D; ++d) x[d] = lane(r[d], k);
      op(x);
#pragma unroll
      for (int d = 0; d < D; ++d) lane(r[d], k) = x[d];
    }
#pragma unroll
    for (int d = 0; d < D; ++d)
      if (kWrite & (1u << d)) reinterpret_cast<float4*>(c.p[d])[i] = r[d];
  }
  for (int64_t i = c.nvec * 4 + threadIdx.x; i < c.n; i += blockDim.x) {
    float x[D];
#pragma unroll
    for (int d = 0; d < D; ++d) x[d] = c.p[d][i];
    op(x);
#pragma unroll
    for (int d = 0; d < D; ++d)
      if (kWrite & (1u << d)) c.p[d][i] = x[d];
  }
}

// Lists: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq, [4 max_exp_avg_sq]. Same operation
// order as adam_span in optim_kernels.cpp.
struct AdamOp {
  float gs, sgn, wd, decay, c1, b2, c2, ibc2, eps, nstep;
  bool scale, l2, decoupled;
  template <int D>
  static constexpr unsigned write_mask() { return D == 5 ? 0x1Du : 0x0Du; }
  template <int D>
  __device__ __forceinline__ void operator()(float (&x)[D]) const {
    float g = scale ? __fdiv_rn(x[1], gs) : __fmul_rn(x[1], sgn);
    float p = x[0];
    if (l2) g = fmaf(wd, p, g);
    if (decoupled) p = __fmul_rn(p, decay);
    const float m = fmaf(c1, __fsub_rn(g, x[2]), x[2]);
    const float v = fmaf(__fmul_rn(c2, g), g, __fmul_rn(x[3], b2));
    float vh = v;
    if constexpr (D == 5) {
      vh = fmaxf(x[4], v);
      x[4] = vh;
    }
    const float denom = fmaf(__fsqrt_rn(vh), ibc2, eps);
    x[0] = fmaf(nstep, __fdiv_rn(m, denom), p);
    x[2] = m;
    x[3] = v;
  }
};

// Lists: 0 param, 1 grad, [2 momentum buffer].
struct SgdOp {
  float sgn, wd, mom, damp, nlr;
  bool l2, first_step, nesterov;
  template <int D>
  static constexpr unsigned write_mask() { return D == 3 ? 0x5u : 0x1u; }
  template <int D>
  __device__ __forceinline__ void operator()(float (&x)[D]) const {
    const float p = x[0];
    float g = __fmul_rn(x[1], sgn);
    if (l2) g = fmaf(wd, p, g);
    if constexpr (D == 3) {
      const float b = first_step ? g : fmaf(damp, g, __fmul_rn(x[2], mom));
      x[2] = b;
      g = nesterov ? fmaf(mom, b, g) : b;
    }
    x[0] = fmaf(nlr, g, p);
  }
};

struct ScaleOp {
  float s;
  template <int D>
  static constexpr unsigned write_mask() { return 0x1u; }
  template <int D>
  __device__ __forceinline__ void operator()(float (&x)[D]) const { x[0] = __fmul_rn(x[0], s); }
};

// found_inf pass over the grads (list 0): *found_inf = 1 if some grad / grad_scale is
// Inf/NaN and *found_inf was 0 (a non-zero value on entry is kept, as on the CPU).
__global__ void __launch_bounds__(kThreads) nonfinite_kernel(ListMeta<1> meta, float grad_scale, float* found_inf) {
  __shared__ int skip;
  if (threadIdx.x == 0) skip = *found_inf != 0.0f;
  __syncthreads();
  if (skip) return;  // uniform: every thread read the same shared value
  const ChunkView<1> c = chunk_of(meta);
  const bool scale = grad_scale != 1.0f;
  bool bad = false;
  for (int64_t i = threadIdx.x; i < c.nvec; i += blockDim.x) {
    float4 r = reinterpret_cast<const float4*>(c.p[0])[i];
    if (scale) {
      r.x = __fdiv_rn(r.x, grad_scale);
      r.y = __fdiv_rn(r.y, grad_scale);
      r.z = __fdiv_rn(r.z, grad_scale);
      r.w = __fdiv_rn(r.w, grad_scale);
    }
    bad = bad || !(is_finite(r.x) && is_finite(r.y) && is_finite(r.z) && is_finite(r.w));
  }
  for (int64_t i = c.nvec * 4 + threadIdx.x; i < c.n; i += blockDim.x) {
    float g = c.p[0][i];
    if (scale) g = __fdiv_rn(g, grad_scale);
    bad = bad || !is_finite(g);
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0 && *found_inf == 0.0f) *found_inf = 1.0f;
}

// Norm partials: mode 0 sum g^2, 1 sum |g|, 2 max |g| (NaN wins), 3 sum |g|^p.
__device__ __forceinline__ double norm_combine(double a, double b, int mode) {
  if (mode != 2) return a + b;
  if (a != a || b != b) return NAN;
  return a > b ? a : b;
}

__device__ __forceinline__ double norm_term(float g, int mode, double p) {
  const double a = fabs(static_cast<double>(g));
  switch (mode) {
    case 0: return a * a;
    case 3: return pow(a, p);
    default: return a;
  }
}

// Block reduction in a fixed tree (deterministic): warps by shuffles, then warp 0.
__device__ __forceinline__ double block_reduce(double v, int mode, double* warp_part) {
  for (int off = 16; off > 0; off >>= 1) v = norm_combine(v, __shfl_down_sync(0xffffffffu, v, off), mode);
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  if (l == 0) warp_part[w] = v;
  __syncthreads();
  const int nw = blockDim.x / 32;
  if (w == 0) {
    v = l < nw ? warp_part[l] : 0.0;
    for (int off = 16; off > 0; off >>= 1) v = norm_combine(v, __shfl_down_sync(0xffffffffu, v, off), mode);
  }
  return v;  // valid in thread 0
}

__global__ void __launch_bounds__(kThreads) norm_partial_kernel(ListMeta<1> meta, int mode, double p, double* partials) {
  __shared__ double warp_part[kThreads / 32];
  const ChunkView<1> c = chunk_of(meta);
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < c.nvec; i += blockDim.x) {
    const float4 r = reinterpret_cast<const float4*>(c.p[0])[i];
    acc = norm_combine(acc, norm_term(r.x, mode, p), mode);
    acc = norm_combine(acc, norm_term(r.y, mode, p), mode);
    acc = norm_combine(acc, norm_term(r.z, mode, p), mode);
    acc = norm_combine(acc, norm_term(r.w, mode, p), mode);
  }
  for (int64_t i = c.nvec * 4 + threadIdx.x; i < c.n; i += blockDim.x)
    acc = norm_combine(acc, norm_term(c.p[0][i], mode, p), mode);
  acc = block_reduce(acc, mode, warp_part);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// One block: out[0] = combination of partials[0..n) in a fixed order.
__global__ void __launch_bounds__(kThreads) norm_final_kernel(const double* partials, int64_t n, int mode, double* out) {
  __shared__ double warp_part[kThreads / 32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc = norm_combine(acc, partials[i], mode);
  acc = block_reduce(acc, mode, warp_part);
  if (threadIdx.x == 0) out[0] = acc;
}

// ---- host side ------------------------------------------------------------------------

// Calls launch(meta, num_blocks, first_chunk_index) once per launch over the non-empty
// tensors of `lists` (lists[d][t]); first_chunk_index counts chunks over all launches.
template <int D, typename Launch>
void for_each_launch(int64_t num_tensors, const int64_t* numels, float* const* const (&lists)[D], Launch&& launch) {
  ListMeta<D> meta;
  int nt = 0, nb = 0;
  int64_t chunks_before = 0;
  auto flush = [&] {
    if (nb > 0) launch(meta, nb, chunks_before);
    chunks_before += nb;
    nb = 0;
  };
  for (int64_t t = 0; t < num_tensors; ++t) {
    const int64_t n = numels[t];
    if (n <= 0) continue;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      if (ch == 0 || nb == 0) {
        // (Re)register the tensor in this launch's table: at its first chunk, or when a
        // launch boundary cut it (the new launch starts with an empty table).
        if (ch == 0 && nt == ListMeta<D>::kTensors) {
          flush();
          nt = 0;
        }
        for (int d = 0; d < D; ++d) meta.ptr[d][nt] = lists[d][t];
        meta.numel[nt] = n;
        ++nt;
      }
      meta.block_tensor[nb] = static_cast<unsigned char>(nt - 1);
      meta.block_chunk[nb] = static_cast<int>(ch);
      ++nb;
      if (nb == kMaxBlocks) {
        flush();
        nt = 0;
      }
    }
  }
  flush();
}

int64_t total_chunks(int64_t num_tensors, const int64_t* numels) {
  int64_t c = 0;
  for (int64_t t = 0; t < num_tensors; ++t)
    if (numels[t] > 0) c += (numels[t] + kChunk - 1) / kChunk;
  return c;
}

template <int D, typename Op>
void launch_update(int64_t num_tensors, const int64_t* numels, float* const* const (&lists)[D], const Op& op,
                   const float* found_inf, cudaStream_t stream) {
  for_each_launch<D>(num_tensors, numels, lists, [&](const ListMeta<D>& meta, int nb, int64_t) {
    auto* k = &multi_tensor_kernel<D, Op>;
    FASTNN_LAUNCH(k, nb, kThreads, 0, stream)(meta, op, found_inf);
    FASTNN_CUDA_CHECK_LAUNCH("multi_tensor_kernel");
  });
}

void check_nonfinite(int64_t num_tensors, const int64_t* numels, const float* const* grads, float grad_scale,
                     float* found_inf, cudaStream_t stream) {
  float* const* const lists[1] = {const_cast<float* const*>(grads)};
  for_each_launch<1>(num_tensors, numels, lists, [&](const ListMeta<1>& meta, int nb, int64_t) {
    FASTNN_LAUNCH(nonfinite_kernel, nb, kThreads, 0, stream)(meta, grad_scale, found_inf);
    FASTNN_CUDA_CHECK_LAUNCH("nonfinite_kernel");
  });
}

}  // namespace

void adam(const AdamArgs& a, cudaStream_t stream) {
  if (a.found_inf) check_nonfinite(a.num_tensors, a.numels, a.grads, a.grad_scale, a.found_inf, stream);
  AdamOp op{};
  op.scale = a.grad_scale != 1.0f;
  op.gs = a.maximize ? -a.grad_scale : a.grad_scale;  // maximize folds into the divisor: exact
  op.sgn = a.maximize ? -1.0f : 1.0f;
  op.l2 = a.weight_decay != 0.0 && !a.decoupled;
  op.decoupled = a.weight_decay != 0.0 && a.decoupled;
  op.wd = static_cast<float>(a.weight_decay);
  op.decay = static_cast<float>(1.0 - a.lr * a.weight_decay);
  op.c1 = static_cast<float>(1.0 - a.beta1);
  op.b2 = static_cast<float>(a.beta2);
  op.c2 = static_cast<float>(1.0 - a.beta2);
  op.ibc2 = static_cast<float>(1.0 / a.bias_correction2_sqrt);
  op.eps = static_cast<float>(a.eps);
  op.nstep = static_cast<float>(-a.step_size);
  float* const* grads = const_cast<float* const*>(a.grads);  // list 1 is never written
  if (a.amsgrad) {
    float* const* const lists[5] = {a.params, grads, a.exp_avgs, a.exp_avg_sqs, a.max_exp_avg_sqs};
    launch_update<5>(a.num_tensors, a.numels, lists, op, a.found_inf, stream);
  } else {
    float* const* const lists[4] = {a.params, grads, a.exp_avgs, a.exp_avg_sqs};
    launch_update<4>(a.num_tensors, a.numels, lists, op, a.found_inf, stream);
  }
}

void sgd(const SgdArgs& a, cudaStream_t stream) {
  SgdOp op{};
  op.sgn = a.maximize ? -1.0f : 1.0f;
  op.l2 = a.weight_decay != 0.0;
  op.wd = static_cast<float>(a.weight_decay);
  op.mom = static_cast<float>(a.momentum);
  op.damp = static_cast<float>(1.0 - a.dampening);
  op.nlr = static_cast<float>(-a.lr);
  op.first_step = a.first_step;
  op.nesterov = a.nesterov;
  float* const* grads = const_cast<float* const*>(a.grads);
  if (a.momentum != 0.0) {
    float* const* const lists[3] = {a.params, grads, a.momentum_buffers};
    launch_update<3>(a.num_tensors, a.numels, lists, op, nullptr, stream);
  } else {
    float* const* const lists[2] = {a.params, grads};
    launch_update<2>(a.num_tensors, a.numels, lists, op, nullptr, stream);
  }
}

void scale_(const ScaleArgs& a, cudaStream_t stream) {
  ScaleOp op{a.scale};
  float* const* const lists[1] = {a.tensors};
  launch_update<1>(a.num_tensors, a.numels, lists, op, nullptr, stream);
}

int64_t grad_norm_workspace(const GradNormArgs& a) { return 1 + total_chunks(a.num_tensors, a.numels); }

void grad_norm(const GradNormArgs& a, double* workspace, cudaStream_t stream) {
  const int mode = std::isinf(a.norm_type) ? 2 : a.norm_type == 2.0 ? 0 : a.norm_type == 1.0 ? 1 : 3;
  const int64_t nchunks = total_chunks(a.num_tensors, a.numels);
  double* partials = workspace + 1;
  float* const* const lists[1] = {const_cast<float* const*>(a.grads)};
  for_each_launch<1>(a.num_tensors, a.numels, lists, [&](const ListMeta<1>& meta, int nb, int64_t first) {
    FASTNN_LAUNCH(norm_partial_kernel, nb, kThreads, 0, stream)(meta, mode, a.norm_type, partials + first);
    FASTNN_CUDA_CHECK_LAUNCH("norm_partial_kernel");
  });
  FASTNN_LAUNCH(norm_final_kernel, 1, kThreads, 0, stream)(partials, nchunks, mode, workspace);
  FASTNN_CUDA_CHECK_LAUNCH("norm_final_kernel");
}

double grad_norm_finish(double reduced, double norm_type) {
  if (std::isinf(norm_type) || norm_type == 1.0) return reduced;
  if (norm_type == 2.0) return std::sqrt(reduced);
  return std::pow(reduced, 1.0 / norm_type);
}

}  // namespace fastnn::cuda_kernels
