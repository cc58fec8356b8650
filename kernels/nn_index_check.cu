// Device-side range check of an index tensor (fastnn/nn_kernels.h IndexCheckArgs), run by
// the bindings before a kernel that trusts its indices (cross-entropy targets, embedding
// indices, max_backward indices): an out-of-range value must raise the CPU's IndexError,
// never read or write out of bounds or return a silently wrong result.
// index_check_kernel: grid-stride over the indices, atomicMin of the first offending flat
// position into 8 bytes of device scratch (preset to ~0). index_report_kernel (1 thread)
// writes (position or -1, value) into pinned host memory, which the kernel reaches
// directly (unified addressing maps cudaMallocHost memory): no cudaMemcpy, no staging
// buffer. The caller then synchronises the stream once and reads the two words.
// Bound: 4-8 B/index read + the launch and synchronisation latency (~10-20 us), which
// dominates for realistic index counts (<= 1e6).
#include "nn_common.cuh"

#include "nn_launchers.cuh"

namespace fastnn::cuda_kernels::nn {
namespace {
using namespace nn_detail;

__global__ void __launch_bounds__(kThreads) index_check_kernel(IndexCheckArgs a, unsigned long long* first_bad) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < a.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t v = index_at(a.indices, a.indices_int64, i);
    if ((v < 0 || v >= a.bound) && !(a.has_allowed && v == a.allowed))
      atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

__global__ void index_report_kernel(IndexCheckArgs a, const unsigned long long* first_bad, long long* report) {
  const unsigned long long p = *first_bad;
  const bool bad = p != ~0ull;
  report[0] = bad ? static_cast<long long>(p) : -1;
  report[1] = bad ? index_at(a.indices, a.indices_int64, static_cast<int64_t>(p)) : 0;
}

}  // namespace

void index_check(const IndexCheckArgs& a, unsigned long long* first_bad, long long* report, cudaStream_t stream) {
  FASTNN_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xFF, sizeof(unsigned long long), stream));
  if (a.n > 0) {
    FASTNN_LAUNCH(index_check_kernel, grid_for(a.n), kThreads, 0, stream)(a, first_bad);
    FASTNN_CUDA_CHECK_LAUNCH("index_check_kernel");
  }
  FASTNN_LAUNCH(index_report_kernel, 1, 1, 0, stream)(a, static_cast<const unsigned long long*>(first_bad), report);
  FASTNN_CUDA_CHECK_LAUNCH("index_report_kernel");
}

}  // namespace fastnn::cuda_kernels::nn
