// Scheduler, barriers and the fault handler of the CUDA emulator (scheduler.h).
#define __STORAGE__ extern
#include <cuda_runtime.h>
#undef __STORAGE__

#include "scheduler.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "device.h"
#include "fastnn/errors.h"
#include "fiber.h"
#include "shared_memory.h"

extern "C" {
uint3 threadIdx;
uint3 blockIdx;
dim3 blockDim;
dim3 gridDim;
int warpSize = 32;
}

namespace fastnn::emu {
namespace {

enum class State : uint8_t { ready, block_wait, warp_wait, done, failed };

struct PendingCopy {
  void* dst;
  const void* src;
  size_t bytes;
  size_t zfill;  // trailing bytes written as zeros instead of copied
  uint64_t batch;
};

struct ThreadState {
  FiberContext ctx;
  uint3 tid;
  int linear = 0;
  int slot = -1;  // stack slot, taken at the first resume and returned at exit
  State state = State::ready;
  const char* file = "";
  int line = 0;
  // warp operation in flight
  WarpOp op = WarpOp::syncwarp;
  unsigned mask = 0;
  int src_lane = 0;
  uint64_t value = 0, result = 0;
  int pred = 0;
  std::string error;
  // cp.async groups: copies of batch < committed are in committed groups.
  std::vector<PendingCopy> pending;
  uint64_t committed = 0;
};

struct WarpState {
  unsigned exist = 0;    // lanes that exist in this (possibly partial) warp
  unsigned exited = 0;   // lanes that have returned
  unsigned waiting = 0;  // lanes blocked at a warp operation
};

struct Sched {
  std::mutex launch_mutex;
  bool in_launch = false;
  FiberContext sched_ctx;
  StackPool stacks;
  std::vector<ThreadState> threads;
  std::vector<WarpState> warps;
  std::vector<ThreadState*> ready;
  // Free stack slots. A thread takes one when it first runs and returns it when it
  // exits, so threads that never block (no barriers) reuse one cache-hot stack.
  std::vector<int> free_slots;
  ThreadState* cur = nullptr;
  KernelThunk thunk = nullptr;
  void* closure = nullptr;
  int nthreads = 0, live = 0, exited = 0, at_barrier = 0, barrier_pred = 0;
  int barrier_result = 0;
  Order order = Order::forward;
  uint64_t seed = 0;
  std::mt19937_64 rng;
  std::atomic<uint64_t> launches{0};
  // fault handling
  struct sigaction old_segv, old_bus, old_fpe;
  volatile sig_atomic_t in_fiber = 0;
  pthread_t launch_thread{};  // the OS thread running the launch (faults elsewhere are not ours)
};

Sched& S() {
  static Sched* s = [] {
    auto* p = new Sched();  // leaked on purpose: fibers may outlive static destruction order
    Order o = Order::forward;
    if (const char* e = std::getenv("FASTNN_EMU_ORDER")) parse_order(e, &o);
    uint64_t seed = 0;
    if (const char* e = std::getenv("FASTNN_EMU_SEED")) seed = std::strtoull(e, nullptr, 0);
    p->order = o;
    p->seed = seed;
    p->rng.seed(seed);
    return p;
  }();
  return *s;
}

// The threads of the running launch (the vector keeps states of larger earlier launches).
struct ActiveRange {
  ThreadState* b;
  ThreadState* e;
  ThreadState* begin() const { return b; }
  ThreadState* end() const { return e; }
};
ActiveRange active(Sched& s) { return {s.threads.data(), s.threads.data() + s.nthreads}; }

std::string dim_str(uint3 v) { return detail::concat("(", v.x, ",", v.y, ",", v.z, ")"); }

std::string where(const ThreadState& t) {
  return detail::concat("thread ", dim_str(t.tid), " of block ", dim_str(blockIdx));
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::syncwarp: return "__syncwarp";
    case WarpOp::shfl: return "__shfl*_sync";
    case WarpOp::ballot: return "vote (__ballot/__any/__all_sync)";
    case WarpOp::wmma: return "wmma::*_sync";
    case WarpOp::match: return "__match*_sync";
  }
  return "?";
}

// ---- faults inside a fiber: turned into errors of that thread -----------------
thread_local char* t_altstack = nullptr;
thread_local bool t_in_launch = false;  // this OS thread is running a launch (kernels launching kernels)

void fault_handler(int sig, siginfo_t* info, void* uctx) {
  Sched& s = S();
  if (s.in_fiber && s.cur && pthread_equal(pthread_self(), s.launch_thread)) {
    ThreadState* t = s.cur;
    int which = -1;
    const char* lo = static_cast<const char*>(s.stacks.stack_lo(t->slot < 0 ? 0 : t->slot));
    const char* addr = static_cast<const char*>(info->si_addr);
    const bool below_own_stack = addr < lo + 4096 && addr + (1 << 20) >= lo;  // frames may skip the guard
    if (sig != SIGFPE && (s.stacks.in_guard(info->si_addr, &which) || below_own_stack)) {
      t->error = "stack overflow of the emulated thread's fiber (raise FASTNN_EMU_STACK_KIB)";
    } else if (sig == SIGFPE) {
      t->error = "arithmetic trap (integer division by zero?) — a real GPU returns an unspecified value";
    } else {
      char buf[96];
      std::snprintf(buf, sizeof buf, "invalid memory access at address %p (signal %d)", info->si_addr, sig);
      t->error = buf;
    }
    t->state = State::failed;
    s.in_fiber = 0;
    // Leave the handler by switching to the scheduler; SA_NODEFER keeps the signal unblocked.
    fiber_switch(t->ctx, s.sched_ctx);
  }
  // Not ours: restore the previous handler and let the fault happen again.
  struct sigaction* old = sig == SIGSEGV ? &s.old_segv : sig == SIGBUS ? &s.old_bus : &s.old_fpe;
  sigaction(sig, old, nullptr);
  (void)uctx;
}

void install_fault_handlers(Sched& s) {
  if (!t_altstack) {
    const size_t sz = 64 * 1024;
    t_altstack = static_cast<char*>(std::malloc(sz));
    stack_t st{};
    st.ss_sp = t_altstack;
    st.ss_size = sz;
    sigaltstack(&st, nullptr);
  }
  struct sigaction sa{};
  sa.sa_sigaction = &fault_handler;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &s.old_segv);
  sigaction(SIGBUS, &sa, &s.old_bus);
  sigaction(SIGFPE, &sa, &s.old_fpe);
}

