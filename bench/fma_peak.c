// Peak FP32 FMA throughput: 12 independent zmm FMA chains per thread.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#define F(r) r = _mm512_fmadd_ps(r, x, y);
int main(int argc, char** argv) {
  int nt = argc > 1 ? atoi(argv[1]) : 2;
  long iters = 1000000L;
  for (int rep = 0; rep < 40; ++rep) {
    double t0 = omp_get_wtime();
    float sink = 0;
#pragma omp parallel num_threads(nt) reduction(+:sink)
    {
      __m512 x = _mm512_set1_ps(0.5f), y = _mm512_set1_ps(1.0f);
      __m512 a0 = _mm512_set1_ps(1), a1 = _mm512_set1_ps(2), a2 = _mm512_set1_ps(3), a3 = _mm512_set1_ps(4), a4 = _mm512_set1_ps(5), a5 = _mm512_set1_ps(6), a6 = _mm512_set1_ps(7), a7 = _mm512_set1_ps(8), a8 = _mm512_set1_ps(9), a9 = _mm512_set1_ps(10), a10 = _mm512_set1_ps(11), a11 = _mm512_set1_ps(12);
      for (long it = 0; it < iters; ++it) {
        F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11)
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
      }
      __m512 s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
      sink += _mm512_reduce_add_ps(s);
    }
    double t = omp_get_wtime() - t0;
    printf("threads %d: %.1f GFLOP/s (sink %g)\n", nt, 2.0 * 16 * 12 * iters * nt / t / 1e9, sink);
  }
}
