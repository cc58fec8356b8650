// Fused multi-tensor optimizers and gradient clipping, float32, in place.
//
// A tensor list is passed as parallel arrays of raw pointers (one per tensor) plus one
// array of element counts; every tensor is contiguous. The same structs are used by the
// CPU kernels (fastnn::cpu::*) and the CUDA backend. Host-side scalars that depend on the
// step (bias corrections) are computed by the caller in double and passed as float.
#pragma once
#include <cstdint>

namespace fastnn {

// Adam / AdamW, exactly torch.optim.Adam(W) (foreach/single-tensor formulas):
//   g = grad / grad_scale;  if maximize: g = -g
//   if weight_decay and !decoupled: g += weight_decay * p
//   if weight_decay and decoupled:  p *= 1 - lr * weight_decay
//   m = m + (1 - beta1) * (g - m)                     (torch: exp_avg.lerp_(g, 1 - beta1))
//   v = beta2 * v + (1 - beta2) * g * g
//   if amsgrad: vmax = max(vmax, v); v_hat = vmax else v_hat = v
//   p -= step_size * m / fma(sqrt(v_hat), 1 / bias_correction2_sqrt, eps)   (torch divides; ~1 ulp)
// with step_size = lr / (1 - beta1^step), bias_correction2_sqrt = sqrt(1 - beta2^step).
// found_inf (optional, 1 float): if *found_inf != 0 on entry, nothing is done; otherwise a
// first pass over all grads (read-only, 4 B/param extra traffic) looks for Inf/NaN in g; if
// any, *found_inf = 1 and nothing is updated. Without found_inf the update is one pass.
struct AdamArgs {
  int64_t num_tensors = 0;
  float* const* params = nullptr;
  const float* const* grads = nullptr;
  float* const* exp_avgs = nullptr;
  float* const* exp_avg_sqs = nullptr;
  float* const* max_exp_avg_sqs = nullptr;  // amsgrad only
  const int64_t* numels = nullptr;
  // Hyperparameters in double: the derived factors (1 - beta1, 1 - beta2, 1 - lr * wd) are
  // formed in double and rounded once to float, as torch does with its Python-float scalars.
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  double step_size = 0.0;              // lr / (1 - beta1^step), computed in double
  double bias_correction2_sqrt = 1.0;  // sqrt(1 - beta2^step), computed in double
  bool decoupled = false, maximize = false, amsgrad = false;
  float grad_scale = 1.0f;             // grads are divided by it (1 = none)
  float* found_inf = nullptr;          // optional, see above
};

// SGD, exactly torch.optim.SGD:
//   g = grad (negated if maximize);  if weight_decay: g += weight_decay * p
//   if momentum: buf = first_step ? g : momentum * buf + (1 - dampening) * g
//                g = nesterov ? g + momentum * buf : buf
//   p -= lr * g
// first_step: the momentum buffers are uninitialised and get g (torch's lazily created buffer).
struct SgdArgs {
  int64_t num_tensors = 0;
  float* const* params = nullptr;
  const float* const* grads = nullptr;
  float* const* momentum_buffers = nullptr;  // momentum != 0 only
  const int64_t* numels = nullptr;
  double lr = 0.0, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;  // see AdamArgs
  bool nesterov = false, maximize = false, first_step = false;
};

// Total p-norm of all grads (as if concatenated). norm_type: p > 0 finite, or INFINITY.
// Accumulation in double per thread. Returns the norm as double.
struct GradNormArgs {
  int64_t num_tensors = 0;
  const float* const* grads = nullptr;
  const int64_t* numels = nullptr;
  double norm_type = 2.0;
};
// grads *= scale, in place.
struct ScaleArgs {
  int64_t num_tensors = 0;
  float* const* tensors = nullptr;
  const int64_t* numels = nullptr;
  float scale = 1.0f;
};

namespace cpu {
// Below this many elements (of the whole list) a second thread costs more (wake-up ~ several
// us) than it saves; shared with the same-buffer bandwidth probe so both split work alike.
constexpr int64_t kOptimGrain = 32768;

void adam(const AdamArgs& args);
void sgd(const SgdArgs& args);
double grad_norm(const GradNormArgs& args);
void scale_(const ScaleArgs& args);
// torch.nn.utils.clip_grad_norm_: norm = grad_norm; coef = min(1, max_norm / (norm + 1e-6));
// grads *= coef (skipped when coef == 1). Returns the total norm.
double clip_grad_norm(float* const* grads, const int64_t* numels, int64_t num_tensors, double max_norm,
                      double norm_type);
}  // namespace cpu

}  // namespace fastnn