void remove_fault_handlers(Sched& s) {
  sigaction(SIGSEGV, &s.old_segv, nullptr);
  sigaction(SIGBUS, &s.old_bus, nullptr);
  sigaction(SIGFPE, &s.old_fpe, nullptr);
}

// ---- fibers --------------------------------------------------------------------
void complete_copy(const PendingCopy& c) {
  std::memcpy(c.dst, c.src, c.bytes - c.zfill);
  std::memset(static_cast<char*>(c.dst) + (c.bytes - c.zfill), 0, c.zfill);
}

void drain_pipeline(ThreadState& t) {
  for (const auto& c : t.pending) complete_copy(c);
  t.pending.clear();
}

void fiber_main(void* arg) {
  auto* t = static_cast<ThreadState*>(arg);
  Sched& s = S();
  try {
    s.thunk(s.closure);
    drain_pipeline(*t);  // copies still in flight complete when the thread exits
    t->state = State::done;
  } catch (const std::exception& e) {
    t->error = e.what();
    t->state = State::failed;
  } catch (...) {
    t->error = "unknown C++ exception in an emulated thread";
    t->state = State::failed;
  }
  s.in_fiber = 0;
  fiber_switch(t->ctx, s.sched_ctx);
  std::abort();  // a finished fiber is never resumed
}

void yield_to_scheduler(ThreadState& t) {
  Sched& s = S();
  s.in_fiber = 0;
  fiber_switch(t.ctx, s.sched_ctx);
}

void resume(Sched& s, ThreadState& t) {
  if (t.slot < 0) {
    t.slot = s.free_slots.back();
    s.free_slots.pop_back();
    fiber_init(t.ctx, s.stacks.stack_lo(t.slot), s.stacks.stack_size(), &fiber_main, &t);
  }
  s.cur = &t;
  threadIdx = t.tid;
  t.state = State::ready;
  s.in_fiber = 1;
  fiber_switch(s.sched_ctx, t.ctx);
  s.in_fiber = 0;
  s.cur = nullptr;
}

