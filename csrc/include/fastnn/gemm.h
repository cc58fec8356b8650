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
};

namespace cpu {
void gemm(const GemmArgs& args);
}  // namespace cpu

}  // namespace fastnn
