// Argument helpers of the 2-D spatial ops (convolution, pooling): ints-or-pairs
// parsing and the (N, C, H, W) float32 check, with the error contract's messages.
#pragma once
#include <string>

#include "bindings/common.h"

namespace fastnn::bindings::spatial {

struct Pair {
  int64_t h, w;
};

inline std::string pyrepr(py::handle o) { return std::string(py::repr(o)); }

inline bool is_int(py::handle o) { return py::isinstance<py::int_>(o) && !py::isinstance<py::bool_>(o); }

// int or a sequence of two ints, each >= lo.
inline Pair parse_pair(py::handle o, const char* op, const char* arg, int64_t lo) {
  Pair p{0, 0};
  bool ok = false;
  if (is_int(o)) {
    p.h = p.w = o.cast<int64_t>();
    ok = true;
  } else if ((py::isinstance<py::tuple>(o) || py::isinstance<py::list>(o)) && py::len(o) == 2) {
    py::sequence s = py::reinterpret_borrow<py::sequence>(o);
    if (is_int(s[0]) && is_int(s[1])) {
      p.h = s[0].cast<int64_t>(), p.w = s[1].cast<int64_t>();
      ok = true;
    }
  }
  if (!ok)
    throw TypeError(detail::concat(op, ": argument '", arg, "': expected an int or a pair of ints, got ", pyrepr(o)));
  FASTNN_CHECK(p.h >= lo && p.w >= lo, ValueError, op, ": argument '", arg, "': expected values >= ", lo, ", got ",
               pyrepr(o));
  return p;
}

inline void expect_f32_4d(const Tensor& t, const char* op, const char* arg) {
  if (t.dtype != DType::float32)
    throw TypeError(detail::concat(op, ": argument '", arg, "': expected 4-D float32, got ", t.ndim(), "-D ",
                                   dtype_name(t.dtype), " with shape ", shape_str(t.shape)));
  FASTNN_CHECK(t.ndim() == 4, ValueError, op, ": argument '", arg, "': expected 4-D float32 (N, C, H, W), got ",
               t.ndim(), "-D float32 with shape ", shape_str(t.shape));
}

inline Tensor dense(const Tensor& t) { return t.is_contiguous() ? t : contiguous(t); }

}  // namespace fastnn::bindings::spatial
