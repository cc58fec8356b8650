// Pieces shared by the two GEMM paths (gemm_fp32.cu, gemm_tensor_core.cu):
// the shared-memory tile layout, cp.async staging of an operand tile with 16-byte
// vectors where the strides allow it (element copies and zero fill otherwise),
// and the fused epilogue of GemmArgs (alpha, beta * C, biases, activation).
//
// Operands are seen as "row x k" tiles: A is (m, k) with strides (a_rs, a_cs); B is
// viewed as (n, k) with strides (b_cs, b_rs). A tile is stored k-contiguous
// (KC: element (r, k) at r * ld + k, wmma row_major for A / col_major for B) when the
// operand is k-contiguous in memory, else row-contiguous (element (r, k) at k * ld + r),
// so a 16-byte global vector always lands on 16 consecutive shared-memory bytes.
#pragma once
#include "cuda_compat.cuh"

#include <cstdint>

#include "fastnn/gemm.h"

#ifdef __CUDACC__
#define FASTNN_GEMM_NOINLINE __noinline__
#else  // the emulator's compatibility header does not define __noinline__
#define FASTNN_GEMM_NOINLINE __attribute__((noinline))
#endif

namespace fastnn::cuda_kernels::gemm_detail {

// Element (r, k) of a ROWS x BK tile of T. The 16-byte pad keeps every row start
// 16-byte aligned (cp.async, wmma needs 32-byte fragment starts: see the users).
template <class T, int ROWS, int BK, bool KC>
struct TileLayout {
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // elements per 16-byte vector
  static constexpr int ld = (KC ? BK : ROWS) + kVec;
  static constexpr int elems = (KC ? ROWS : BK) * ld;
  __device__ static __forceinline__ int at(int r, int k) { return KC ? r * ld + k : k * ld + r; }
};

// A strided operand viewed as (rows, k): element (r, k) at p[r * rs + k * ks].
template <class T>
struct OperandView {
  const T* p;
  int64_t rs, ks, rows, k;
  bool vec;  // 16-byte copies allowed (see vector_ok)
};

// 16-byte vectors along the tile's contiguous dimension are legal when that stride is 1,
// the other stride is a multiple of the vector length and the base (with every batch
// offset) is 16-byte aligned. Tile origins are multiples of the vector length.
template <class T>
inline bool vector_ok(const T* p, int64_t contiguous_stride, int64_t other_stride, int64_t batch_stride) {
  constexpr int64_t v = 16 / static_cast<int64_t>(sizeof(T));
  return contiguous_stride == 1 && other_stride % v == 0 && batch_stride % v == 0 &&
         reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Issues the cp.async copies of tile (row0.., k0..) into `s`; elements outside the
// operand are zero-filled with plain stores (never read from global memory).
// The caller commits the group.
template <class T, int ROWS, int BK, bool KC, int THREADS>
__device__ __forceinline__ void stage_tile(T* s, const OperandView<T>& v, int64_t row0, int64_t k0) {
  using L = TileLayout<T, ROWS, BK, KC>;
  constexpr int V = L::kVec;
  constexpr int kGroups = ROWS * BK / V;
  for (int gi = threadIdx.x; gi < kGroups; gi += THREADS) {
    // First element of a group of V consecutive along the contiguous shared-memory dim.
    const int r = KC ? gi / (BK / V) : (gi % (ROWS / V)) * V;
    const int k = KC ? (gi % (BK / V)) * V : gi / (ROWS / V);
    T* dst = s + L::at(r, k);
    const int64_t gr = row0 + r, gk = k0 + k;
    const bool full = KC ? (gr < v.rows && gk + V <= v.k) : (gk < v.k && gr + V <= v.rows);
    if (v.vec && full) {
      __pipeline_memcpy_async(dst, v.p + gr * v.rs + gk * v.ks, 16);
      continue;
    }
#pragma unroll 1
    for (int e = 0; e < V; ++e) {
      const int64_t er = KC ? gr : gr + e, ek = KC ? gk + e : gk;
      if (er >= v.rows || ek >= v.k)
        dst[e] = T(0.0f);
      else if constexpr (sizeof(T) >= 4)
        __pipeline_memcpy_async(dst + e, v.p + er * v.rs + ek * v.ks, sizeof(T));
      else  // cp.async moves 4, 8 or 16 bytes: a 2-byte element goes through a register
        dst[e] = v.p[er * v.rs + ek * v.ks];
    }
  }
}

// Not inlined: the register-blocked epilogues call it once per output element, and
// inlining erff / tanhf / expf 64 times would multiply code size and register pressure.
__device__ inline FASTNN_GEMM_NOINLINE float activate(float x, Activation act) {
  switch (act) {
    case Activation::relu: return x < 0.0f ? 0.0f : x;  // NaN propagates, as torch.relu
    case Activation::gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case Activation::gelu_tanh:
      return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case Activation::sigmoid: return 1.0f / (1.0f + expf(-x));
    case Activation::tanh: return tanhf(x);
    default: return x;  // none (the bindings accept no other activation in a GEMM epilogue)
  }
}

// C[i, j] <- act(alpha * acc + beta * C[i, j] + bias_row[i] + bias_col[j]); in bounds only.
__device__ __forceinline__ void store_output(const GemmArgs& g, float* C, int64_t i, int64_t j, float acc) {
  if (i >= g.m || j >= g.n) return;
  float* cp = C + i * g.c_rs + j * g.c_cs;
  float v = g.alpha * acc;
  if (g.beta != 0.0f) v += g.beta * *cp;  // beta == 0: C is not read (NaN-safe, as BLAS)
  if (g.bias_row) v += g.bias_row[i];
  if (g.bias_col) v += g.bias_col[j];
  *cp = activate(v, g.activation);
}

}  // namespace fastnn::cuda_kernels::gemm_detail
