// <cuda_pipeline.h> primitives (cp.async) for emulated kernels. A copy issued by
// __pipeline_memcpy_async poisons its destination with 0xFF bytes at once and
// happens only at the __pipeline_wait_prior that retires its group (or when the
// thread exits), so reading the destination before the wait shows NaN instead of
// silently working as an immediate copy would.
#pragma once
#include <cstddef>

#include "cuda_emu/device.h"

inline void __pipeline_memcpy_async(void* dst_shared, const void* src_global, size_t size_and_align,
                                    size_t zfill = 0, const char* file = __builtin_FILE(),
                                    int line = __builtin_LINE()) {
  if (size_and_align != 4 && size_and_align != 8 && size_and_align != 16)
    fastnn::emu::device_error("__pipeline_memcpy_async: size_and_align must be 4, 8 or 16", file, line);
  if (reinterpret_cast<uintptr_t>(dst_shared) % size_and_align || reinterpret_cast<uintptr_t>(src_global) % size_and_align)
    fastnn::emu::device_error("__pipeline_memcpy_async: pointers not aligned to size_and_align", file, line);
  if (zfill > size_and_align) fastnn::emu::device_error("__pipeline_memcpy_async: zfill > size", file, line);
  fastnn::emu::pipeline_issue(dst_shared, src_global, size_and_align, zfill);
}
inline void __pipeline_commit() { fastnn::emu::pipeline_commit(); }
inline void __pipeline_wait_prior(size_t prior) { fastnn::emu::pipeline_wait_prior(static_cast<unsigned>(prior)); }
