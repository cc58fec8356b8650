// GEMM: C <- act(alpha * A @ B + beta * C + bias_row[i] + bias_col[j]), float32.
//
// General-stride description (BLIS style): element (i, p) of the m x k operand A
// is a[i * a_rs + p * a_cs]; transposition is a swap of the two strides, so the
// caller folds trans_a / trans_b into them. Strides are in elements and may be
// negative or zero. C must not alias A or B. beta == 0 means C is not read (NaN/Inf
// in C are ignored, as in BLAS). Batched: `batch` independent products whose
// operands start batch_stride elements apart (0 broadcasts one operand).
#pragma once
#include <cstdint>

#include "fastnn/activation.h"
#include "fastnn/tensor.h"

namespace fastnn {

struct GemmArgs {
  int64_t m = 0, n = 0, k = 0;
  const float* a = nullptr;
  int64_t a_rs = 0, a_cs = 0;
  const float* b = nullptr;
  int64_t b_rs = 0, b_cs = 0;
  float* c = nullptr;
  int64_t c_rs = 0, c_cs = 0;
  float alpha = 1.0f, beta = 0.0f;
  const float* bias_col = nullptr;  // length n, added to every row (Linear's bias)
  const float* bias_row = nullptr;  // length m, added to every column (conv's per-channel bias)
  Activation activation = Activation::none;
  int64_t batch = 1;
  int64_t a_batch_stride = 0, b_batch_stride = 0, c_batch_stride = 0;
  // Element type of A and B: float32, or (CUDA only: the tensor-core path, FP32
  // accumulation) bfloat16 / float16, in which case `a` and `b` hold the addresses of
  // 16-bit elements (read them through gemm_operand<T>); strides stay in elements.
  // C, c's input and the biases are float32 in every case. The CPU kernel takes float32.
  DType ab_dtype = DType::float32;
  // float32 operands may be rounded to TF32 (10-bit mantissa) on tensor cores: the
  // configuration fastnn.cuda.set_allow_tf32 (default off), copied in by the bindings.
  bool allow_tf32 = false;
  // CUDA block tile: 0 = the dispatcher's heuristic (docs/CUDA.md "GEMM"), 64 or 128 =
  // force BM = BN = tile (fastnn.cuda.set_gemm_tile: the configuration, for tests / tuning).
  int tile = 0;
};

// CUDA op "gemm_plan": which kernel cuda gemm would run for `args` (without running it).
// path: 0 fp32 (CUDA cores), 1 tf32, 2 bf16, 3 fp16 (tensor cores); tile: 64 or 128.
struct GemmPlanQuery {
  GemmArgs args;
  int* path = nullptr;
  int* tile = nullptr;
};

// A or B as elements of T (T matches GemmArgs::ab_dtype).
template <class T>
inline const T* gemm_operand(const float* p) {
  return reinterpret_cast<const T*>(p);
}

namespace cpu {
void gemm(const GemmArgs& args);
}  // namespace cpu

}  // namespace fastnn
