// Fiber context switch and the stack pool (see fiber.h).
#include "fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fastnn/errors.h"

#if !defined(FASTNN_EMU_UCONTEXT)
// switch(void** save_sp /*rdi*/, void* new_sp /*rsi*/): push the callee-saved
// registers and the FP control state on the current stack, swap stack pointers,
// pop the same from the new stack and return into it. A fresh fiber's stack is
// laid out by fiber_init so that the final `ret` lands in the trampoline, which
// calls entry(arg) with entry in r13 and arg in r12.
asm(R"(
  .text
  .p2align 4
  .globl fastnn_emu_switch_context
  .hidden fastnn_emu_switch_context
  .type fastnn_emu_switch_context, @function
fastnn_emu_switch_context:
  .cfi_startproc
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .cfi_endproc
  .size fastnn_emu_switch_context, .-fastnn_emu_switch_context

  .p2align 4
  .globl fastnn_emu_fiber_trampoline
  .hidden fastnn_emu_fiber_trampoline
  .type fastnn_emu_fiber_trampoline, @function
fastnn_emu_fiber_trampoline:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
  .size fastnn_emu_fiber_trampoline, .-fastnn_emu_fiber_trampoline
)");
extern "C" void fastnn_emu_switch_context(void** save_sp, void* new_sp);
extern "C" void fastnn_emu_fiber_trampoline();
#endif

#if defined(__SANITIZE_ADDRESS__) && !defined(FASTNN_EMU_UCONTEXT)
// ASan keeps one stack range per OS thread; without these annotations a C++ throw on a
// fiber (__asan_handle_no_return) or a reused fiber stack with stale redzones from frames
// that never returned produces false reports. (The documented fiber interface of
// <sanitizer/common_interface_defs.h>; compiled only into sanitizer builds.)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define FASTNN_EMU_ASAN 1
namespace {
thread_local fastnn::emu::FiberContext* t_switching_from = nullptr;
void asan_before_switch(fastnn::emu::FiberContext& from, fastnn::emu::FiberContext& to, void** fake) {
  t_switching_from = &from;
  __sanitizer_start_switch_fiber(fake, to.asan_stack_lo, to.asan_stack_size);
}
void asan_after_switch(void* fake) {
  fastnn::emu::FiberContext* from = t_switching_from;  // whoever switched to us
  __sanitizer_finish_switch_fiber(fake, &from->asan_stack_lo, &from->asan_stack_size);
}
void asan_fiber_entry(void* p) {
  auto* ctx = static_cast<fastnn::emu::FiberContext*>(p);
  asan_after_switch(nullptr);
  ctx->asan_entry(ctx->asan_arg);
}
}  // namespace
#endif

namespace fastnn::emu {

#if !defined(FASTNN_EMU_UCONTEXT)
void fiber_init(FiberContext& ctx, void* stack_lo, size_t stack_size, FiberEntry entry, void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack_lo) + stack_size) & ~uintptr_t{15};
  top -= 16;  // slack above the first frame
  auto* sp = reinterpret_cast<uint64_t*>(top - 64);  // 16-aligned: after `ret`, rsp % 16 == 0
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memset(sp, 0, 64);
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  sp[1] = 0;                                              // r15
  sp[2] = 0;                                              // r14
#if defined(FASTNN_EMU_ASAN)
  __asan_unpoison_memory_region(stack_lo, stack_size);  // stale redzones of a previous fiber
  ctx.asan_stack_lo = stack_lo;
  ctx.asan_stack_size = stack_size;
  ctx.asan_entry = entry;
  ctx.asan_arg = arg;
  entry = &asan_fiber_entry;
  arg = &ctx;
#endif
  sp[3] = reinterpret_cast<uint64_t>(entry);              // r13
  sp[4] = reinterpret_cast<uint64_t>(arg);                // r12
  sp[5] = 0;                                              // rbx
  sp[6] = 0;                                              // rbp
  sp[7] = reinterpret_cast<uint64_t>(&fastnn_emu_fiber_trampoline);  // return address
  ctx.sp = sp;
}

void fiber_switch(FiberContext& from, FiberContext& to) {
#if defined(FASTNN_EMU_ASAN)
  void* fake = nullptr;
  asan_before_switch(from, to, &fake);
  fastnn_emu_switch_context(&from.sp, to.sp);
  asan_after_switch(fake);
#else
  fastnn_emu_switch_context(&from.sp, to.sp);
#endif
}
#else
namespace {
void uc_entry(unsigned lo, unsigned hi, unsigned elo, unsigned ehi) {
  auto arg = reinterpret_cast<void*>((uintptr_t{hi} << 32) | lo);
  auto entry = reinterpret_cast<FiberEntry>((uintptr_t{ehi} << 32) | elo);
  entry(arg);
  std::abort();  // entry never returns
}
}  // namespace

void fiber_init(FiberContext& ctx, void* stack_lo, size_t stack_size, FiberEntry entry, void* arg) {
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = stack_lo;
  ctx.uc.uc_stack.ss_size = stack_size;
  ctx.uc.uc_link = nullptr;
  auto a = reinterpret_cast<uintptr_t>(arg);
  auto e = reinterpret_cast<uintptr_t>(entry);
  makecontext(&ctx.uc, reinterpret_cast<void (*)()>(&uc_entry), 4, unsigned(a), unsigned(a >> 32),
              unsigned(e), unsigned(e >> 32));
}

void fiber_switch(FiberContext& from, FiberContext& to) { swapcontext(&from.uc, &to.uc); }
#endif

namespace {
size_t stack_bytes_from_env() {
  size_t kib = 256;  // wmma fragments hold whole tiles per lane (1 KiB each); leave room
  if (const char* s = std::getenv("FASTNN_EMU_STACK_KIB")) {
    long v = std::atol(s);
    if (v >= 16) kib = static_cast<size_t>(v);
  }
  return kib * 1024;
}
}  // namespace

StackPool::~StackPool() {
  if (base_) munmap(base_, static_cast<size_t>(count_) * slot_);
}

void StackPool::reserve(int n) {
  if (n <= count_) return;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (slot_ == 0) {
    guard_ = 16 * page;  // address space only: catches frames up to 64 KiB jumping past the stack end
    slot_ = ((stack_bytes_from_env() + page - 1) / page) * page + guard_;
  }
  // Grow to the next power of two of threads so a few launch shapes settle quickly.
  int want = 32;
  while (want < n) want *= 2;
  const size_t bytes = static_cast<size_t>(want) * slot_;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED)
    throw Error(detail::concat("CUDA emulator: cannot map ", bytes, " bytes of fiber stacks: ", std::strerror(errno)));
  char* nb = static_cast<char*>(p);
  for (int i = 0; i < want; ++i) {
    if (mprotect(nb + static_cast<size_t>(i) * slot_, guard_, PROT_NONE) != 0) {
      munmap(p, bytes);
      throw Error(detail::concat("CUDA emulator: mprotect of a guard page failed: ", std::strerror(errno)));
    }
  }
  if (base_) munmap(base_, static_cast<size_t>(count_) * slot_);
  base_ = nb;
  count_ = want;
}

bool StackPool::in_guard(const void* addr, int* which) const {
  if (!contains(addr)) return false;
  size_t off = static_cast<size_t>(static_cast<const char*>(addr) - base_);
  if (off % slot_ >= guard_) return false;
  if (which) *which = static_cast<int>(off / slot_);
  return true;
}

}  // namespace fastnn::emu
