// Named CUDA ops of the GEMM family besides CudaBackend::gemm (op_registry.h).
#include "gemm_launchers.cuh"
#include "op_registry.h"

namespace fastnn {

// Which kernel CudaBackend::gemm would pick for `args` (tests check the heuristic).
FASTNN_CUDA_OP(gemm_plan, GemmPlanQuery) {
  const cuda_kernels::GemmPlan p = cuda_kernels::plan_gemm_on_current_device(args.args);
  *args.path = static_cast<int>(p.path);
  *args.tile = p.tile == cuda_kernels::GemmTile::t128x128 ? 128 : 64;
}

}  // namespace fastnn
