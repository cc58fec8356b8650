// Elementwise math on the GPU (semantics: fastnn/elementwise_math.h; CPU reference:
// csrc/cpu/kernels/elementwise_math.cpp).
//
// unary:        grid-stride loop, one float in and one out per thread step; the op is a
//               uniform switch (no divergence). exp/log/sqrt/rsqrt/pow are the CUDA math
//               library's expf (<= 2 ulp), logf (<= 1 ulp), sqrtf (IEEE), rsqrtf (<= 2 ulp),
//               powf (<= 4 ulp) — no fast-math intrinsics, so NaN/Inf follow C99 like NumPy.
//               Bound: memory. 8 B/element and <= ~25 flops (exp) -> intensity ~3 flop/B, far
//               under the FP32 ridge (A100: 19.5 TFLOP/s / 1.6-2.0 TB/s ~ 10; H100 SXM:
//               67 TFLOP/s / 3.35 TB/s ~ 20): ~200 G elements/s on A100, ~420 G/s on H100.
// compare:      grid-stride over the broadcast output; coordinates by div/mod over <= 8 dims
//               (hidden behind the loads); 9 B/element (two float reads, one byte written):
//               memory-bound like unary.
// gather:       grid-stride over n_idx * inner output elements, elem_size-typed moves; the
//               row index is recomputed per element from the k index arrays (L1/L2-resident).
//               Memory-bound: 2 * elem_size B/element plus 8k B per row of indices.
// scatter_add:  deterministic without float atomics: one thread per column (inner) walks the
//               indices in order b = 0, 1, ...; bit-identical to the CPU kernel. Parallelism is
//               `inner` threads (an embedding-like row gather with inner >= 1024 fills the GPU;
//               inner == 1 runs on one thread — correct, slow, documented). A zero pass first.
// index_check:  one launch sets *first_bad = n_idx, a grid-stride pass atomicMin's the first
//               out-of-range position (integer atomics: order-independent result).
// Launch: 256 threads per block, at most 1024 blocks (enough to fill 132 SMs).
#include "cuda_compat.cuh"

#include <cstdint>

#include "cuda_backend/check.h"
#include "cuda_backend/elementwise_math_launchers.h"

namespace fastnn::cuda_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b < kMaxBlocks ? b : kMaxBlocks));
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

__device__ __forceinline__ float unary_op(UnaryOp op, float x, float s) {
  switch (op) {
    case UnaryOp::exp: return expf(x);
    case UnaryOp::log: return logf(x);
    case UnaryOp::sqrt: return sqrtf(x);
    case UnaryOp::rsqrt: return rsqrtf(x);
    case UnaryOp::abs: return fabsf(x);
    case UnaryOp::sign: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x);  // +-0 and NaN pass through
    case UnaryOp::neg: return -x;
    case UnaryOp::pow:  // x ** 0.5 is sqrt(x) as in NumPy and the CPU kernel ((-inf) ** 0.5 = NaN)
      return s == 2.0f ? x * x : (s == 0.5f ? sqrtf(x) : powf(x, s));
    case UnaryOp::rpow: return powf(s, x);
    case UnaryOp::add: return x + s;
    case UnaryOp::mul: return x * s;
    case UnaryOp::rsub: return s - x;
    case UnaryOp::rdiv: return s / x;
    case UnaryOp::div: return x / s;
    default: return s;  // fill
  }
}

__global__ void __launch_bounds__(kThreads) unary_kernel(UnaryOp op, int64_t n, const float* __restrict__ x,
                                                         float* __restrict__ y, float s) {
  for (int64_t i = first_index(); i < n; i += grid_step()) y[i] = unary_op(op, op == UnaryOp::fill ? 0.0f : x[i], s);
}

template <typename C>
__device__ __forceinline__ bool compare_op(CompareOp op, C a, C b) {
  switch (op) {
    case CompareOp::eq: return a == b;
    case CompareOp::ne: return a != b;
    case CompareOp::lt: return a < b;
    case CompareOp::le: return a <= b;
    case CompareOp::gt: return a > b;
    default: return a >= b;
  }
}

// C: the comparison type with a scalar (float for float32 tensors, double for integers).
template <typename T, typename C>
__global__ void __launch_bounds__(kThreads) compare_kernel(CompareArgs p, int64_t numel) {
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  const C s = static_cast<C>(p.b_scalar);
  for (int64_t i = first_index(); i < numel; i += grid_step()) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = p.ndim - 1; d >= 0; --d) {
      const int64_t c = rem % p.shape[d];
      rem /= p.shape[d];
      oa += c * p.a_strides[d];
      ob += c * p.b_strides[d];
    }
    p.out[i] = b ? compare_op<T>(p.op, a[oa], b[ob]) : compare_op<C>(p.op, static_cast<C>(a[oa]), s);
  }
}

template <typename A>
__device__ __forceinline__ int64_t lin_index(const A& a, int64_t b) {
  int64_t l = 0;
  for (int j = 0; j < a.k; ++j) {
    const int64_t v = a.idx[j][b];
    l = l * a.dims[j] + (v < 0 ? v + a.dims[j] : v);
  }
  return l;
}