void order_ready(Sched& s) {
  // Releases append threads in increasing linear id (warps ascending, lanes
  // ascending; a block barrier releases everyone), so forward needs no sort.
  auto& r = s.ready;
  switch (s.order) {
    case Order::forward: break;
    case Order::reverse: std::reverse(r.begin(), r.end()); break;
    case Order::random: std::shuffle(r.begin(), r.end(), s.rng); break;
  }
}

// Groups waiting threads by location for error messages: "a.cu:12 (__syncthreads): 96 threads, first (0,0,0)".
std::string waiting_summary(Sched& s) {
  struct Group {
    int count = 0;
    const ThreadState* first = nullptr;
  };
  std::map<std::string, Group> groups;
  for (ThreadState& t : active(s)) {
    if (t.state != State::block_wait && t.state != State::warp_wait) continue;
    std::string key = detail::concat(t.file, ":", t.line, " (",
                                     t.state == State::block_wait ? "__syncthreads" : op_name(t.op), ")");
    if (t.state == State::warp_wait) key += detail::concat(" mask 0x", std::hex, t.mask);
    auto& g = groups[key];
    if (g.count++ == 0) g.first = &t;
  }
  std::string out;
  for (auto& [k, g] : groups) out += detail::concat("\n  ", k, ": ", g.count, " thread(s), first ", dim_str(g.first->tid));
  return out;
}

[[noreturn]] void fail(const std::string& msg) {
  throw Error(detail::concat("CUDA emulator: ", msg));
}

// Releases warp groups whose lanes have all arrived. Returns true if any was released.
bool release_warps(Sched& s) {
  bool any = false;
  for (size_t w = 0; w < s.warps.size(); ++w) {
    WarpState& ws = s.warps[w];
    unsigned pending = ws.waiting;
    while (pending) {
      const int L = __builtin_ctz(pending);
      ThreadState& lt = s.threads[w * 32 + L];
      const unsigned M = lt.mask;
      pending &= ~(M | (1u << L));
      if (M & ws.exited) {
        fail(detail::concat(op_name(lt.op), " at ", lt.file, ":", lt.line, " in block ", dim_str(blockIdx),
                            ", warp ", w, ": mask 0x", std::hex, M, " names lane(s) 0x", (M & ws.exited), std::dec,
                            " that already exited"));
      }
      if ((ws.waiting & M) != M) continue;
      bool same_mask = true;
      for (unsigned m = M; m; m &= m - 1) {
        const ThreadState& o = s.threads[w * 32 + __builtin_ctz(m)];
        if (o.mask != M) same_mask = false;
      }
      if (!same_mask) continue;  // may resolve later; else reported as deadlock
      for (unsigned m = M; m; m &= m - 1) {
        const ThreadState& o = s.threads[w * 32 + __builtin_ctz(m)];
        if (o.op != lt.op)
          fail(detail::concat("divergent warp operations in block ", dim_str(blockIdx), ", warp ", w, ": lane ", L,
                              " at ", op_name(lt.op), " ", lt.file, ":", lt.line, ", lane ", __builtin_ctz(m), " at ",
                              op_name(o.op), " ", o.file, ":", o.line));
      }
      // Compute every lane's result before anyone runs again.
      uint32_t ballot = 0;
      for (unsigned m = M; m; m &= m - 1) {
        const int l = __builtin_ctz(m);
        if (s.threads[w * 32 + l].pred) ballot |= 1u << l;
      }
      for (unsigned m = M; m; m &= m - 1) {
        const int l = __builtin_ctz(m);
        ThreadState& o = s.threads[w * 32 + l];
        if (lt.op == WarpOp::shfl) {
          const int src = o.src_lane;
          if (src < 0 || src > 31 || !(M & (1u << src)))
            fail(detail::concat("__shfl*_sync at ", o.file, ":", o.line, ": ", where(o), " (lane ", l,
                                ") reads lane ", src, ", which is not in mask 0x", std::hex, M,
                                (ws.exist & (1u << (src & 31))) ? "" : " (the lane does not exist in this block)"));
          o.result = s.threads[w * 32 + src].value;
        } else if (lt.op == WarpOp::match) {
          uint32_t same = 0;
          for (unsigned m2 = M; m2; m2 &= m2 - 1) {
            const int l2 = __builtin_ctz(m2);
            if (s.threads[w * 32 + l2].value == o.value) same |= 1u << l2;
          }
          o.result = same | (uint64_t{M} << 32);
        } else {
          o.result = ballot | (uint64_t{ballot == M} << 32);
        }
        s.ready.push_back(&o);
      }
      ws.waiting &= ~M;
      any = true;
    }
  }
  return any;
}

