// CPU front ends of the training kernels (fastnn/nn_kernels.h): ISA dispatch only.
#include "cpu/isa.h"
#include "fastnn/nn_kernels.h"

namespace fastnn::cpu {

#define FASTNN_NN_OPS(X)                                       \
  X(activation, ActivationArgs)                                \
  X(activation_backward, ActivationBackwardArgs)               \
  X(softmax, SoftmaxArgs)                                      \
  X(softmax_backward, SoftmaxBackwardArgs)                     \
  X(cross_entropy, CrossEntropyArgs)                           \
  X(bce_with_logits, BceWithLogitsArgs)                        \
  X(mse, MseArgs)                                              \
  X(layer_norm, LayerNormArgs)                                 \
  X(layer_norm_backward, LayerNormBackwardArgs)                \
  X(dropout, DropoutArgs)                                      \
  X(embedding, EmbeddingArgs)                                  \
  X(embedding_backward, EmbeddingBackwardArgs)                 \
  X(binary, BinaryArgs)                                        \
  X(reduce, ReduceArgs)                                        \
  X(reduce_max_backward, ReduceMaxBackwardArgs)

#define FASTNN_NN_DECL(name, Args) void name(const Args& a);
FASTNN_CPU_DECLARE_ALL_ISAS(FASTNN_NN_OPS(FASTNN_NN_DECL))

#define FASTNN_NN_DEF(name, Args) \
  void name(const Args& a) { FASTNN_CPU_DISPATCH(name, a); }
FASTNN_NN_OPS(FASTNN_NN_DEF)

}  // namespace fastnn::cpu