template <typename E>
__global__ void __launch_bounds__(kThreads) gather_kernel(GatherArgs p) {
  const E* x = static_cast<const E*>(p.x);
  E* out = static_cast<E*>(p.out);
  const int64_t total = p.n_idx * p.inner;
  for (int64_t i = first_index(); i < total; i += grid_step()) {
    const int64_t b = i / p.inner, c = i - b * p.inner;
    out[i] = x[lin_index(p, b) * p.inner + c];
  }
}

__global__ void __launch_bounds__(kThreads) zero_kernel(float* __restrict__ y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_step()) y[i] = 0.0f;
}

__global__ void __launch_bounds__(kThreads) scatter_add_kernel(ScatterAddArgs p) {
  for (int64_t c = first_index(); c < p.inner; c += grid_step()) {
    for (int64_t b = 0; b < p.n_idx; ++b) p.grad_x[lin_index(p, b) * p.inner + c] += p.grad_out[b * p.inner + c];
  }
}

__global__ void __launch_bounds__(1) set_u64_kernel(unsigned long long* dst, unsigned long long v) { *dst = v; }

__global__ void __launch_bounds__(kThreads) index_check_kernel(GatherIndexCheckArgs p) {
  for (int64_t b = first_index(); b < p.n_idx; b += grid_step()) {
    bool bad = false;
    for (int j = 0; j < p.k; ++j) {
      const int64_t v = p.idx[j][b];
      bad = bad || v < -p.dims[j] || v >= p.dims[j];
    }
    if (bad) atomicMin(p.first_bad, static_cast<unsigned long long>(b));
  }
}

template <typename T, typename C>
void launch_compare(const CompareArgs& a, int64_t numel, cudaStream_t stream) {
  auto* k = &compare_kernel<T, C>;
  FASTNN_LAUNCH(k, blocks_for(numel), kThreads, 0, stream)(a, numel);
  FASTNN_CUDA_CHECK_LAUNCH("compare_kernel");
}

template <typename E>
void launch_gather(const GatherArgs& a, cudaStream_t stream) {
  auto* k = &gather_kernel<E>;
  FASTNN_LAUNCH(k, blocks_for(a.n_idx * a.inner), kThreads, 0, stream)(a);
  FASTNN_CUDA_CHECK_LAUNCH("gather_kernel");
}

}  // namespace

void ewm_unary(const UnaryArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return;
  FASTNN_LAUNCH(unary_kernel, blocks_for(a.n), kThreads, 0, stream)(a.op, a.n, a.x, a.y, a.s);
  FASTNN_CUDA_CHECK_LAUNCH("unary_kernel");
}

void ewm_compare(const CompareArgs& a, cudaStream_t stream) {
  int64_t numel = 1;
  for (int d = 0; d < a.ndim; ++d) numel *= a.shape[d];
  if (numel <= 0) return;
  switch (a.dtype) {
    case DType::int64: return launch_compare<int64_t, double>(a, numel, stream);
    case DType::int32: return launch_compare<int32_t, double>(a, numel, stream);
    default: return launch_compare<float, float>(a, numel, stream);
  }
}

void ewm_gather(const GatherArgs& a, cudaStream_t stream) {
  if (a.n_idx * a.inner <= 0) return;
  switch (a.elem_size) {
    case 8: return launch_gather<unsigned long long>(a, stream);
    case 4: return launch_gather<unsigned int>(a, stream);
    case 2: return launch_gather<unsigned short>(a, stream);
    default: return launch_gather<unsigned char>(a, stream);
  }
}

void ewm_scatter_add(const ScatterAddArgs& a, cudaStream_t stream) {
  int64_t rows = 1;
  for (int j = 0; j < a.k; ++j) rows *= a.dims[j];
  const int64_t n = rows * a.inner;
  if (n <= 0) return;
  FASTNN_LAUNCH(zero_kernel, blocks_for(n), kThreads, 0, stream)(a.grad_x, n);
  FASTNN_CUDA_CHECK_LAUNCH("zero_kernel");
  if (a.n_idx <= 0 || a.inner <= 0) return;
  FASTNN_LAUNCH(scatter_add_kernel, blocks_for(a.inner), kThreads, 0, stream)(a);
  FASTNN_CUDA_CHECK_LAUNCH("scatter_add_kernel");
}

void ewm_index_check(const GatherIndexCheckArgs& a, cudaStream_t stream) {
  FASTNN_LAUNCH(set_u64_kernel, 1, 1, 0, stream)(a.first_bad, static_cast<unsigned long long>(a.n_idx));
  FASTNN_CUDA_CHECK_LAUNCH("set_u64_kernel");
  if (a.n_idx <= 0) return;
  FASTNN_LAUNCH(index_check_kernel, blocks_for(a.n_idx), kThreads, 0, stream)(a);
  FASTNN_CUDA_CHECK_LAUNCH("index_check_kernel");
}

}  // namespace fastnn::cuda_kernels
