// In-register 16 x 16 float transpose (AVX-512), shared by the GEMM packing routines and the
// microkernel's transposed C store. Include after "cpu/isa_begin.h"; defines nothing below the
// AVX-512 level.
// unpack (pairs) -> shuffle_ps (4 x 4 blocks per 128-bit lane) -> two shuffle_f32x4 rounds
// (gather lane L of the four row groups): 64 shuffles for 256 elements.
#pragma once
#ifndef FASTNN_ISA_NS
#error "include cpu/kernels/transpose16_avx512.h after cpu/isa_begin.h"
#endif
#if FASTNN_ISA_LEVEL == 2
namespace {
// r[i] holds row i on entry, column i on exit.
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // r[4i+j], lane L = column 4L+j of rows 4i..4i+3
    r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  __m512 out[16];
  for (int j = 0; j < 4; ++j) {
    const __m512 s0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
    const __m512 s1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
    const __m512 s2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
    const __m512 s3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    out[0 + j] = _mm512_shuffle_f32x4(s0, s2, 0x88);
    out[4 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
    out[8 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88);
    out[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = out[i];
}
}  // namespace
#endif
