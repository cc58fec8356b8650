// Elementwise math the Python layer needs beyond the training kernels (fastnn/nn_kernels.h):
// unary functions and tensor-scalar arithmetic, comparisons with broadcasting (-> bool),
// and the gather / scatter-add pair behind advanced indexing. Shared by the CPU kernels
// (fastnn::cpu::*, csrc/cpu/kernels/elementwise_math.cpp) and the CUDA kernels
// (kernels/elementwise_math.cu). Inputs are validated by the bindings
// (csrc/bindings/bind_elementwise_math.cpp); kernels trust them.
#pragma once
#include <cstdint>

#include "fastnn/tensor.h"

namespace fastnn {

// y[i] = f(x[i], s) over n contiguous float32 elements. NaN/Inf follow NumPy:
//   exp, log (log(0) = -inf, log(<0) = NaN), sqrt, rsqrt = 1/sqrt, abs, sign (sign(NaN) = NaN,
//   sign(0) = 0), neg, pow = x^s (C/NumPy pow semantics), rpow = s^x, add = x + s, mul = x * s,
//   rsub = s - x, rdiv = s / x, fill = s (x unused, may be null), div = x / s.
enum class UnaryOp : int {
  exp = 0, log, sqrt, rsqrt, abs, sign, neg, pow, rpow, add, mul, rsub, rdiv, fill, div
};
struct UnaryArgs {
  UnaryOp op = UnaryOp::exp;
  int64_t n = 0;
  const float* x = nullptr;
  float* y = nullptr;
  float s = 0.0f;
};

constexpr int kMaxCompareDims = 8;
enum class CompareOp : int { eq = 0, ne, lt, le, gt, ge };
// out (contiguous bool bytes of `shape`) = a op b, NumPy broadcasting already resolved into
// element strides (0 on broadcast dimensions). dtype: float32, int64 or int32 (a and b alike).
// b == nullptr compares with the scalar b_scalar: in float32 for float32 tensors (NumPy's weak
// Python scalars), in float64 for integer tensors. NaN compares unequal to everything.
struct CompareArgs {
  CompareOp op = CompareOp::eq;
  DType dtype = DType::float32;
  int ndim = 0;
  int64_t shape[kMaxCompareDims] = {};
  const void* a = nullptr;
  int64_t a_strides[kMaxCompareDims] = {};
  const void* b = nullptr;
  int64_t b_strides[kMaxCompareDims] = {};
  double b_scalar = 0.0;
  uint8_t* out = nullptr;
};

// Advanced indexing over the leading k dimensions of a contiguous x viewed as
// (dims[0], ..., dims[k-1], inner): for b < n_idx,
//   gather:       out[b, :] = x[lin(b), :]
//   scatter_add:  grad_x = 0, then grad_x[lin(b), :] += grad_out[b, :]   (b in increasing order)
// with lin(b) = row-major flat index of (idx[0][b], ..., idx[k-1][b]); negative indices count
// from the end (NumPy). Index arrays are contiguous int64 of n_idx elements, all in range.
// gather moves elem_size-byte elements (any dtype); scatter_add is float32 and deterministic
// (every output element is summed in index order b = 0, 1, ...).
constexpr int kMaxIndexArrays = 8;
struct IndexedRows {
  int k = 1;
  int64_t n_idx = 0;
  int64_t inner = 1;
  int64_t dims[kMaxIndexArrays] = {};
  const int64_t* idx[kMaxIndexArrays] = {};
};
struct GatherArgs : IndexedRows {
  int elem_size = 4;
  const void* x = nullptr;
  void* out = nullptr;
};
struct ScatterAddArgs : IndexedRows {
  const float* grad_out = nullptr;
  float* grad_x = nullptr;  // prod(dims) * inner floats, overwritten
};

// CUDA only (the CPU checks on the host): *first_bad = the smallest b whose index idx[j][b]
// is outside [-dims[j], dims[j]) for some j, or n_idx when all are in range. first_bad is
// device memory; the binding reads it back (one device->host copy per checked call).
struct GatherIndexCheckArgs {
  int k = 1;
  int64_t n_idx = 0;
  int64_t dims[kMaxIndexArrays] = {};
  const int64_t* idx[kMaxIndexArrays] = {};
  unsigned long long* first_bad = nullptr;
};

namespace cpu {
void unary(const UnaryArgs& a);
void compare(const CompareArgs& a);
void gather(const GatherArgs& a);
void scatter_add(const ScatterAddArgs& a);
}  // namespace cpu

}  // namespace fastnn
