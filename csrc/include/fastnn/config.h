// Run-time configuration of the kernels: thread count and SIMD level.
// The only process-wide mutable state fastnn has; everything else is passed explicitly.
#pragma once

namespace fastnn {

enum class SimdLevel : int { generic = 0, avx2 = 1, avx512 = 2 };

// Threads a CPU kernel may use (>= 1). Defaults to the OpenMP default (usually the core count).
int num_threads();
void set_num_threads(int n);  // n >= 1, else fastnn::ValueError

// Level the CPU kernels dispatch to. Initialised from the CPU (CPUID) or FASTNN_SIMD.
SimdLevel simd_level();
void set_simd_level(SimdLevel level);  // fastnn::ValueError if the CPU lacks it
SimdLevel max_supported_simd_level();
const char* simd_level_name(SimdLevel level);
// Parses "generic" | "avx2" | "avx512"; returns false on anything else.
bool parse_simd_level(const char* text, SimdLevel* out);

// Testing aid (0, off, by default): in GEMM's small-product path (gemm_direct_tiles), the first
// `n` claims each thread makes on a shared B panel that is not yet packed see it as being packed
// by another thread, so that thread takes the private-copy fallback that otherwise runs only
// when two threads race for a panel. Read once per GEMM call.
int gemm_busy_panel_claims();
void set_gemm_busy_panel_claims(int n);  // n >= 0, else fastnn::ValueError

// Testing aid (0, off, by default): in GEMM's tall-product path on >= 2 threads (gemm_shared_b),
// thread 0 takes no work in each (B block, k block) step until the other threads have claimed
// all of that step's B panels and stolen `n` of its own A blocks (all of them if it has fewer),
// so the stealing branches run whatever the timing. Read once per GEMM call.
int gemm_late_thread_blocks();
void set_gemm_late_thread_blocks(int n);  // n >= 0, else fastnn::ValueError

}  // namespace fastnn
