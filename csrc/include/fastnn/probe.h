// Hardware-limit probes used by `fastnn bench` to express results as a fraction of
// what this machine can do: peak FP32 FMA rate and streaming memory bandwidth.
#pragma once
#include <cstdint>

namespace fastnn::cpu {

// GFLOP/s of a register-resident FMA loop at the current SIMD level on `threads` threads.
double probe_fma_gflops(int threads, double seconds);

// Streaming bandwidth in GB/s over arrays of `n` floats (each far larger than the caches):
//   pattern 0: triad   a[i] = b[i] + s * c[i]          (12 bytes per element)
//   pattern 1: adam    read p, g, m, v; write p, m, v   (28 bytes per element)
// Returns the best of `repeats` passes (arrays allocated and touched once beforehand).
double probe_bandwidth_gbs(int pattern, int64_t n, int threads, int repeats);

}  // namespace fastnn::cpu
