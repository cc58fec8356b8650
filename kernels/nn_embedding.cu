// Embedding lookup and its backward (fastnn/nn_kernels.h EmbeddingArgs /
// EmbeddingBackwardArgs); indices were range-checked by the binding.
// Forward: a (128 columns) block per (index, column tile), grid-stride over indices:
//   out[i, c] = table[idx[i], c]; coalesced row reads and writes, 8 B/element moved.
// Backward, two variants (binding argument deterministic=):
//   atomics (default): grad_table zeroed, then one thread per grad_out element does
//     atomicAdd(grad_table[idx[i], c], grad_out[i, c]). 12 B/element + the zeroing;
//     duplicate indices collide in L2 atomics (fast unless one index dominates), and
//     the float summation order of duplicates varies from run to run.
//   deterministic: one 128-thread block per (table row w, 128-column tile); it scans all
//     indices in chunks of 128 (a warp ballot marks the matches of each chunk in shared
//     memory) and adds the matching grad_out rows in index order into a register per
//     column, then writes its tile once (rows never indexed get 0). Bitwise reproducible
//     and equal to the CPU kernel's order; cost O(num_weights x num_indices) index reads
//     (from L2), so it suits vocabularies/batches up to ~1e4 x 1e4; use atomics beyond.
// Bound: memory (forward, atomics); the deterministic scan is bound by its index reads.
#include "nn_common.cuh"

#include "nn_launchers.cuh"

namespace fastnn::cuda_kernels::nn {
namespace {
using namespace nn_detail;

constexpr int kTile = 128;                 // columns per block (4 warps)
constexpr int64_t kMaxRowBlocks = 65535;   // grid.x cap; rows beyond it by grid stride

__global__ void __launch_bounds__(kTile) embedding_kernel(EmbeddingArgs a) {
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.x;
  if (c >= a.dim) return;
  for (int64_t i = blockIdx.x; i < a.num_indices; i += gridDim.x)
    a.out[i * a.dim + c] = a.table[index_at(a.indices, a.indices_int64, i) * a.dim + c];
}

__global__ void __launch_bounds__(kTile) embedding_backward_atomic_kernel(EmbeddingBackwardArgs a) {
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.x;
  if (c >= a.dim) return;
  for (int64_t i = blockIdx.x; i < a.num_indices; i += gridDim.x)
    atomicAdd(&a.grad_table[index_at(a.indices, a.indices_int64, i) * a.dim + c], a.grad_out[i * a.dim + c]);
}

__global__ void __launch_bounds__(kTile) embedding_backward_ordered_kernel(EmbeddingBackwardArgs a) {
  __shared__ unsigned match[kTile / 32];
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kTile + threadIdx.x;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int64_t w = blockIdx.x; w < a.num_weights; w += gridDim.x) {
    float acc = 0.0f;
    for (int64_t base = 0; base < a.num_indices; base += kTile) {
      const int64_t i = base + threadIdx.x;
      const bool hit = i < a.num_indices && index_at(a.indices, a.indices_int64, i) == w;
      const unsigned m = __ballot_sync(0xffffffffu, hit);
      __syncthreads();  // the previous chunk's masks are no longer read
      if (lane == 0) match[warp] = m;
      __syncthreads();
      for (int k = 0; k < kTile / 32; ++k) {
        for (unsigned bits = match[k]; bits != 0; bits &= bits - 1) {
          const int64_t j = base + k * 32 + (__ffs(static_cast<int>(bits)) - 1);
          if (c < a.dim) acc += a.grad_out[j * a.dim + c];
        }
      }
    }
    if (c < a.dim) a.grad_table[w * a.dim + c] = acc;
  }
}

dim3 row_tile_grid(int64_t rows, int64_t dim) {
  return dim3(static_cast<unsigned>(rows < kMaxRowBlocks ? rows : kMaxRowBlocks),
              static_cast<unsigned>((dim + kTile - 1) / kTile));
}

}  // namespace

void embedding(const EmbeddingArgs& a, cudaStream_t stream) {
  if (a.num_indices <= 0 || a.dim <= 0) return;
  FASTNN_LAUNCH(embedding_kernel, row_tile_grid(a.num_indices, a.dim), kTile, 0, stream)(a);
  FASTNN_CUDA_CHECK_LAUNCH("embedding_kernel");
}

void embedding_backward(const EmbeddingBackwardArgs& a, bool deterministic, cudaStream_t stream) {
  if (a.num_weights <= 0 || a.dim <= 0) return;
  if (deterministic) {
    FASTNN_LAUNCH(embedding_backward_ordered_kernel, row_tile_grid(a.num_weights, a.dim), kTile, 0, stream)(a);
    FASTNN_CUDA_CHECK_LAUNCH("embedding_backward_ordered_kernel");
    return;
  }
  FASTNN_CUDA_CHECK(
      cudaMemsetAsync(a.grad_table, 0, static_cast<size_t>(a.num_weights * a.dim) * sizeof(float), stream));
  if (a.num_indices <= 0) return;
  FASTNN_LAUNCH(embedding_backward_atomic_kernel, row_tile_grid(a.num_indices, a.dim), kTile, 0, stream)(a);
  FASTNN_CUDA_CHECK_LAUNCH("embedding_backward_atomic_kernel");
}

}  // namespace fastnn::cuda_kernels::nn
