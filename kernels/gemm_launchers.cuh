// Host launchers of the two GEMM paths and the dispatcher's plan (kernels/gemm.cu).
// cuda_kernels::gemm (csrc/cuda_backend/kernels.h) = plan_gemm + the chosen launcher.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "fastnn/errors.h"
#include "fastnn/gemm.h"

namespace fastnn::cuda_kernels {

enum class GemmPath : int { fp32 = 0, tf32 = 1, bf16 = 2, fp16 = 3 };
enum class GemmTile : int { t64x64 = 0, t128x128 = 1 };

struct GemmPlan {
  GemmPath path = GemmPath::fp32;
  GemmTile tile = GemmTile::t64x64;
};

// The documented heuristic (docs/CUDA.md "GEMM"): the path follows the operand dtype
// (float32 -> CUDA cores, or TF32 tensor cores when g.allow_tf32); the 128x128 tile
// when both M and N are at least 128 and its grid has at least one block per SM,
// else 64x64 (four times more blocks for small or thin products).
GemmPlan plan_gemm(const GemmArgs& g, int sm_count);
GemmPlan plan_gemm_on_current_device(const GemmArgs& g);  // sm_count of the current device

// Launchers (any strides; tails handled). gemm_tensor_core takes tf32/bf16/fp16 paths.
void gemm_fp32(const GemmArgs& g, GemmTile tile, cudaStream_t stream);
void gemm_tensor_core(const GemmArgs& g, GemmPath path, GemmTile tile, cudaStream_t stream);

// Grid of (N tiles, M tiles, min(batch, 65535)); throws ValueError past the grid limits.
inline dim3 gemm_grid(const GemmArgs& g, int bm, int bn) {
  const int64_t gx = (g.n + bn - 1) / bn, gy = (g.m + bm - 1) / bm;
  if (gy > 65535 || gx > 2147483647)
    throw ValueError(detail::concat("gemm: m = ", g.m, " exceeds the CUDA grid limit (", int64_t{65535} * bm, ")"));
  const unsigned gz = static_cast<unsigned>(g.batch < 65535 ? g.batch : 65535);
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), gz);
}

}  // namespace fastnn::cuda_kernels