bool release_block_barrier(Sched& s) {
  if (s.at_barrier == 0 || s.at_barrier != s.live) return false;
  const ThreadState* first = nullptr;
  for (ThreadState& t : active(s)) {
    if (t.state != State::block_wait) continue;
    if (!first) {
      first = &t;
    } else if (t.line != first->line || (t.file != first->file && std::strcmp(t.file, first->file) != 0)) {
      fail(detail::concat("divergent __syncthreads in block ", dim_str(blockIdx),
                          ": threads wait at different barriers:", waiting_summary(s)));
    }
  }
  if (s.exited > 0) {
    fail(detail::concat("__syncthreads at ", first->file, ":", first->line, " in block ", dim_str(blockIdx),
                        " reached by ", s.at_barrier, " of ", s.nthreads, " threads; ", s.exited,
                        " thread(s) had already exited (undefined behaviour in CUDA)"));
  }
  s.barrier_result = s.barrier_pred;
  s.barrier_pred = 0;
  s.at_barrier = 0;
  for (ThreadState& t : active(s))
    if (t.state == State::block_wait) s.ready.push_back(&t);
  return true;
}

void run_block(Sched& s) {
  s.live = s.nthreads;
  s.exited = 0;
  s.at_barrier = 0;
  s.barrier_pred = 0;
  for (auto& w : s.warps) {
    w.exited = 0;
    w.waiting = 0;
  }
  s.ready.clear();
  for (int i = 0; i < s.nthreads; ++i) {
    ThreadState& t = s.threads[i];
    t.state = State::ready;
    t.pending.clear();
    t.committed = 0;
    t.slot = -1;
    s.ready.push_back(&t);
  }
  s.free_slots.clear();
  for (int i = s.nthreads - 1; i >= 0; --i) s.free_slots.push_back(i);
  poison_shared_memory();
  std::vector<ThreadState*> batch;
  while (true) {
    order_ready(s);
    batch.swap(s.ready);
    s.ready.clear();
    for (ThreadState* t : batch) {
      resume(s, *t);
      switch (t->state) {
        case State::done:
          s.free_slots.push_back(t->slot);
          --s.live;
          ++s.exited;
          s.warps[t->linear / 32].exited |= 1u << (t->linear % 32);
          break;
        case State::failed:
          fail(detail::concat(where(*t), ": ", t->error));
        case State::block_wait:
          ++s.at_barrier;
          break;
        case State::warp_wait:
          s.warps[t->linear / 32].waiting |= 1u << (t->linear % 32);
          break;
        case State::ready:
          fail("internal error: a thread yielded without blocking");
      }
    }
    if (s.live == 0) break;
    const bool released = release_warps(s) | release_block_barrier(s);
    if (!released) {
      if (s.at_barrier == s.live)  // cannot happen (release_block_barrier handles it); kept for safety
        fail("internal error: unreleased barrier");
      fail(detail::concat("deadlock in block ", dim_str(blockIdx), ": no thread can proceed (", s.exited,
                          " exited); waiting threads:", waiting_summary(s)));
    }
  }
}

}  // namespace

// ---- public: order ----------------------------------------------------------------
void set_order(Order o, uint64_t seed) {
  Sched& s = S();
  std::lock_guard<std::mutex> lock(s.launch_mutex);
  s.order = o;
  s.seed = seed;
  s.rng.seed(seed);
}
Order order() { return S().order; }
uint64_t order_seed() { return S().seed; }
const char* order_name(Order o) {
  switch (o) {
    case Order::forward: return "forward";
    case Order::reverse: return "reverse";
    case Order::random: return "random";
  }
  return "?";
}
bool parse_order(const char* text, Order* out) {
  if (!text) return false;
  for (Order o : {Order::forward, Order::reverse, Order::random}) {
    if (std::strcmp(text, order_name(o)) == 0) {
      *out = o;
      return true;
    }
  }
  return false;
}
uint64_t launches_run() { return S().launches.load(); }

