// Convolution bias gradient on CUDA: db[o] = sum over n, i, j of dy[n, o, i, j]
// (Conv2dArgs, fastnn/conv.h). One block per output channel sums its N planes of
// Ho*Wo elements with a fixed shuffle tree (deterministic, no atomics).
// Bound: memory, one read of dy: a 32x128x16x16 fp32 dy (4 MiB) takes ~2 us on A100
// (2.04 TB/s), ~1.3 us on H100 (3.35 TB/s); with few channels the grid (O blocks)
// under-fills the GPU, still far cheaper than the weight gradient it accompanies.
#include "cuda_compat.cuh"

#include <cstdint>

#include "conv.cuh"
#include "conv_common.cuh"
#include "cuda_backend/check.h"

namespace fastnn::cuda_kernels {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) bias_grad_kernel(const float* dy, int batch, int hw, int ybs, float* db) {
  FASTNN_DYNAMIC_SHARED(float, scratch);
  const int o = blockIdx.x;
  float acc = 0.0f;
  for (int img = 0; img < batch; ++img) {
    const float* plane = dy + img * ybs + o * hw;
    for (int q = threadIdx.x; q < hw; q += blockDim.x) acc += plane[q];
  }
  acc = conv_detail::block_sum(acc, scratch);
  if (threadIdx.x == 0) db[o] = acc;
}

}  // namespace

void conv2d_backward_bias(const Conv2dArgs& a, cudaStream_t stream) {
  if (a.out_channels <= 0) return;
  conv_detail::expect_int32_extent(a.batch * a.ybs(), "conv2d_backward", "grad_out");
  FASTNN_LAUNCH(bias_grad_kernel, static_cast<unsigned>(a.out_channels), kThreads, 33 * sizeof(float), stream)(
      a.dy, static_cast<int>(a.batch), static_cast<int>(a.out_h * a.out_w), static_cast<int>(a.ybs()), a.db);
  FASTNN_CUDA_CHECK_LAUNCH("bias_grad_kernel");
}

}  // namespace fastnn::cuda_kernels
