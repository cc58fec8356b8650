// 2-D convolution as an implicit GEMM on tensor cores (nvcuda::wmma), forward / grad
// input / grad weight: the GEMM views of conv_igemm_gather.cuh with operands in
//   TF32 (float32 inputs, Conv2dArgs::allow_tf32; m16n16k8 fragments),
//   BF16 / FP16 (16-bit x and weight, read directly; float32 dy rounded to the 16-bit
//   type while staging; m16n16k16 fragments),
// always accumulating in FP32, with the FP32 kernel's epilogue (bias + activation,
// split-K partials for wgrad).
//
// Tiling: 64x64 output tile per block of 4 warps (128 threads), each warp 32x32 = 2x2
// accumulator fragments; K steps of 16. Each step gathers the A (64x16, row-major) and B
// (16x64, row-major) tiles into shared memory, converting to the operand type once per
// element (TF32 rounding, cvt.rna, happens here rather than per fragment load); the
// accumulators go through a shared 64x68 float tile (aliasing the operand tiles) so the
// epilogue can address outputs element by element. Shared memory: 17 KiB per block.
//
// Bound: tensor-core peaks are 156 (TF32) / 312 (BF16, FP16) TFLOP/s dense on A100 and
// 495 / 989 on H100 SXM; at 64x64x16 per step a block moves 2*64*16 operands through
// shared memory for 131K flops (32 flop/B at 16-bit), but the gathers are scalar loads
// through L1 without cp.async double buffering, so this kernel is load-bound: expect
// ~20-30% of the tensor-core peak on large layers (still 1.5-3x the FP32 kernel), and
// launch latency on the small bench layers of issue 4.
#include "cuda_compat.cuh"

#include <cstdint>
#include <type_traits>

#include "conv_common.cuh"
#include "conv_igemm_gather.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels::igemm {
namespace {

constexpr int BM = kIgemmTile, BN = kIgemmTile, BK = kIgemmBK, kThreads = 128;
constexpr int kLdA = BK + 8, kLdB = BN + 8, kLdC = BN + 4;  // row strides: multiples of 16 bytes

// Shared-memory element type and fragment precision per operand type.
template <class T>
struct Operand;
template <>
struct Operand<float> {
  using precision = nvcuda::wmma::precision::tf32;
  static constexpr int kK = 8;
  __device__ static float convert(float v) { return nvcuda::wmma::__float_to_tf32(v); }
};
template <>
struct Operand<__half> {
  using precision = __half;
  static constexpr int kK = 16;
  __device__ static __half convert(float v) { return __float2half_rn(v); }
};
template <>
struct Operand<__nv_bfloat16> {
  using precision = __nv_bfloat16;
  static constexpr int kK = 16;
  __device__ static __nv_bfloat16 convert(float v) { return __float2bfloat16_rn(v); }
};

// Element `off` of an operand holding floats or (is16) T; -1 is an implicit zero.
template <class T>
__device__ __forceinline__ T load_operand(const float* base, bool is16, int off) {
  if (off < 0) return Operand<T>::convert(0.0f);
  if constexpr (!std::is_same_v<T, float>) {
    if (is16) return reinterpret_cast<const T*>(base)[off];
  }
  return Operand<T>::convert(base[off]);
}

constexpr size_t smem_bytes(size_t elem) {
  const size_t operands = (BM * kLdA + BK * kLdB) * elem, acc = BM * kLdC * sizeof(float);
  return operands > acc ? operands : acc;
}

template <int kMode, class T>
__global__ void __launch_bounds__(kThreads) conv_igemm_wmma_kernel(Params p) {
  using namespace nvcuda;
  using Op = Operand<T>;
  constexpr int kK = Op::kK;
  FASTNN_DYNAMIC_SHARED(unsigned char, smem);
  T* As = reinterpret_cast<T*>(smem);          // [BM][kLdA]
  T* Bs = As + BM * kLdA;                      // [BK][kLdB]
  float* Cs = reinterpret_cast<float*>(smem);  // [BM][kLdC], after the K loop
  const int tid = threadIdx.x, warp = tid / 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int g = blockIdx.z / p.splits, split = blockIdx.z - g * p.splits;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int kbeg = split * p.k_chunk, kend = min(p.K, kbeg + p.k_chunk);
  const Column col = column<kMode>(p, g, n0 + tid % BN);
  const int a_kk = tid % BK, a_m = tid / BK, b_kk = tid / BN, b_n = tid % BN;
  constexpr int kARowsPerPass = kThreads / BK, kBRowsPerPass = kThreads / BN;

  wmma::fragment<wmma::accumulator, 16, 16, kK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int k0 = kbeg; k0 < kend; k0 += BK) {
    const ARow ar = a_row<kMode>(p, g, k0 + a_kk, kend);
#pragma unroll
    for (int i = 0; i < BM / kARowsPerPass; ++i) {
      const int m = a_m + kARowsPerPass * i;
      const int off = (ar.ok && m0 + m < p.M) ? ar.off + (m0 + m) * ar.mstride : -1;
      As[m * kLdA + a_kk] = load_operand<T>(p.a, p.a_16bit, off);
    }
#pragma unroll
    for (int i = 0; i < BK / kBRowsPerPass; ++i) {
      const int kk = b_kk + kBRowsPerPass * i;
      Bs[kk * kLdB + b_n] = load_operand<T>(p.b, p.b_16bit, gather_offset<kMode>(p, col, k0 + kk, kend));
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += kK) {
      wmma::fragment<wmma::matrix_a, 16, 16, kK, typename Op::precision, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, kK, typename Op::precision, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], As + (wm + 16 * i) * kLdA + kk, kLdA);
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], Bs + kk * kLdB + wn + 16 * j, kLdB);
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
  // Cs aliases the operand tiles: every warp is past its last read (the loop's closing barrier).
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm + 16 * i) * kLdC + wn + 16 * j, acc[i][j], kLdC, wmma::mem_row_major);
  __syncthreads();
  const int n = n0 + tid % BN;
  if (n >= p.N) return;
  for (int m = tid / BN; m < BM && m0 + m < p.M; m += kBRowsPerPass)
    store<kMode>(p, g, split, m0 + m, n, Cs[m * kLdC + tid % BN]);
}

template <int kMode, class T>
void launch_typed(const Params& p, int64_t groups, cudaStream_t stream) {
  auto* k = &conv_igemm_wmma_kernel<kMode, T>;
  FASTNN_LAUNCH(k, grid_of(p, groups, BM, BN, "conv2d"), kThreads, smem_bytes(sizeof(T)), stream)(p);
  FASTNN_CUDA_CHECK_LAUNCH("conv_igemm_wmma_kernel");
}

template <int kMode>
void launch_mode(const Params& p, int64_t groups, DType operand, cudaStream_t stream) {
  switch (operand) {
    case DType::bfloat16: launch_typed<kMode, __nv_bfloat16>(p, groups, stream); break;
    case DType::float16: launch_typed<kMode, __half>(p, groups, stream); break;
    default: launch_typed<kMode, float>(p, groups, stream); break;
  }
}

}  // namespace

void launch_igemm_wmma(int mode, const Params& p, int64_t groups, DType operand, cudaStream_t stream) {
  switch (mode) {
    case kForward: launch_mode<kForward>(p, groups, operand, stream); break;
    case kGradInput: launch_mode<kGradInput>(p, groups, operand, stream); break;
    default: launch_mode<kGradWeight>(p, groups, operand, stream); break;
  }
}

}  // namespace fastnn::cuda_kernels::igemm
