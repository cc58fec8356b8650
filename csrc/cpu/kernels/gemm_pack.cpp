// Packing of GEMM operands into the micro-panel layouts of gemm_microkernel.h.
// Memory bound (one read and one write per element); cost is amortised over the
// other operand's dimension (A block over all of N, B block over an mc-row block).
// Any strides work through the generic loop; the common cases get fast paths:
//   A with unit row stride (op(A) = A^T of a row-major A): one contiguous MR-float copy per k
//   B with unit column stride (row-major B): one contiguous NR-float copy per k
//   A with unit column stride / B with unit row stride: a transpose, done in
//   register-sized blocks so reads stay sequential per source row.
// Cost on the AMD Zen 5 (session 10, 1 thread, rdtsc around the calls): packing B is ~10 % of
// 256 x 4096 x 1024 (each B element serves only 256 rows; ~80 % of that is reading B, ~20 GB/s)
// and ~3 % of 1024^3. Not recovered by: prefetching rows ahead here (2 / 4 / 8 rows), panel-outer
// or 8-row-group orders, streaming stores, prefetching the next B block into L2 during the
// microkernels (the pack halves, the kernels slow by as much), or packing inside the first A
// micro-panel's microkernel calls (B read in place and stored as it is used; prefetch 16-128 rows
// ahead): all within +-2 %.
#include <cstdint>
#include <cstring>

#include "fastnn/activation.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/gemm_microkernel.h"
#include "cpu/kernels/transpose16_avx512.h"

namespace {

#if FASTNN_ISA_LEVEL == 2
// Panels of `valid` <= W rows (the rest zero), 16 k values at a time: per group of 16 rows,
// up to 16 row loads, one transpose, 16 (masked, for W = 12 or 8) stores of W-float rows; the
// last kc % 16 values by masked loads and stores (no scalar tail: 48 x (kc % 16) single-float
// reads from 48 rows; the B^T panels of a 1024^3 product with 342-deep k blocks packed ~10 %
// faster). Measured (session 8, 1 thread, 1024 x 1024 B^T packed as one thread's 528 columns,
// alternating with the row-major copy of the same B): ~1.15-1.2x the copy's time, i.e. ~40 us
// of a ~10 ms product per thread; looping group-outer (16 source rows in flight instead of 48,
// 4 KiB apart) or prefetching the next lines changed nothing measurable: the loop is bounded by
// the transpose's shuffles (64 per 16 x 16 block, one port) and by L3 reads, not by the number
// of source streams.
template <int W>
void pack_transpose_avx512(int64_t valid, int64_t kc, const float* src, int64_t ld, float* out) {
  constexpr int kGroups = (W + 15) / 16;
  for (int64_t p0 = 0; p0 < kc; p0 += 16) {
    const int64_t depth = kc - p0 < 16 ? kc - p0 : 16;
    const __mmask16 kmask = static_cast<__mmask16>((1u << depth) - 1u);
    for (int g = 0; g < kGroups; ++g) {
      const int rows = W - 16 * g < 16 ? W - 16 * g : 16;
      const int64_t loaded = valid - 16 * g;  // rows of this group read from src
      const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1u);
      const float* s = src + 16 * g * ld + p0;
      float* o = out + p0 * W + 16 * g;
      __m512 r[16];
      if (depth == 16) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = i < loaded ? _mm512_loadu_ps(s + i * ld) : _mm512_setzero_ps();
        transpose16x16(r);
#pragma GCC unroll 16
        for (int q = 0; q < 16; ++q) _mm512_mask_storeu_ps(o + q * W, mask, r[q]);
      } else {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = i < loaded ? _mm512_maskz_loadu_ps(kmask, s + i * ld) : _mm512_setzero_ps();
        transpose16x16(r);
        for (int64_t q = 0; q < depth; ++q) _mm512_mask_storeu_ps(o + q * W, mask, r[q]);
      }
    }
  }
}
#endif

// Transposes an (rows <= W) x kc slab read row by row (src rows `ld` apart, unit
// stride along k) into out[p*W + r]; rows >= `rows` are zero-filled.
template <int W>
void pack_transpose(int64_t rows, int64_t kc, const float* src, int64_t ld, float* out) {
#if FASTNN_ISA_LEVEL == 2
  pack_transpose_avx512<W>(rows, kc, src, ld, out);  // partial panels, any kc
#else
  constexpr int64_t KB = 8;  // k values per step: W*KB floats of output stay in L1
  int64_t p0 = 0;
  if (rows == W) {
    for (; p0 + KB <= kc; p0 += KB) {
      for (int r = 0; r < W; ++r) {
        const float* s = src + r * ld + p0;
        float* o = out + p0 * W + r;
#pragma GCC unroll 8
        for (int64_t q = 0; q < KB; ++q) o[q * W] = s[q];
      }
    }
  }
  for (; p0 < kc; ++p0) {
    float* o = out + p0 * W;
    int64_t r = 0;
    for (; r < rows; ++r) o[r] = src[r * ld + p0];
    for (; r < W; ++r) o[r] = 0.0f;
  }
#endif
}

