// Shared memory of the emulator.
//
// Static __shared__ variables become static objects in the linker section
// "fastnn_emu_shared" (cuda_emu.h redefines __shared__): blocks run one after
// another, so one instance serves every block. Dynamic shared memory is one buffer
// per launch, reached through FASTNN_DYNAMIC_SHARED (kernels/cuda_compat.cuh).
// Before each block both are filled with 0xFF bytes: uninitialised float reads
// show up as NaN, integers as -1.
// Limitation: GCC ignores the section attribute on static locals of templates, so
// __shared__ arrays inside templated kernels are not poisoned (and not reset
// between blocks) — prefer dynamic shared memory there.
#pragma once
#include <cstddef>

#define FASTNN_EMU_SHARED_SECTION "fastnn_emu_shared"

namespace fastnn::emu {

void begin_launch_shared_memory(size_t dynamic_bytes);  // scheduler, per launch
void end_launch_shared_memory();
void poison_shared_memory();                            // scheduler, per block
size_t static_shared_bytes();  // size of the section (all kernels of this module)

}  // namespace fastnn::emu
