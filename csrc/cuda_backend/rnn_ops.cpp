// Named CUDA ops of the recurrent cells (kernels/rnn_cells.cu); the sequence loop itself is
// the device-agnostic driver of csrc/cpu/rnn.cpp, reached from the bindings.
#include "rnn_cells.cuh"
#include "op_registry.h"

namespace fastnn::cuda_backend_impl {

FASTNN_CUDA_OP(rnn_cell, RnnCellArgs) { cuda_kernels::rnn_cell(args, stream); }
FASTNN_CUDA_OP(rnn_cell_backward, RnnCellBackwardArgs) { cuda_kernels::rnn_cell_backward(args, stream); }

}  // namespace fastnn::cuda_backend_impl
