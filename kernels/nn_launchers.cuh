// Host launchers of the training kernels (kernels/nn_*.cu), registered as named CUDA ops
// in csrc/cuda_backend/nn_ops.cpp. Semantics: fastnn/nn_kernels.h (the CPU kernels are
// the reference). Arguments are validated by csrc/bindings/bind_nn.cpp; pointers are
// device memory unless a field says otherwise. Every launcher runs on `stream`.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastnn/nn_kernels.h"

namespace fastnn::cuda_kernels::nn {

// nn_activation.cu
void activation(const ActivationArgs& a, cudaStream_t stream);
void activation_backward(const ActivationBackwardArgs& a, cudaStream_t stream);
// nn_softmax.cu
void softmax(const SoftmaxArgs& a, cudaStream_t stream);
void softmax_backward(const SoftmaxBackwardArgs& a, cudaStream_t stream);
// nn_loss.cu. `scratch` is device memory of loss_scratch_bytes(...) bytes.
size_t cross_entropy_scratch_bytes(const CrossEntropyArgs& a);
void cross_entropy(const CrossEntropyArgs& a, void* scratch, cudaStream_t stream);
size_t elementwise_loss_scratch_bytes(int64_t n);
void bce_with_logits(const BceWithLogitsArgs& a, void* scratch, cudaStream_t stream);
void mse(const MseArgs& a, void* scratch, cudaStream_t stream);
// nn_layer_norm.cu. backward scratch: layer_norm_backward_scratch_bytes(a) bytes.
void layer_norm(const LayerNormArgs& a, cudaStream_t stream);
size_t layer_norm_backward_scratch_bytes(const LayerNormBackwardArgs& a);
void layer_norm_backward(const LayerNormBackwardArgs& a, void* scratch, cudaStream_t stream);
// nn_dropout.cu
void dropout(const DropoutArgs& a, cudaStream_t stream);
// nn_embedding.cu. backward: atomics (fast, summation order varies run to run) or
// deterministic (one block per (table row, column tile) scanning the indices in order).
void embedding(const EmbeddingArgs& a, cudaStream_t stream);
void embedding_backward(const EmbeddingBackwardArgs& a, bool deterministic, cudaStream_t stream);
// nn_elementwise.cu
void binary(const BinaryArgs& a, cudaStream_t stream);
void fill(const FillArgs& a, cudaStream_t stream);
// nn_reduce.cu. scratch: reduce_scratch_bytes(a) bytes (0 unless few long rows are split).
size_t reduce_scratch_bytes(const ReduceArgs& a);
void reduce(const ReduceArgs& a, void* scratch, cudaStream_t stream);
void reduce_max_backward(const ReduceMaxBackwardArgs& a, cudaStream_t stream);
// nn_index_check.cu: `first_bad` is 8 bytes of device scratch, `report` 16 bytes of
// pinned host memory the kernel writes (position, value); the caller synchronises.
void index_check(const IndexCheckArgs& a, unsigned long long* first_bad, long long* report, cudaStream_t stream);

}  // namespace fastnn::cuda_kernels::nn
