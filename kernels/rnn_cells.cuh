// Launchers of the fused recurrent cell kernels (kernels/rnn_cells.cu), registered as the
// named CUDA ops "rnn_cell" / "rnn_cell_backward" (csrc/cuda_backend/rnn_ops.cpp).
#pragma once
#include <cuda_runtime.h>

#include "fastnn/rnn.h"

namespace fastnn::cuda_kernels {
void rnn_cell(const RnnCellArgs& args, cudaStream_t stream);
void rnn_cell_backward(const RnnCellBackwardArgs& args, cudaStream_t stream);
}  // namespace fastnn::cuda_kernels
