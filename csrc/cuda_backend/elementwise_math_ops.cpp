// The elementwise math kernels as named CUDA ops (called by csrc/bindings/bind_elementwise_math.cpp).
#include "cuda_backend/elementwise_math_launchers.h"
#include "cuda_backend/op_registry.h"

namespace fastnn::cuda_backend_impl {

FASTNN_CUDA_OP(ewm_unary, UnaryArgs) { cuda_kernels::ewm_unary(args, stream); }
FASTNN_CUDA_OP(ewm_compare, CompareArgs) { cuda_kernels::ewm_compare(args, stream); }
FASTNN_CUDA_OP(ewm_gather, GatherArgs) { cuda_kernels::ewm_gather(args, stream); }
FASTNN_CUDA_OP(ewm_scatter_add, ScatterAddArgs) { cuda_kernels::ewm_scatter_add(args, stream); }
FASTNN_CUDA_OP(ewm_index_check, GatherIndexCheckArgs) { cuda_kernels::ewm_index_check(args, stream); }

}  // namespace fastnn::cuda_backend_impl