void run_grid(const LaunchSpec& spec, KernelThunk thunk, void* closure) {
  Sched& s = S();
  if (t_in_launch)
    fail(detail::concat("kernel launch from inside a kernel (", spec.file, ":", spec.line,
                        "): dynamic parallelism is not emulated"));
  std::lock_guard<std::mutex> lock(s.launch_mutex);
  struct Guard {
    Sched& s;
    ~Guard() {
      t_in_launch = false;
      s.in_launch = false;
      s.cur = nullptr;
      s.in_fiber = 0;
      remove_fault_handlers(s);
      end_launch_shared_memory();
    }
  } guard{s};
  t_in_launch = true;
  s.in_launch = true;
  s.launch_thread = pthread_self();
  s.launches.fetch_add(1);
  const int nthreads = static_cast<int>(spec.block.x * spec.block.y * spec.block.z);
  s.stacks.reserve(nthreads);
  s.nthreads = nthreads;
  if (static_cast<int>(s.threads.size()) < nthreads) s.threads.resize(nthreads);
  s.warps.assign((nthreads + 31) / 32, WarpState{});
  for (int i = 0; i < nthreads; ++i) {
    ThreadState& t = s.threads[i];
    t.linear = i;
    t.tid = make_uint3(i % spec.block.x, (i / spec.block.x) % spec.block.y, i / (spec.block.x * spec.block.y));
    s.warps[i / 32].exist |= 1u << (i % 32);
  }
  s.thunk = thunk;
  s.closure = closure;
  gridDim = spec.grid;
  blockDim = spec.block;
  begin_launch_shared_memory(spec.dynamic_smem);
  install_fault_handlers(s);
  for (unsigned bz = 0; bz < spec.grid.z; ++bz)
    for (unsigned by = 0; by < spec.grid.y; ++by)
      for (unsigned bx = 0; bx < spec.grid.x; ++bx) {
        blockIdx = make_uint3(bx, by, bz);
        run_block(s);
      }
}

// ---- device side -------------------------------------------------------------------
int block_barrier(const char* file, int line, int pred) {
  Sched& s = S();
  ThreadState& t = *s.cur;
  t.file = file;
  t.line = line;
  t.state = State::block_wait;
  if (pred) ++s.barrier_pred;
  yield_to_scheduler(t);
  return s.barrier_result;
}

uint64_t warp_sync(WarpOp op, unsigned mask, uint64_t value, int src_lane, const char* file, int line) {
  Sched& s = S();
  ThreadState& t = *s.cur;
  const int lane = t.linear % 32;
  const unsigned exist = s.warps[t.linear / 32].exist;
  const unsigned m = mask & exist;
  if (!(m & (1u << lane)))
    device_error(detail::concat(op_name(op), ": the calling lane ", lane, " is not in mask 0x", std::hex, mask),
                 file, line);
  t.op = op;
  t.mask = m;
  t.value = value;
  t.pred = value != 0;
  t.src_lane = src_lane;
  t.file = file;
  t.line = line;
  t.state = State::warp_wait;
  yield_to_scheduler(t);
  return t.result;
}

int current_lane() { return S().cur->linear % 32; }

unsigned current_live_lanes() {
  Sched& s = S();
  const WarpState& w = s.warps[s.cur->linear / 32];
  return w.exist & ~w.exited;
}

void device_error(const std::string& what, const char* file, int line) {
  Sched& s = S();
  std::string msg = detail::concat(file, ":", line, ": ", what);
  if (!s.cur) throw Error(detail::concat("CUDA emulator: ", msg));
  throw Error(msg);  // caught by fiber_main on this fiber's own stack
}

void pipeline_issue(void* dst, const void* src, size_t bytes, size_t zfill) {
  ThreadState& t = *S().cur;
  std::memset(dst, 0xFF, bytes);  // poison: reading before the wait shows NaN
  t.pending.push_back(PendingCopy{dst, src, bytes, zfill, t.committed});
}

void pipeline_commit() { ++S().cur->committed; }

void pipeline_wait_prior(unsigned n) {
  ThreadState& t = *S().cur;
  // Complete every group except the newest n committed ones (copies not yet
  // committed belong to no group and complete only when the thread exits).
  const uint64_t limit = t.committed >= n ? t.committed - n : 0;
  size_t keep = 0;
  for (size_t i = 0; i < t.pending.size(); ++i) {
    PendingCopy& c = t.pending[i];
    if (c.batch < limit)
      complete_copy(c);
    else
      t.pending[keep++] = c;
  }
  t.pending.resize(keep);
}

}  // namespace fastnn::emu
