// Hardware-limit probes (see fastnn/probe.h).
// FMA: per thread 12 independent accumulators (2 FMA ports x 4-cycle latency needs >= 8 in
// flight), so the loop is bound by FMA throughput alone. Bandwidth: simple vector loops over
// arrays much larger than L3, bound by DRAM; the compiler vectorises them at each ISA level.
#include <omp.h>

#include <chrono>
#include <cstdint>

#include "cpu/parallel.h"
#include "fastnn/probe.h"
#include "cpu/isa_begin.h"

namespace {
constexpr int kAcc = 12;
// The accumulators end here: a store to a volatile global is observable, so the compiler
// must keep every FMA (a volatile local was not enough: GCC dropped the whole loop).
volatile float g_probe_sink;
}

double probe_fma_gflops_isa(int threads, double seconds) {
  const int64_t iters = 1 << 21;  // ~10 ms per round: parallel-region overhead negligible
  double best = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    int64_t rounds_done = 0;
    auto t0 = std::chrono::steady_clock::now();
    double elapsed = 0.0;
    // Each round: every thread runs `iters` iterations of kAcc vector FMAs.
    while (elapsed < seconds / 3) {
#pragma omp parallel num_threads(threads)
      {
#if FASTNN_ISA_LEVEL == 2
        __m512 acc[kAcc];
        for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
        const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
        for (int64_t it = 0; it < iters; ++it)
          for (int i = 0; i < kAcc; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
        __m512 s = acc[0];
        for (int i = 1; i < kAcc; ++i) s = _mm512_add_ps(s, acc[i]);
        g_probe_sink = _mm512_reduce_add_ps(s);
#elif FASTNN_ISA_LEVEL == 1
        __m256 acc[kAcc];
        for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
        const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
        for (int64_t it = 0; it < iters; ++it)
          for (int i = 0; i < kAcc; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
        __m256 s = acc[0];
        for (int i = 1; i < kAcc; ++i) s = _mm256_add_ps(s, acc[i]);
        alignas(32) float out[8];
        _mm256_store_ps(out, s);
        g_probe_sink = out[0] + out[7];
#else
        // SSE2 has no FMA: a multiply and an add per lane count as one FMA (2 flops).
        __m128 acc[kAcc];
        for (int i = 0; i < kAcc; ++i) acc[i] = _mm_set1_ps(1.0f + i * 1e-3f);
        const __m128 x = _mm_set1_ps(0.999999f), y = _mm_set1_ps(1e-7f);
        for (int64_t it = 0; it < iters; ++it)
          for (int i = 0; i < kAcc; ++i) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], x), y);
        __m128 s = acc[0];
        for (int i = 1; i < kAcc; ++i) s = _mm_add_ps(s, acc[i]);
        alignas(16) float out[4];
        _mm_store_ps(out, s);
        g_probe_sink = out[0] + out[3];
#endif
      }
      rounds_done++;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    const double lanes = FASTNN_VEC_BYTES / 4;
    const double flops = 2.0 * lanes * kAcc * static_cast<double>(iters) * rounds_done * threads;
    const double g = flops / elapsed / 1e9;
    if (g > best) best = g;
  }
  return best;
}

double probe_bandwidth_isa(int pattern, float* a, float* b, float* c, float* d, int64_t n, int threads,
                           int repeats) {
  double best = 0.0;
  for (int rep = 0; rep < repeats; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    if (pattern == 0) {
#pragma omp parallel for simd num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
    } else {
      // Adam's access pattern: p, g, m, v read; p, m, v written (a = p, b = g, c = m, d = v).
#pragma omp parallel for simd num_threads(threads) schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const float g = b[i];
        const float m = 0.9f * c[i] + 0.1f * g;
        const float v = 0.999f * d[i] + 0.001f * g * g;
        c[i] = m;
        d[i] = v;
        a[i] -= 1e-3f * m / (v + 1e-8f);
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double bytes = static_cast<double>(n) * (pattern == 0 ? 12.0 : 28.0);
    if (bytes / s / 1e9 > best) best = bytes / s / 1e9;
  }
  return best;
}

void probe_adam_pattern_isa(const fastnn::AdamArgs& a, const int64_t* prefix) {
  // Read through volatiles: the compiler must not see that they are 1 and 0 (it would drop
  // the arithmetic and, for m and v, the stores).
  static volatile float one = 1.0f, zero = 0.0f;
  const float c_keep = one, c_new = zero, c_step = zero;
  fastnn::cpu::for_each_list_block(a.num_tensors, prefix, fastnn::cpu::kOptimGrain,
                                   [&](int64_t t, int64_t b, int64_t e) {
    float* __restrict p = a.params[t];
    const float* __restrict gr = a.grads[t];
    float* __restrict mm = a.exp_avgs[t];
    float* __restrict vv = a.exp_avg_sqs[t];
    // The same loop body as the adam pattern of probe_bandwidth_isa, plainly vectorised.
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      const float g = gr[i];
      const float m = c_keep * mm[i] + c_new * g;
      const float v = c_keep * vv[i] + c_new * g * g;
      mm[i] = m;
      vv[i] = v;
      p[i] -= c_step * m / (v + 1e-8f);
    }
  });
}

#include "cpu/isa_end.h"
