// Process-wide kernel configuration: thread count and SIMD level.
#include "fastnn/config.h"

#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fastnn/errors.h"

namespace fastnn {
namespace {

SimdLevel detect_cpu_level() {
  __builtin_cpu_init();
  // __builtin_cpu_supports checks the OS (XGETBV) as well as CPUID for AVX states.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("fma"))
    return SimdLevel::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::avx2;
  return SimdLevel::generic;
}

SimdLevel initial_level() {
  const SimdLevel best = detect_cpu_level();
  const char* env = std::getenv("FASTNN_SIMD");
  if (env == nullptr || *env == '\0') return best;
  SimdLevel wanted;
  if (!parse_simd_level(env, &wanted))
    throw ValueError(detail::concat("environment variable FASTNN_SIMD: expected one of avx512, avx2, generic, got '",
                                    env, "'"));
  if (static_cast<int>(wanted) > static_cast<int>(best))
    throw ValueError(detail::concat("environment variable FASTNN_SIMD=", env, ": this CPU supports at most '",
                                    simd_level_name(best), "'"));
  return wanted;
}

std::atomic<int>& threads_setting() {
  static std::atomic<int> n{std::max(1, omp_get_max_threads())};
  return n;
}

std::atomic<int>& level_setting() {
  static std::atomic<int> level{static_cast<int>(initial_level())};
  return level;
}

}  // namespace

// Inside an active parallel region a nested one gets a single thread (nested parallelism is
// off), so a kernel called from there (e.g. a GEMM per thread in the RNN drivers) must plan
// for one thread: its work split would otherwise assume threads that never come.
int num_threads() { return omp_in_parallel() ? 1 : threads_setting().load(std::memory_order_relaxed); }

void set_num_threads(int n) {
  FASTNN_CHECK(n >= 1, ValueError, "set_num_threads: argument 'n': expected an integer >= 1, got ", n);
  threads_setting().store(n, std::memory_order_relaxed);
}

SimdLevel simd_level() { return static_cast<SimdLevel>(level_setting().load(std::memory_order_relaxed)); }

SimdLevel max_supported_simd_level() {
  static const SimdLevel best = detect_cpu_level();
  return best;
}

void set_simd_level(SimdLevel level) {
  FASTNN_CHECK(static_cast<int>(level) <= static_cast<int>(max_supported_simd_level()), ValueError,
               "set_simd_level: argument 'level': this CPU supports at most '",
               simd_level_name(max_supported_simd_level()), "', got '", simd_level_name(level), "'");
  level_setting().store(static_cast<int>(level), std::memory_order_relaxed);
}

namespace {
// GEMM's testing knobs (config.h): non-negative counts, 0 (off) by default.
enum TestingKnob { kBusyPanelClaims, kLateThreadBlocks, kTestingKnobs };

std::atomic<int>& testing_knob(TestingKnob which) {
  static std::atomic<int> knobs[kTestingKnobs] = {};
  return knobs[which];
}

void set_testing_knob(TestingKnob which, const char* setter, int n) {
  FASTNN_CHECK(n >= 0, ValueError, setter, ": argument 'n': expected an integer >= 0, got ", n);
  testing_knob(which).store(n, std::memory_order_relaxed);
}
}  // namespace

int gemm_busy_panel_claims() { return testing_knob(kBusyPanelClaims).load(std::memory_order_relaxed); }
void set_gemm_busy_panel_claims(int n) { set_testing_knob(kBusyPanelClaims, "set_gemm_busy_panel_claims", n); }

int gemm_late_thread_blocks() { return testing_knob(kLateThreadBlocks).load(std::memory_order_relaxed); }
void set_gemm_late_thread_blocks(int n) { set_testing_knob(kLateThreadBlocks, "set_gemm_late_thread_blocks", n); }

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return "avx512";
    case SimdLevel::avx2: return "avx2";
    default: return "generic";
  }
}

bool parse_simd_level(const char* text, SimdLevel* out) {
  if (std::strcmp(text, "avx512") == 0) *out = SimdLevel::avx512;
  else if (std::strcmp(text, "avx2") == 0) *out = SimdLevel::avx2;
  else if (std::strcmp(text, "generic") == 0) *out = SimdLevel::generic;
  else return false;
  return true;
}

}  // namespace fastnn
