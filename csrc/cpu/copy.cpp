// Strided copy / dtype conversion on the CPU. Memory-bound: dimensions that are
// contiguous in both operands are merged so the inner loop is as long as possible;
// same-dtype contiguous copies become memcpy; large copies are split across threads.
#include "cpu/copy.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/parallel.h"
#include "fastnn/half.h"
#include "fastnn/tensor.h"

namespace fastnn::cpu {
namespace {

struct Bf16 { uint16_t bits; };
struct F16 { uint16_t bits; };

template <typename T> inline double load_as_double(const T& v) { return static_cast<double>(v); }
inline double load_as_double(const Bf16& v) { return bf16_to_float(v.bits); }
inline double load_as_double(const F16& v) { return half_to_float(v.bits); }

// Float -> integer conversions saturate and map NaN to 0 instead of invoking UB.
template <typename I>
inline I saturate(double x) {
  if (std::isnan(x)) return 0;
  if (x <= static_cast<double>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (x >= static_cast<double>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(x);
}

template <typename D, typename S>
inline D convert(const S& s) {
  if constexpr (std::is_same_v<D, S>) {
    return s;
  } else if constexpr (std::is_same_v<D, bool>) {
    return load_as_double(s) != 0.0;
  } else if constexpr (std::is_same_v<D, Bf16>) {
    return Bf16{float_to_bf16(static_cast<float>(load_as_double(s)))};
  } else if constexpr (std::is_same_v<D, F16>) {
    return F16{float_to_half(static_cast<float>(load_as_double(s)))};
  } else if constexpr (std::is_integral_v<D> && (std::is_floating_point_v<S> || std::is_same_v<S, Bf16> ||
                                                  std::is_same_v<S, F16>)) {
    return saturate<D>(load_as_double(s));
  } else if constexpr (std::is_same_v<S, Bf16> || std::is_same_v<S, F16>) {
    return static_cast<D>(load_as_double(s));
  } else {
    return static_cast<D>(s);
  }
}

template <typename Fn>
void visit(DType dt, Fn&& fn) {
  switch (dt) {
    case DType::float32: return fn(float{});
    case DType::float64: return fn(double{});
    case DType::float16: return fn(F16{});
    case DType::bfloat16: return fn(Bf16{});
    case DType::int32: return fn(int32_t{});
    case DType::int64: return fn(int64_t{});
    case DType::uint8: return fn(uint8_t{});
    case DType::bool_: return fn(bool{});
  }
}

struct Layout {
  std::vector<int64_t> shape, ds, ss;  // merged dims, innermost last
};

Layout merge_dims(const CopyArgs& a) {
  Layout L;
  for (int d = 0; d < a.ndim; ++d) {
    if (a.shape[d] == 1) continue;
    if (!L.shape.empty() && L.ds.back() == a.dst_strides[d] * a.shape[d] &&
        L.ss.back() == a.src_strides[d] * a.shape[d]) {
      L.shape.back() *= a.shape[d];
      L.ds.back() = a.dst_strides[d];
      L.ss.back() = a.src_strides[d];
    } else {
      L.shape.push_back(a.shape[d]);
      L.ds.push_back(a.dst_strides[d]);
      L.ss.push_back(a.src_strides[d]);
    }
  }
  if (L.shape.empty()) {
    L.shape = {1};
    L.ds = {1};
    L.ss = {1};
  }
  return L;
}

template <typename D, typename S>
void copy_typed(const CopyArgs& a) {
  const Layout L = merge_dims(a);
  const int nd = static_cast<int>(L.shape.size());
  const int64_t inner = L.shape[nd - 1], dsi = L.ds[nd - 1], ssi = L.ss[nd - 1];
  int64_t outer = 1;
  for (int d = 0; d < nd - 1; ++d) outer *= L.shape[d];
  D* dst = static_cast<D*>(a.dst);
  const S* src = static_cast<const S*>(a.src);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(inner, 1));
  if (outer == 1 && std::is_same_v<D, S> && dsi == 1 && ssi == 1) {
    parallel_for(inner, int64_t{1} << 18, [&](int64_t b, int64_t e) {
      std::memcpy(dst + b, src + b, static_cast<size_t>(e - b) * sizeof(D));
    });
    return;
  }
  parallel_for(outer, grain, [&](int64_t ob, int64_t oe) {
    std::vector<int64_t> idx(nd > 1 ? nd - 1 : 1, 0);
    for (int64_t o = ob; o < oe; ++o) {
      int64_t rem = o, doff = 0, soff = 0;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t i = rem % L.shape[d];
        rem /= L.shape[d];
        doff += i * L.ds[d];
        soff += i * L.ss[d];
      }
      D* dp = dst + doff;
      const S* sp = src + soff;
      if (std::is_same_v<D, S> && dsi == 1 && ssi == 1) {
        std::memcpy(dp, sp, static_cast<size_t>(inner) * sizeof(D));
      } else {
        for (int64_t i = 0; i < inner; ++i) dp[i * dsi] = convert<D>(sp[i * ssi]);
      }
    }
  });
}

}  // namespace

void copy(const CopyArgs& args) {
  visit(args.dst_dtype, [&](auto d) {
    visit(args.src_dtype, [&](auto s) { copy_typed<decltype(d), decltype(s)>(args); });
  });
}

}  // namespace fastnn::cpu
