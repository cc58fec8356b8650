// Kernel scratch (packed panels, zero-bordered image copies): a cpu_allocator block of floats
// (64-byte aligned, reused from the allocator's cache), released when the owner leaves scope.
// Plain code with no ISA pragmas: include it before cpu/isa_begin.h.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fastnn/allocator.h"

namespace fastnn::cpu {

struct ScratchFloats {
  float* p;
  explicit ScratchFloats(int64_t floats)
      : p(static_cast<float*>(cpu_allocator::allocate(static_cast<size_t>(std::max<int64_t>(floats, 16)) * 4))) {}
  ~ScratchFloats() { cpu_allocator::release(p); }
  ScratchFloats(const ScratchFloats&) = delete;
  ScratchFloats& operator=(const ScratchFloats&) = delete;
};

}  // namespace fastnn::cpu
