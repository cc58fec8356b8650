// nvcuda::wmma for emulated kernels (the documented API of <mma.h>).
//
// Each lane holds the WHOLE tile (num_elements = rows * cols, row-major inside the
// fragment), so every lane computes the full product: 32x redundant, but simple and
// exact. Which element frag.x[i] is differs from a GPU — where it is unspecified
// too — so kernels may only apply elementwise operations to x[]. Every *_sync
// function is a warp barrier (all 32 lanes, like the real full-warp requirement).
// Precision: half / bf16 inputs are exact in float; tf32 inputs are truncated to
// 10 mantissa bits as tensor cores do with unconverted floats; products accumulate
// in float (a __half accumulator is rounded once per mma_sync).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda_emu/device.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

namespace detail {
template <typename T> struct storage { using type = T; };
template <> struct storage<precision::tf32> { using type = float; };

template <typename Use, int M, int N, int K> struct dims;
template <int M, int N, int K> struct dims<matrix_a, M, N, K> { static constexpr int rows = M, cols = K; };
template <int M, int N, int K> struct dims<matrix_b, M, N, K> { static constexpr int rows = K, cols = N; };
template <int M, int N, int K> struct dims<accumulator, M, N, K> { static constexpr int rows = M, cols = N; };

inline float to_float(float v) { return v; }
inline float to_float(double v) { return static_cast<float>(v); }
inline float to_float(__half v) { return __half2float(v); }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> inline T from_float(float v);
template <> inline float from_float<float>(float v) { return v; }
template <> inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

inline float tf32_truncate(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7F800000u) != 0x7F800000u) u &= 0xFFFFE000u;
  std::memcpy(&v, &u, 4);
  return v;
}
template <typename T> inline float operand(typename storage<T>::type v) { return to_float(v); }
template <> inline float operand<precision::tf32>(float v) { return tf32_truncate(v); }

inline void warp_barrier(const char* file, int line) {
  ::fastnn::emu::warp_sync(::fastnn::emu::WarpOp::wmma, 0xFFFFFFFFu, 0, 0, file, line);
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
 public:
  using element_type = T;
  using storage_element_type = typename detail::storage<T>::type;
  static constexpr int rows = detail::dims<Use, M, N, K>::rows;
  static constexpr int cols = detail::dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  storage_element_type x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const typename fragment<Use, M, N, K, T, L>::storage_element_type& v) {
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = v;
}

// Operand tiles: the layout is part of the fragment type.
template <typename Use, int M, int N, int K, typename T, typename L, typename P,
          typename = std::enable_if_t<!std::is_same<Use, accumulator>::value>>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  using F = fragment<Use, M, N, K, T, L>;
  static_assert(std::is_same<L, row_major>::value || std::is_same<L, col_major>::value,
                "matrix_a / matrix_b fragments need a row_major or col_major layout");
  detail::warp_barrier(file, line);
  constexpr bool rm = std::is_same<L, row_major>::value;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c)
      f.x[r * F::cols + c] = p[rm ? static_cast<size_t>(r) * ldm + c : static_cast<size_t>(c) * ldm + r];
}

template <int M, int N, int K, typename T, typename P>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T, void>& f, const P* p, unsigned ldm, layout_t layout,
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::warp_barrier(file, line);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = p[layout == mem_row_major ? static_cast<size_t>(r) * ldm + c : static_cast<size_t>(c) * ldm + r];
}

template <int M, int N, int K, typename T, typename P>
inline void store_matrix_sync(P* p, const fragment<accumulator, M, N, K, T, void>& f, unsigned ldm, layout_t layout,
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::warp_barrier(file, line);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      p[layout == mem_row_major ? static_cast<size_t>(r) * ldm + c : static_cast<size_t>(c) * ldm + r] = f.x[r * N + c];
  detail::warp_barrier(file, line);  // no lane runs ahead and rereads the tile before all stored
}

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC, typename TD>
inline void mma_sync(fragment<accumulator, M, N, K, TD, void>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC, void>& c,
                     const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  detail::warp_barrier(file, line);
  float acc[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = detail::to_float(c.x[i * N + j]);
      for (int k = 0; k < K; ++k) s += detail::operand<TA>(a.x[i * K + k]) * detail::operand<TB>(b.x[k * N + j]);
      acc[i * N + j] = s;
    }
  for (int i = 0; i < M * N; ++i) d.x[i] = detail::from_float<typename detail::storage<TD>::type>(acc[i]);
}

// Round-to-nearest (ties away from zero) to tf32, kept in a float (cvt.rna.tf32.f32).
inline float __float_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7F800000u) != 0x7F800000u) u = (u + 0x1000u) & 0xFFFFE000u;
  std::memcpy(&v, &u, 4);
  return v;
}

}  // namespace wmma
}  // namespace nvcuda
