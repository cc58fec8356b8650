// Scheduler of the CUDA emulator: runs a grid block after block, each block's
// threads as fibers (fiber.h), and implements the block barrier and the per-warp
// barrier that warp operations (warp.h, wmma.h) are built on.
//
// A block runs in passes. A pass resumes every ready thread once, in the selected
// order (forward, reverse or seeded random); each runs until it blocks at a
// __syncthreads, blocks at a warp operation, exits or fails. At the end of a pass
// every live thread is blocked, and the scheduler releases what can proceed:
//  - a block barrier once every live thread waits at one, all at the same
//    file:line (else: divergent barrier error naming the lines) and no thread has
//    exited (else: error — the barrier is undefined behaviour in CUDA);
//  - a warp group once every lane named in its mask waits at a warp operation of
//    the same kind with the same mask; the scheduler computes each lane's result
//    (shuffle source value, ballot bits) before releasing, so values published by
//    lanes that already moved on are never read;
//  - nothing: deadlock, reported with each waiting thread's operation and file:line.
// Errors are thrown as fastnn::Error from the scheduler's own stack, never across
// a fiber stack. One launch runs at a time (a process-wide mutex).
#pragma once
#include <cstddef>
#include <cstdint>

#include <vector_types.h>

namespace fastnn::emu {

enum class Order : int { forward = 0, reverse = 1, random = 2 };
// Initial value from FASTNN_EMU_ORDER=forward|reverse|random and FASTNN_EMU_SEED.
void set_order(Order order, uint64_t seed);
Order order();
uint64_t order_seed();
const char* order_name(Order order);
bool parse_order(const char* text, Order* out);

struct LaunchSpec {
  const void* kernel = nullptr;
  dim3 grid, block;
  size_t dynamic_smem = 0;
  const char* file = "";
  int line = 0;
};
using KernelThunk = void (*)(void* closure);

// Runs every block of a validated launch; throws fastnn::Error when an emulated
// thread fails (barrier misuse, deadlock, invalid warp operation, fault).
void run_grid(const LaunchSpec& spec, KernelThunk thunk, void* closure);

uint64_t launches_run();

}  // namespace fastnn::emu
