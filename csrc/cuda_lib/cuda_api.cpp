// fastnn/cuda.h: the public C++ CUDA API, forwarding to the launchers the Python backend
// uses (csrc/cuda_backend/kernels.h) -- the same kernel objects, not a second compilation.
#include "fastnn/cuda.h"

#include "cuda_backend/kernels.h"

namespace fastnn::cuda {

void gemm(const GemmArgs& args, Stream stream) { cuda_kernels::gemm(args, stream); }
void adam(const AdamArgs& args, Stream stream) { cuda_kernels::adam(args, stream); }
void sgd(const SgdArgs& args, Stream stream) { cuda_kernels::sgd(args, stream); }

}  // namespace fastnn::cuda
