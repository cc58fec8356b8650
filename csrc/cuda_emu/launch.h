// Kernel launches for emulated kernels: FASTNN_LAUNCH(kernel, grid, block, smem,
// stream)(args...) (kernels/cuda_compat.cuh) builds a Launcher. The arguments are
// converted to the kernel's parameter types and stored once, as the CUDA runtime
// copies them into the parameter buffer; every thread then calls the kernel with
// its own by-value copy. Configuration errors are recorded for cudaGetLastError
// (and the kernel does not run), as with the real runtime; execution errors of the
// emulated threads throw fastnn::Error.
#pragma once
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "cuda_emu/scheduler.h"

namespace fastnn::emu {

// Validates the configuration against the emulated device; on failure records the
// error for cudaGetLastError and returns false.
bool check_launch(const LaunchSpec& spec);
// Runs the launch (mutex-protected); throws fastnn::Error on execution errors.
void launch(const LaunchSpec& spec, KernelThunk thunk, void* closure);

template <typename... P>
class Launcher {
 public:
  Launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, const char* file, int line)
      : kernel_(kernel) {
    spec_.kernel = reinterpret_cast<const void*>(kernel);
    spec_.grid = grid;
    spec_.block = block;
    spec_.dynamic_smem = smem;
    spec_.file = file;
    spec_.line = line;
  }
  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    struct Closure {
      void (*kernel)(P...);
      std::tuple<std::decay_t<P>...> params;
    } closure{kernel_, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
    launch(spec_, [](void* c) {
      auto* cl = static_cast<Closure*>(c);
      std::apply(cl->kernel, cl->params);  // by-value parameters: a copy per thread
    }, &closure);
  }

 private:
  void (*kernel_)(P...);
  LaunchSpec spec_;
};

template <typename... P>
Launcher<P...> make_launcher(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, const void* /*stream*/,
                             const char* file, int line) {
  return Launcher<P...>(kernel, grid, block, smem, file, line);
}

}  // namespace fastnn::emu
