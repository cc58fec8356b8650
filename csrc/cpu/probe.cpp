// Front ends of the hardware-limit probes.
#include "fastnn/probe.h"

#include <omp.h>

#include <cstring>
#include <vector>

#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "fastnn/allocator.h"

namespace fastnn::cpu {
FASTNN_CPU_DECLARE_ALL_ISAS(
    double probe_fma_gflops_isa(int threads, double seconds);
    double probe_bandwidth_isa(int pattern, float* a, float* b, float* c, float* d, int64_t n, int threads,
                               int repeats);
    void probe_adam_pattern_isa(const AdamArgs& a, const int64_t* prefix);)

double probe_fma_gflops(int threads, double seconds) {
  FASTNN_CPU_DISPATCH(probe_fma_gflops_isa, threads, seconds);
}

double probe_bandwidth_gbs(int pattern, int64_t n, int threads, int repeats) {
  float* buf[4];
  for (auto& p : buf) {
    p = static_cast<float*>(cpu_allocator::allocate(static_cast<size_t>(n) * 4));
  }
  // First touch from the threads that will stream the data (page placement), once.
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    buf[0][i] = 1.0f;
    buf[1][i] = 0.5f;
    buf[2][i] = 0.25f;
    buf[3][i] = 0.125f;
  }
  double r = 0.0;
  auto run = [&]() -> double {
    FASTNN_CPU_DISPATCH(probe_bandwidth_isa, pattern, buf[0], buf[1], buf[2], buf[3], n, threads, repeats);
  };
  r = run();
  for (auto p : buf) cpu_allocator::release(p);
  return r;
}

void probe_adam_pattern(const AdamArgs& lists) {
  const std::vector<int64_t> prefix = list_prefix(lists.numels, lists.num_tensors);
  FASTNN_CPU_DISPATCH(probe_adam_pattern_isa, lists, prefix.data());
}

}  // namespace fastnn::cpu
