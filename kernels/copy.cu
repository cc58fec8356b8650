// Strided copy with dtype conversion (CudaBackend::copy) and fill.
//
// Algorithm: the host merges dimensions that are contiguous in both tensors and
// drops size-1 dimensions, so the common cases (contiguous conversion, transposed
// copy) reach the kernel with 1-2 dimensions; a same-dtype copy of two contiguous
// tensors becomes cudaMemcpyAsync. The kernel is a grid-stride loop: each thread
// turns a linear index into coordinates (div/mod over <= 8 dims) and moves one
// element. Bound: memory bandwidth (a GPU hides the index arithmetic behind the
// loads; a few hundred blocks of 256 threads saturate an H100's HBM).
#include "cuda_compat.cuh"

#include <cstdint>
#include <limits>
#include <type_traits>

#include "cuda_backend/check.h"
#include "cuda_backend/kernels.h"

namespace fastnn::cuda_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1024;  // grid-stride beyond: enough to fill 132 SMs

struct CopyParams {
  int ndim;
  int64_t numel;
  int64_t shape[kMaxCopyDims];
  int64_t dst_strides[kMaxCopyDims];
  int64_t src_strides[kMaxCopyDims];
  void* dst;
  const void* src;
};

template <typename T> struct is_reduced_float : std::false_type {};
template <> struct is_reduced_float<__half> : std::true_type {};
template <> struct is_reduced_float<__nv_bfloat16> : std::true_type {};

__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

// Reference semantics of a single element conversion (see kernels.h).
template <typename D, typename S>
__device__ __forceinline__ D convert(S v) {
  if constexpr (std::is_same<D, S>::value) {
    return v;
  } else if constexpr (is_reduced_float<S>::value) {
    return convert<D>(widen(v));
  } else if constexpr (std::is_same<D, bool>::value) {
    return v != S(0);  // NaN != 0: true, as in NumPy
  } else if constexpr (std::is_same<D, __half>::value) {
    if constexpr (std::is_same<S, float>::value) return __float2half_rn(v);
    else return __double2half(static_cast<double>(v));
  } else if constexpr (std::is_same<D, __nv_bfloat16>::value) {
    if constexpr (std::is_same<S, float>::value) return __float2bfloat16_rn(v);
    else return __double2bfloat16(static_cast<double>(v));
  } else if constexpr (std::is_integral<D>::value && std::is_floating_point<S>::value) {
    // Saturating, NaN -> 0: defined on every device (a C++ cast is UB out of range).
    if (v != v) return D(0);
    if (v <= static_cast<S>(std::numeric_limits<D>::lowest())) return std::numeric_limits<D>::lowest();
    if (v >= static_cast<S>(std::numeric_limits<D>::max())) return std::numeric_limits<D>::max();
    return static_cast<D>(v);
  } else {
    return static_cast<D>(v);
  }
}

template <typename D, typename S>
__global__ void __launch_bounds__(kThreads) strided_copy_kernel(CopyParams p) {
  D* dst = static_cast<D*>(p.dst);
  const S* src = static_cast<const S*>(p.src);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    int64_t rem = i, so = 0, dof = 0;
    for (int d = p.ndim - 1; d > 0; --d) {
      const int64_t idx = rem % p.shape[d];
      rem /= p.shape[d];
      so += idx * p.src_strides[d];
      dof += idx * p.dst_strides[d];
    }
    so += rem * p.src_strides[0];
    dof += rem * p.dst_strides[0];
    dst[dof] = convert<D>(src[so]);
  }
}

template <typename D>
__global__ void __launch_bounds__(kThreads) fill_kernel(D* dst, int64_t n, double value) {
  const D v = convert<D>(value);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) dst[i] = v;
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < kMaxBlocks ? b : kMaxBlocks);
}

