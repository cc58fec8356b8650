// AllocatorStats as the Python dict that fastnn.memory_stats() / fastnn.cuda.memory_stats()
// return; shared by the core module and the CUDA backend modules.
#pragma once
#include <pybind11/pybind11.h>

#include "fastnn/allocator.h"

namespace fastnn::bindings {

inline pybind11::dict stats_dict(const AllocatorStats& s) {
  pybind11::dict d;
  d["allocated_bytes"] = s.allocated_bytes;
  d["cached_bytes"] = s.cached_bytes;
  d["peak_allocated_bytes"] = s.peak_allocated_bytes;
  d["num_allocs"] = s.num_allocs;
  d["num_cache_hits"] = s.num_cache_hits;
  d["num_system_allocs"] = s.num_system_allocs;
  return d;
}

}  // namespace fastnn::bindings
