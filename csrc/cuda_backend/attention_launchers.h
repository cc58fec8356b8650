// Host launchers of the CUDA attention kernels (kernels/attention_forward.cu,
// kernels/attention_backward.cu), semantics of fastnn/attention.h. Pointers in the
// argument struct are device memory; the bindings validated everything (head_dim <= 128).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "fastnn/attention.h"

namespace fastnn::cuda_kernels {

void attention_forward(const AttentionArgs& args, cudaStream_t stream);

// Device scratch the backward needs: lse*log2(e) and rowsum(dO * O) per query row.
size_t attention_backward_scratch_bytes(const AttentionArgs& args);
void attention_backward(const AttentionArgs& args, float* scratch, cudaStream_t stream);

}  // namespace fastnn::cuda_kernels