// Copies an (cols <= W)-wide slab with unit stride along the panel width.
template <int W>
void pack_copy(int64_t cols, int64_t kc, const float* src, int64_t ld, float* out) {
#if FASTNN_ISA_LEVEL == 2
  if (cols < W) {  // zero-masked loads pad the row (a memcpy + memset call pair per row cost ~20 ns)
    constexpr int kVecs = (W + 15) / 16;
    __mmask16 load_mask[kVecs], store_mask[kVecs];
    for (int v = 0; v < kVecs; ++v) {
      const int64_t rem = cols - 16 * v, width = W - 16 * v;
      load_mask[v] = rem >= 16 ? __mmask16(0xFFFF) : rem <= 0 ? __mmask16(0) : __mmask16((1u << rem) - 1u);
      store_mask[v] = width >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << width) - 1u);
    }
    for (int64_t p = 0; p < kc; ++p)
      for (int v = 0; v < kVecs; ++v)
        _mm512_mask_storeu_ps(out + p * W + 16 * v, store_mask[v],
                              _mm512_maskz_loadu_ps(load_mask[v], src + p * ld + 16 * v));
    return;
  }
#endif
  if (cols == W) {
    for (int64_t p = 0; p < kc; ++p) std::memcpy(out + p * W, src + p * ld, W * sizeof(float));
  } else {
    for (int64_t p = 0; p < kc; ++p) {
      std::memcpy(out + p * W, src + p * ld, cols * sizeof(float));
      std::memset(out + p * W + cols, 0, (W - cols) * sizeof(float));
    }
  }
}

// Generic strides: out[p*W + r] = src[r*rs + p*ks].
template <int W>
void pack_strided(int64_t rows, int64_t kc, const float* src, int64_t rs, int64_t ks, float* out) {
  for (int64_t p = 0; p < kc; ++p) {
    float* o = out + p * W;
    int64_t r = 0;
    for (; r < rows; ++r) o[r] = src[r * rs + p * ks];
    for (; r < W; ++r) o[r] = 0.0f;
  }
}

// Several full panels of a slab with unit stride along the panel width (row-major B): one
// sequential pass over each source row, its W-float pieces going to the panels' k-th rows.
// Panel by panel, each source row would instead be visited once per panel for 4*W bytes: with
// a wide row stride that is a new page, TLB entry and prefetch stream every 128 bytes
// (measured ~6 % of a 1024^3 product in gemm_pack_b before this path existed).
template <int W>
void pack_copy_rows(int64_t panels, int64_t kc, const float* src, int64_t ld, float* out) {
  const int64_t panel_stride = W * kc;
  for (int64_t p = 0; p < kc; ++p) {
    const float* s = src + p * ld;
    float* o = out + p * W;
    for (int64_t j = 0; j < panels; ++j) std::memcpy(o + j * panel_stride, s + j * W, W * sizeof(float));
  }
}

template <int W>
void pack_panels(int64_t extent, int64_t kc, const float* x, int64_t rs /*along panel*/, int64_t ks /*along k*/,
                 float* out) {
  int64_t start = 0;
  if (rs == 1 && kc > 0 && extent >= 2 * W) {
    start = extent / W * W;
    pack_copy_rows<W>(extent / W, kc, x, ks, out);
  }
  for (int64_t r0 = start; r0 < extent; r0 += W) {
    const int64_t rows = extent - r0 < W ? extent - r0 : W;
    const float* src = x + r0 * rs;
    float* o = out + r0 * kc;  // panel (r0 / W) starts at (r0 / W) * W * kc
    if (rs == 1 && kc > 0)
      pack_copy<W>(rows, kc, src, ks, o);
    else if (ks == 1)
      pack_transpose<W>(rows, kc, src, rs, o);
    else
      pack_strided<W>(rows, kc, src, rs, ks, o);
  }
}

}  // namespace

void gemm_pack_a(int64_t mc, int64_t kc, const float* a, int64_t rs, int64_t cs, float* out) {
  pack_panels<kGemmMR>(mc, kc, a, rs, cs, out);
}

void gemm_pack_b(int64_t kc, int64_t nc, const float* b, int64_t rs, int64_t cs, float* out) {
  pack_panels<kGemmNR>(nc, kc, b, cs, rs, out);
}

void gemm_pack_a_big(int64_t mc, int64_t kc, const float* a, int64_t rs, int64_t cs, float* out) {
  pack_panels<kGemmBigMR>(mc, kc, a, rs, cs, out);
}

void gemm_pack_b_big(int64_t kc, int64_t nc, const float* b, int64_t rs, int64_t cs, float* out) {
  pack_panels<kGemmBigNR>(nc, kc, b, cs, rs, out);
}

#include "cpu/isa_end.h"
