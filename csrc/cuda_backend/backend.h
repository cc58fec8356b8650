// The backend singleton of this module (fastnn._cuda or fastnn._cuda_emu).
#pragma once
#include "core/cuda_backend.h"

namespace fastnn::cuda_backend_impl {
CudaBackend& backend();
}  // namespace fastnn::cuda_backend_impl
