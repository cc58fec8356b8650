// Host-side launchers of the CUDA kernels in kernels/*.cu, called by the backend.
// Arguments are validated by the bindings; launchers check their launches
// (FASTNN_CUDA_CHECK_LAUNCH) and throw fastnn::Error on failure.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/cuda_backend.h"
#include "fastnn/gemm.h"
#include "fastnn/optim.h"
#include "fastnn/tensor.h"

namespace fastnn::cuda_kernels {

// kernels/copy.cu: strided copy with dtype conversion between tensors of the same
// shape (any strides, including negative and zero on the source). Conversions:
// float -> integer saturates (NaN -> 0); integer -> integer wraps like C++/NumPy;
// anything -> bool is `!= 0`; float -> half / bfloat16 rounds to nearest even.
// After merging dimensions that are contiguous in both tensors, at most
// kMaxCopyDims may remain (else fastnn::ValueError).
constexpr int kMaxCopyDims = 8;
void copy(const CopyArgs& args, cudaStream_t stream);
// n contiguous elements of `dtype` at dst set to `value` (converted as above).
void fill(void* dst, DType dtype, double value, int64_t n, cudaStream_t stream);

// kernels/gemm.cu: GemmArgs semantics of fastnn/gemm.h.
void gemm(const GemmArgs& args, cudaStream_t stream);

// kernels/optim.cu: fused multi-tensor optimizers, semantics of fastnn/optim.h (bitwise
// those of the CPU kernels). adam with found_inf checks the grads on the device first.
void adam(const AdamArgs& args, cudaStream_t stream);
void sgd(const SgdArgs& args, cudaStream_t stream);
void scale_(const ScaleArgs& args, cudaStream_t stream);
// grad_norm: workspace holds grad_norm_workspace(args) doubles of device memory; on
// completion workspace[0] is the reduced sum (of |g|^p) or max, which
// grad_norm_finish turns into the norm on the host.
int64_t grad_norm_workspace(const GradNormArgs& args);
void grad_norm(const GradNormArgs& args, double* workspace, cudaStream_t stream);
double grad_norm_finish(double reduced, double norm_type);

}  // namespace fastnn::cuda_kernels
