// The training kernels (kernels/nn_*.cu) as named CUDA ops, called by
// csrc/bindings/bind_nn.cpp through fastnn::cuda_op(name, args, device).
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>

#include "check.h"
#include "nn_launchers.cuh"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {
namespace {
namespace k = ::fastnn::cuda_kernels::nn;

// The index check's result words: pinned host memory the report kernel writes directly
// (allocated once per process; a mutex serialises the check / sync / read sequence).
std::mutex g_report_mu;
long long* g_report = nullptr;

}  // namespace

FASTNN_CUDA_OP(nn_activation, ActivationArgs) { k::activation(args, stream); }
FASTNN_CUDA_OP(nn_activation_backward, ActivationBackwardArgs) { k::activation_backward(args, stream); }
FASTNN_CUDA_OP(nn_softmax, SoftmaxArgs) { k::softmax(args, stream); }
FASTNN_CUDA_OP(nn_softmax_backward, SoftmaxBackwardArgs) { k::softmax_backward(args, stream); }

FASTNN_CUDA_OP(nn_cross_entropy, CrossEntropyArgs) {
  DeviceScratch s(k::cross_entropy_scratch_bytes(args), device);
  k::cross_entropy(args, s.get(), stream);
}
FASTNN_CUDA_OP(nn_bce_with_logits, BceWithLogitsArgs) {
  DeviceScratch s(k::elementwise_loss_scratch_bytes(args.n), device);
  k::bce_with_logits(args, s.get(), stream);
}
FASTNN_CUDA_OP(nn_mse, MseArgs) {
  DeviceScratch s(k::elementwise_loss_scratch_bytes(args.n), device);
  k::mse(args, s.get(), stream);
}

FASTNN_CUDA_OP(nn_layer_norm, LayerNormArgs) { k::layer_norm(args, stream); }
FASTNN_CUDA_OP(nn_layer_norm_backward, LayerNormBackwardArgs) {
  DeviceScratch s(k::layer_norm_backward_scratch_bytes(args), device);
  k::layer_norm_backward(args, s.get(), stream);
}

FASTNN_CUDA_OP(nn_dropout, DropoutArgs) { k::dropout(args, stream); }
FASTNN_CUDA_OP(nn_embedding, EmbeddingArgs) { k::embedding(args, stream); }
FASTNN_CUDA_OP(nn_embedding_backward, EmbeddingBackwardCudaArgs) {
  k::embedding_backward(args.a, args.deterministic, stream);
}
FASTNN_CUDA_OP(nn_binary, BinaryArgs) { k::binary(args, stream); }
FASTNN_CUDA_OP(nn_fill, FillArgs) { k::fill(args, stream); }
FASTNN_CUDA_OP(nn_reduce, ReduceArgs) {
  DeviceScratch s(k::reduce_scratch_bytes(args), device);
  k::reduce(args, s.get(), stream);
}
FASTNN_CUDA_OP(nn_max_backward, ReduceMaxBackwardArgs) { k::reduce_max_backward(args, stream); }

// One stream synchronisation (the binding must raise before returning), no cudaMemcpy.
FASTNN_CUDA_OP(nn_index_check, IndexCheckArgs) {
  DeviceScratch first_bad(sizeof(unsigned long long), device);
  std::lock_guard<std::mutex> lock(g_report_mu);
  if (!g_report) {
    void* p = nullptr;
    FASTNN_CUDA_CHECK(cudaMallocHost(&p, 2 * sizeof(long long)));
    g_report = static_cast<long long*>(p);
  }
  k::index_check(args, first_bad.as<unsigned long long>(), g_report, stream);
  FASTNN_CUDA_CHECK(cudaStreamSynchronize(stream));
  *args.bad_position = g_report[0];
  *args.bad_value = g_report[1];
}

}  // namespace fastnn::cuda_backend_impl
