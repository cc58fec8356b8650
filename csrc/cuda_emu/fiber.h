// Fibers: the execution vehicle of one emulated CUDA thread.
//
// Each CUDA thread of a block runs as a cooperative fiber on its own stack. Stacks
// come from one mmap'd pool (reused across launches: fresh pages are expensive on
// this VM) with PROT_NONE guard pages (64 KiB) below each stack, so an overflow faults
// instead of silently corrupting the neighbour's frames (the fault handler in
// scheduler.cpp turns it into a fastnn::Error). The context switch is a
// hand-written x86-64 routine (~60 ns: saves callee-saved registers, MXCSR and the
// x87 control word; no syscall); elsewhere, or with -DFASTNN_EMU_UCONTEXT, the
// portable ucontext fallback (~400 ns, one sigprocmask syscall per switch).
#pragma once
#include <cstddef>
#include <cstdint>

#if !defined(__x86_64__) && !defined(FASTNN_EMU_UCONTEXT)
#define FASTNN_EMU_UCONTEXT 1
#endif
#if defined(FASTNN_EMU_UCONTEXT)
#include <ucontext.h>
#endif

namespace fastnn::emu {

using FiberEntry = void (*)(void* arg);

struct FiberContext {
#if defined(FASTNN_EMU_UCONTEXT)
  ucontext_t uc;
#else
  void* sp = nullptr;  // saved stack pointer; the registers live on the stack
#endif
  // For AddressSanitizer builds only (fiber.cpp tells ASan about every stack switch):
  // this context's stack (learned at the first switch for the scheduler's own stack),
  // and the entry a fresh fiber starts in.
  const void* asan_stack_lo = nullptr;
  size_t asan_stack_size = 0;
  FiberEntry asan_entry = nullptr;
  void* asan_arg = nullptr;
};

// Prepares `ctx` so that the first switch to it calls entry(arg) on the given
// stack. entry must never return (it switches away for the last time instead).
void fiber_init(FiberContext& ctx, void* stack_lo, size_t stack_size, FiberEntry entry, void* arg);

// Saves the current context into `from` and resumes `to`.
void fiber_switch(FiberContext& from, FiberContext& to);

// A pool of equally sized stacks, each with a guard page below it.
class StackPool {
 public:
  StackPool() = default;
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;
  ~StackPool();
  // Makes at least n stacks available (keeps existing ones; throws fastnn::Error).
  void reserve(int n);
  void* stack_lo(int i) const { return base_ + static_cast<size_t>(i) * slot_ + guard_; }
  size_t stack_size() const { return slot_ - guard_; }
  // True when addr lies in one of the guard pages (a stack overflow).
  bool in_guard(const void* addr, int* which) const;
  bool contains(const void* addr) const {
    auto p = static_cast<const char*>(addr);
    return base_ && p >= base_ && p < base_ + static_cast<size_t>(count_) * slot_;
  }

 private:
  char* base_ = nullptr;
  int count_ = 0;
  size_t slot_ = 0, guard_ = 0;
};

}  // namespace fastnn::emu
