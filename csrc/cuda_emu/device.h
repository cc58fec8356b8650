// Device-side entry points of the emulator, called by emulated CUDA threads (on
// their fibers). Kernel code does not call these directly: it uses the CUDA names
// defined in barrier.h / warp.h / wmma.h / pipeline.h / shared_memory.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include <vector_types.h>

// The built-in variables: the toolkit's device_launch_parameters.h declares them
// (non-const: cuda_emu.h defines __STORAGE__ before including it); the scheduler
// sets them before it resumes a thread, and a thread never sees them change
// between two of its own switches.
extern "C" {
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
extern int warpSize;
}

namespace fastnn::emu {

enum class WarpOp : int { syncwarp = 0, shfl, ballot, wmma, match };

// Block barrier. pred / count: for __syncthreads_count/and/or (count of nonzero
// predicates among the block's threads is returned).
int block_barrier(const char* file, int line, int pred);

// Warp barrier: publishes `value` (up to 8 bytes) and the lane to read from
// (shuffles; ignored otherwise), waits for every lane of `mask`, and returns the
// source lane's value (shuffles) or the ballot of predicates (votes, in low 32 bits).
uint64_t warp_sync(WarpOp op, unsigned mask, uint64_t value, int src_lane, const char* file, int line);

int current_lane();
unsigned current_live_lanes();  // __activemask (approximation: lanes not exited)

// Dynamic shared memory of the running launch.
void* dynamic_shared();

// Throws fastnn::Error naming the calling thread / block and the location.
[[noreturn]] void device_error(const std::string& what, const char* file, int line);

// cp.async emulation state of the calling thread (pipeline.h).
void pipeline_issue(void* dst, const void* src, size_t bytes, size_t zfill);
void pipeline_commit();
void pipeline_wait_prior(unsigned n);

}  // namespace fastnn::emu
