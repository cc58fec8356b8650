// Strided copy with dtype conversion between two CPU tensors of one shape.
#pragma once
#include "core/cuda_backend.h"  // CopyArgs

namespace fastnn::cpu {
void copy(const CopyArgs& args);
}
