// Batch normalisation over (N, C, *) float32 tensors, contiguous: statistics per channel c over
// the N * inner elements x[n, c, i] (inner = product of the trailing dims; 1 for (N, C)).
//
// Training (batch statistics):
//   mean = sum x / m,  var = sum (x - mean)^2 / m            (m = N * inner; two passes, double sums)
//   y = (x - mean) * invstd * weight + bias,  invstd = 1 / sqrt(var + eps)
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var * m / (m - 1)   (unbiased, as torch)
// Evaluation: mean/var are the running statistics. save_mean / save_invstd (C floats) receive
// the mean and invstd used, for the backward:
//   training: dx = invstd (w dy - mean(w dy) - xhat mean(w dy xhat)),  xhat = (x - mean) invstd
//   eval:     dx = invstd w dy
//   dweight = sum dy xhat, dbias = sum dy.
#pragma once
#include <cstdint>

namespace fastnn {

struct BatchNormArgs {
  int64_t n = 0, c = 0, inner = 1;
  const float* x = nullptr;
  float* y = nullptr;
  const float* weight = nullptr;  // optional (affine=False: 1)
  const float* bias = nullptr;    // optional (0)
  float* running_mean = nullptr;  // optional; read in eval, updated in training
  float* running_var = nullptr;
  float* save_mean = nullptr;     // (C) out
  float* save_invstd = nullptr;   // (C) out
  bool training = true;
  double momentum = 0.1, eps = 1e-5;
};

struct BatchNormBackwardArgs {
  int64_t n = 0, c = 0, inner = 1;
  const float* dy = nullptr;
  const float* x = nullptr;
  const float* weight = nullptr;  // optional
  const float* save_mean = nullptr;
  const float* save_invstd = nullptr;
  float* dx = nullptr;            // optional
  float* dweight = nullptr;       // optional
  float* dbias = nullptr;         // optional
  bool training = true;
};

namespace cpu {
void batch_norm(const BatchNormArgs& args);
void batch_norm_backward(const BatchNormBackwardArgs& args);
}  // namespace cpu

}  // namespace fastnn
