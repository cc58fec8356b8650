// Hardware-limit probes used by `fastnn bench` to express results as a fraction of
// what this machine can do: peak FP32 FMA rate and streaming memory bandwidth.
#pragma once
#include <cstdint>

#include "fastnn/optim.h"

namespace fastnn::cpu {

// GFLOP/s of a register-resident FMA loop at the current SIMD level on `threads` threads.
double probe_fma_gflops(int threads, double seconds);

// Streaming bandwidth in GB/s over arrays of `n` floats (each far larger than the caches):
//   pattern 0: triad   a[i] = b[i] + s * c[i]          (12 bytes per element)
//   pattern 1: adam    read p, g, m, v; write p, m, v   (28 bytes per element)
// Returns the best of `repeats` passes (arrays allocated and touched once beforehand).
double probe_bandwidth_gbs(int pattern, int64_t n, int threads, int repeats);

// One pass of the adam pattern above over a caller's tensor list (params, grads, exp_avgs,
// exp_avg_sqs of `lists`; the other fields are ignored), split over threads exactly as
// cpu::adam splits it, so that `fastnn bench adam` can time the limit on the same buffers in
// the same time window as the kernel. The coefficients leave every value unchanged
// (m = 1*m + 0*g, v = 1*v + 0*g*g, p -= 0*m/(v+eps)) for finite inputs with v >= 0.
void probe_adam_pattern(const AdamArgs& lists);

}  // namespace fastnn::cpu
