// Training kernels (forward and backward), float32, contiguous row-major operands.
// "rows x cols" kernels work over the last axis (cols); everything before it is flattened
// into rows. Shared by the CPU kernels (fastnn::cpu::*) and the CUDA backend.
// Inputs are validated by the bindings (shapes, target ranges); kernels trust them.
#pragma once
#include <cstdint>

#include "fastnn/activation.h"

namespace fastnn {

// y = act(x), n elements. Activation::none copies.
struct ActivationArgs {
  Activation act = Activation::none;
  int64_t n = 0;
  const float* x = nullptr;
  float* y = nullptr;
};
// grad_x = grad_y * act'(x)
struct ActivationBackwardArgs {
  Activation act = Activation::none;
  int64_t n = 0;
  const float* x = nullptr;
  const float* grad_y = nullptr;
  float* grad_x = nullptr;
};

// softmax / log_softmax over the last axis (max-subtracted: finite for any finite input).
struct SoftmaxArgs {
  int64_t rows = 0, cols = 0;
  const float* x = nullptr;
  float* y = nullptr;
  bool log = false;
};
// From the forward OUTPUT y:  softmax: gx = y * (gy - sum(gy * y));
//                         log_softmax: gx = gy - exp(y) * sum(gy)
struct SoftmaxBackwardArgs {
  int64_t rows = 0, cols = 0;
  const float* y = nullptr;
  const float* grad_y = nullptr;
  float* grad_x = nullptr;
  bool log = false;
};

enum class Reduction : int { none = 0, mean = 1, sum = 2 };

// Cross entropy of logits (rows x classes) with integer targets, fused with log_softmax:
//   loss_i = lse_i - (1 - ls) * x[i, t_i] - ls / C * sum_j x[i, j]   (0 for ignored rows)
// Reduction mean divides by the number of non-ignored rows (NaN if none, as torch).
// loss: `rows` floats (none) or 1. grad_logits (optional) gets d(reduced loss)/d(logits)
// times grad_loss (nullptr = 1; else 1 float for mean/sum, `rows` floats for none):
//   g[i, j] = scale_i * (softmax_ij - (1 - ls) [j == t_i] - ls / C), 0 on ignored rows,
// computed in the same pass over the logits as the loss. loss may be nullptr (backward only).
struct CrossEntropyArgs {
  int64_t rows = 0, classes = 0;
  const float* logits = nullptr;
  const void* target = nullptr;
  bool target_int64 = true;  // else int32
  int64_t ignore_index = -100;
  float label_smoothing = 0.0f;
  Reduction reduction = Reduction::mean;
  float* loss = nullptr;
  float* grad_logits = nullptr;
  const float* grad_loss = nullptr;
};

// loss = (1 - y) x + (1 + (pw - 1) y) * (log1p(exp(-|x|)) + max(-x, 0))   (torch's stable form)
// pos_weight (optional) has pw_size entries, broadcast along the last axis: pw[e % pw_size].
// grad_x (optional) = ((1 + (pw - 1) y) sigmoid(x) - pw y) * scale, scale as for cross entropy.
struct BceWithLogitsArgs {
  int64_t n = 0;
  const float* x = nullptr;
  const float* target = nullptr;
  const float* pos_weight = nullptr;
  int64_t pw_size = 1;
  Reduction reduction = Reduction::mean;
  float* loss = nullptr;  // n floats (none) or 1
  float* grad_x = nullptr;
  const float* grad_loss = nullptr;  // nullptr = 1; 1 float (mean/sum) or n (none)
};

// loss = (a - b)^2 (reduced); grad_a = 2 (a - b) * scale (grad_b = -grad_a).
struct MseArgs {
  int64_t n = 0;
  const float* a = nullptr;
  const float* b = nullptr;
  Reduction reduction = Reduction::mean;
  float* loss = nullptr;
  float* grad_a = nullptr;
  const float* grad_loss = nullptr;
};

// LayerNorm over the last axis: y = (x - mean) * rstd * weight + bias, rstd = 1/sqrt(var + eps)
// (biased variance). weight/bias optional. mean/rstd: `rows` floats (saved for backward).
struct LayerNormArgs {
  int64_t rows = 0, cols = 0;
  const float* x = nullptr;
  const float* weight = nullptr;
  const float* bias = nullptr;
  float eps = 1e-5f;
  float* y = nullptr;
  float* mean = nullptr;
  float* rstd = nullptr;
};
// grad_x = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = grad_y * weight, xhat = (x - mean) rstd
// grad_weight = sum_rows grad_y * xhat, grad_bias = sum_rows grad_y (each optional, overwritten).
struct LayerNormBackwardArgs {
  int64_t rows = 0, cols = 0;
  const float* x = nullptr;
  const float* weight = nullptr;
  const float* mean = nullptr;
  const float* rstd = nullptr;
  const float* grad_y = nullptr;
  float* grad_x = nullptr;
  float* grad_weight = nullptr;
  float* grad_bias = nullptr;
};

// y = keep(e) ? x / (1 - p) : 0 with keep from fastnn/philox.h (mask regenerated in backward:
// dropout_backward is the same op applied to grad_y).
struct DropoutArgs {
  int64_t n = 0;
  const float* x = nullptr;
  float* y = nullptr;
  float p = 0.0f;
  uint64_t seed = 0, offset = 0;
};

// out[i, :] = table[indices[i], :]  (num_indices x dim)
struct EmbeddingArgs {
  int64_t num_indices = 0, dim = 0;
  const void* indices = nullptr;
  bool indices_int64 = true;
  const float* table = nullptr;
  float* out = nullptr;
};
// grad_table (num_weights x dim) = 0, then grad_table[indices[i], :] += grad_out[i, :].
// Deterministic: threads split the columns, each row is summed in index order.
struct EmbeddingBackwardArgs {
  int64_t num_indices = 0, dim = 0, num_weights = 0;
  const void* indices = nullptr;
  bool indices_int64 = true;
  const float* grad_out = nullptr;
  float* grad_table = nullptr;
};

enum class BinaryOp : int { add = 0, sub = 1, mul = 2, div = 3 };
constexpr int kMaxBroadcastDims = 8;
// out = a op b with NumPy broadcasting already resolved: out is contiguous of `shape`;
// a_strides / b_strides are element strides (0 on broadcast dimensions).
struct BinaryArgs {
  BinaryOp op = BinaryOp::add;
  int ndim = 0;
  int64_t shape[kMaxBroadcastDims] = {};
  const float* a = nullptr;
  int64_t a_strides[kMaxBroadcastDims] = {};
  const float* b = nullptr;
  int64_t b_strides[kMaxBroadcastDims] = {};
  float* out = nullptr;
};

enum class ReduceOp : int { sum = 0, mean = 1, max = 2 };
// x viewed as (outer, r, inner), contiguous; out[o, i] = op over k of x[o, k, i].
// max: indices (optional, int64) receive the first k attaining the max (NaN wins).
struct ReduceArgs {
  ReduceOp op = ReduceOp::sum;
  int64_t outer = 1, r = 1, inner = 1;
  const float* x = nullptr;
  float* out = nullptr;
  int64_t* indices = nullptr;
};

// Backward of max over the middle axis: grad_x (outer, r, inner) = 0 except
// grad_x[o, indices[o, i], i] = grad_out[o, i].
struct ReduceMaxBackwardArgs {
  int64_t outer = 1, r = 1, inner = 1;
  const float* grad_out = nullptr;
  const int64_t* indices = nullptr;
  float* grad_x = nullptr;
};

// ---- CUDA-only helpers of the training-kernel bindings (kernels/nn_index_check.cu) ----
// Range check of an index tensor on the device, before a kernel that trusts it: every
// value must lie in [0, bound) or equal `allowed` (when has_allowed). The launcher
// synchronises the stream and returns on the host the first offending flat position
// (-1 when all are valid) and its value, through a pinned (mapped) host word the kernel
// writes directly: no cudaMemcpy.
struct IndexCheckArgs {
  int64_t n = 0;
  const void* indices = nullptr;
  bool indices_int64 = true;
  int64_t bound = 0;
  bool has_allowed = false;
  int64_t allowed = 0;
  int64_t* bad_position = nullptr;  // host: out
  int64_t* bad_value = nullptr;     // host: out
};
// Embedding backward on CUDA: the shared struct + the variant (atomics, or one block per
// table row scanning the indices in order: bitwise reproducible, see kernels/nn_embedding.cu).
struct EmbeddingBackwardCudaArgs {
  EmbeddingBackwardArgs a;
  bool deterministic = false;
};
// n floats at dst (device) set to value.
struct FillArgs {
  int64_t n = 0;
  float* dst = nullptr;
  float value = 0.0f;
};

namespace cpu {
void reduce_max_backward(const ReduceMaxBackwardArgs& a);
void activation(const ActivationArgs& a);
void activation_backward(const ActivationBackwardArgs& a);
void softmax(const SoftmaxArgs& a);
void softmax_backward(const SoftmaxBackwardArgs& a);
void cross_entropy(const CrossEntropyArgs& a);
void bce_with_logits(const BceWithLogitsArgs& a);
void mse(const MseArgs& a);
void layer_norm(const LayerNormArgs& a);
void layer_norm_backward(const LayerNormBackwardArgs& a);
void dropout(const DropoutArgs& a);
void embedding(const EmbeddingArgs& a);
void embedding_backward(const EmbeddingBackwardArgs& a);
void binary(const BinaryArgs& a);
void reduce(const ReduceArgs& a);
}  // namespace cpu

}  // namespace fastnn
