// Shared memory: static section + per-launch dynamic buffer (shared_memory.h).
#include "shared_memory.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "device.h"

// Provided by the linker when some object file has the section (weak: maybe none).
extern "C" {
extern char __start_fastnn_emu_shared[] __attribute__((weak, visibility("hidden")));
extern char __stop_fastnn_emu_shared[] __attribute__((weak, visibility("hidden")));
}

namespace fastnn::emu {
namespace {
char* g_dyn = nullptr;
size_t g_dyn_cap = 0;
size_t g_dyn_size = 0;
}  // namespace

size_t static_shared_bytes() {
  if (!__start_fastnn_emu_shared || !__stop_fastnn_emu_shared) return 0;
  return static_cast<size_t>(__stop_fastnn_emu_shared - __start_fastnn_emu_shared);
}

void begin_launch_shared_memory(size_t bytes) {
  if (bytes > g_dyn_cap) {
    std::free(g_dyn);
    const size_t cap = (bytes + 4095) & ~size_t{4095};
    g_dyn = static_cast<char*>(std::aligned_alloc(256, cap));
    if (!g_dyn) {
      g_dyn_cap = 0;
      throw std::bad_alloc();
    }
    g_dyn_cap = cap;
  }
  g_dyn_size = bytes;
}

void end_launch_shared_memory() { g_dyn_size = 0; }

void poison_shared_memory() {
  if (const size_t n = static_shared_bytes()) std::memset(__start_fastnn_emu_shared, 0xFF, n);
  if (g_dyn_size) std::memset(g_dyn, 0xFF, g_dyn_size);
}

void* dynamic_shared() { return g_dyn_size ? g_dyn : nullptr; }

}  // namespace fastnn::emu
