// fastnn/cuda.h: the public C++ CUDA API, forwarding to the launchers the Python backend
// uses (csrc/cuda_backend/kernels.h) -- the same kernel objects, not a second compilation.
#include "fastnn/cuda.h"

#include "cuda_backend/kernels.h"
#include "cuda_backend/op_registry.h"
#include "fastnn/errors.h"

namespace fastnn::cuda {

void gemm(const GemmArgs& args, Stream stream) { cuda_kernels::gemm(args, stream); }
void adam(const AdamArgs& args, Stream stream) { cuda_kernels::adam(args, stream); }
void sgd(const SgdArgs& args, Stream stream) { cuda_kernels::sgd(args, stream); }

void launch(const char* op, const void* args, size_t args_size, Stream stream, int device) {
  size_t want = 0;
  auto fn = cuda_backend_impl::find_op(op ? op : "", &want);
  FASTNN_CHECK(fn != nullptr, ValueError, "fastnn::cuda::launch: argument 'op': no CUDA kernel is registered as '",
               op ? op : "(null)", "'");
  FASTNN_CHECK(args_size == want, ValueError, "fastnn::cuda::launch('", op, "'): argument 'args': expected a struct of ",
               want, " bytes, got ", args_size);
  fn(args, stream, device);
}

}  // namespace fastnn::cuda
