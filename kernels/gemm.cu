// GEMM dispatcher for CudaBackend::gemm (GemmArgs semantics of fastnn/gemm.h): picks
// the path and the block tile, then calls the launcher in gemm_fp32.cu (CUDA cores) or
// gemm_tensor_core.cu (wmma). Host code only. The heuristic, documented in docs/CUDA.md
// "GEMM":
//   path: bfloat16 / float16 operands -> tensor cores (bf16 / fp16, FP32 accumulate);
//         float32 -> TF32 tensor cores if GemmArgs::allow_tf32, else FP32 CUDA cores.
//   tile: 128x128 when M >= 128, N >= 128 and the 128x128 grid (times the batch) has at
//         least one block per SM (a full wave: the larger tile halves the operand traffic
//         per flop); otherwise 64x64, whose 4x more blocks keep the SMs busy on small,
//         thin or few-batch products. GemmArgs::tile (fastnn.cuda.set_gemm_tile) overrides.
#include "cuda_compat.cuh"

#include "cuda_backend/check.h"
#include "cuda_backend/kernels.h"
#include "gemm_launchers.cuh"

namespace fastnn::cuda_kernels {

GemmPlan plan_gemm(const GemmArgs& g, int sm_count) {
  GemmPlan p;
  if (g.ab_dtype == DType::bfloat16)
    p.path = GemmPath::bf16;
  else if (g.ab_dtype == DType::float16)
    p.path = GemmPath::fp16;
  else
    p.path = g.allow_tf32 ? GemmPath::tf32 : GemmPath::fp32;
  if (g.tile != 0) {
    p.tile = g.tile == 128 ? GemmTile::t128x128 : GemmTile::t64x64;
    return p;
  }
  const int64_t blocks128 = ((g.m + 127) / 128) * ((g.n + 127) / 128) * g.batch;
  p.tile = g.m >= 128 && g.n >= 128 && blocks128 >= sm_count ? GemmTile::t128x128 : GemmTile::t64x64;
  return p;
}

namespace {
int current_sm_count() {
  int dev = 0, sms = 0;
  FASTNN_CUDA_CHECK(cudaGetDevice(&dev));
  FASTNN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  return sms;
}
}  // namespace

GemmPlan plan_gemm_on_current_device(const GemmArgs& g) { return plan_gemm(g, current_sm_count()); }

void gemm(const GemmArgs& g, cudaStream_t stream) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  const GemmPlan p = plan_gemm_on_current_device(g);
  if (p.path == GemmPath::fp32)
    gemm_fp32(g, p.tile, stream);
  else
    gemm_tensor_core(g, p.path, p.tile, stream);
}

}  // namespace fastnn::cuda_kernels