template <typename D, typename S>
void launch_copy(const CopyParams& p, cudaStream_t stream) {
  auto* k = &strided_copy_kernel<D, S>;
  FASTNN_LAUNCH(k, blocks_for(p.numel), kThreads, 0, stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("strided_copy_kernel");
}

template <typename F>
void dispatch_dtype(DType dt, F&& f) {
  switch (dt) {
    case DType::float32: return f(float{});
    case DType::float64: return f(double{});
    case DType::float16: return f(__half{});
    case DType::bfloat16: return f(__nv_bfloat16{});
    case DType::int32: return f(int32_t{});
    case DType::int64: return f(int64_t{});
    case DType::uint8: return f(uint8_t{});
    case DType::bool_: return f(bool{});
  }
  throw ValueError(detail::concat("copy: unsupported dtype code ", static_cast<int>(dt)));
}

size_t dtype_size(DType dt) {
  switch (dt) {
    case DType::float64: case DType::int64: return 8;
    case DType::float32: case DType::int32: return 4;
    case DType::float16: case DType::bfloat16: return 2;
    default: return 1;
  }
}

}  // namespace

void copy(const CopyArgs& a, cudaStream_t stream) {
  CopyParams p{};
  p.dst = a.dst;
  p.src = a.src;
  // Drop size-1 dims, then merge dim d into d-1 when both tensors are contiguous across them.
  int nd = 0;
  int64_t numel = 1;
  int64_t shape[64], ds[64], ss[64];
  if (a.ndim > 64) throw ValueError(detail::concat("copy: at most 64 dimensions, got ", a.ndim));
  for (int d = 0; d < a.ndim; ++d) {
    numel *= a.shape[d];
    if (a.shape[d] == 1) continue;
    if (nd > 0 && ds[nd - 1] == a.shape[d] * a.dst_strides[d] && ss[nd - 1] == a.shape[d] * a.src_strides[d]) {
      shape[nd - 1] *= a.shape[d];
      ds[nd - 1] = a.dst_strides[d];
      ss[nd - 1] = a.src_strides[d];
      continue;
    }
    shape[nd] = a.shape[d];
    ds[nd] = a.dst_strides[d];
    ss[nd] = a.src_strides[d];
    ++nd;
  }
  if (numel == 0) return;
  if (nd == 0) {  // a single element
    shape[0] = 1;
    ds[0] = ss[0] = 1;
    nd = 1;
  }
  if (nd == 1 && ds[0] == 1 && ss[0] == 1 && a.dst_dtype == a.src_dtype) {
    FASTNN_CUDA_CHECK(cudaMemcpyAsync(a.dst, a.src, static_cast<size_t>(numel) * dtype_size(a.dst_dtype),
                                      cudaMemcpyDeviceToDevice, stream));
    return;
  }
  if (nd > kMaxCopyDims)
    throw ValueError(detail::concat("copy: strides leave ", nd, " non-mergeable dimensions; at most ",
                                    kMaxCopyDims, " are supported"));
  p.ndim = nd;
  p.numel = numel;
  for (int d = 0; d < nd; ++d) {
    p.shape[d] = shape[d];
    p.dst_strides[d] = ds[d];
    p.src_strides[d] = ss[d];
  }
  dispatch_dtype(a.dst_dtype, [&](auto dv) {
    dispatch_dtype(a.src_dtype, [&](auto sv) { launch_copy<decltype(dv), decltype(sv)>(p, stream); });
  });
}

void fill(void* dst, DType dtype, double value, int64_t n, cudaStream_t stream) {
  if (n <= 0) return;
  dispatch_dtype(dtype, [&](auto v) {
    using D = decltype(v);
    auto* k = &fill_kernel<D>;
    FASTNN_LAUNCH(k, blocks_for(n), kThreads, 0, stream)(static_cast<D*>(dst), n, value);
    FASTNN_CUDA_CHECK_LAUNCH("fill_kernel");
  });
}

}  // namespace fastnn::cuda_kernels
