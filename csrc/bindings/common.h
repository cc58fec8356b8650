// Shared helpers of the pybind11 bindings: the Python-visible tensor type, argument
// conversion (fastnn.Tensor / NumPy / DLPack -> fastnn::Tensor, zero-copy) and the
// checks of the error contract ("op: argument 'x': expected E, got A").
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "core/cuda_backend.h"
#include "fastnn/errors.h"
#include "fastnn/tensor.h"

namespace fastnn::bindings {
namespace py = pybind11;

// fastnn.Tensor: a fastnn::Tensor; the Python layer's autograd fields are instance attributes.
struct PyTensor {
  Tensor t;
  PyTensor() = default;
  explicit PyTensor(Tensor x) : t(std::move(x)) {}
};

// ---- self-registration of binding files ----------------------------------------
using BindFn = void (*)(py::module_&);
int register_bindings(const char* name, BindFn fn);
void run_registered_bindings(py::module_& m);

#define FASTNN_BINDINGS(name)                                                          \
  static void fastnn_bind_##name(::pybind11::module_& m);                              \
  [[maybe_unused]] static const int fastnn_registered_##name =                         \
      ::fastnn::bindings::register_bindings(#name, &fastnn_bind_##name);               \
  static void fastnn_bind_##name(::pybind11::module_& m)

// ---- conversion ------------------------------------------------------------------
// Accepts fastnn.Tensor, numpy.ndarray (zero-copy; any strides that are whole
// elements; native byte order), and any object with __dlpack__ (zero-copy).
// TypeError naming `arg` otherwise. `op` prefixes messages ("gemm").
Tensor to_tensor(py::handle obj, const char* op, const char* arg);
// Like to_tensor, but None -> undefined Tensor.
Tensor to_tensor_or_none(py::handle obj, const char* op, const char* arg);
std::vector<Tensor> to_tensor_list(py::handle seq, const char* op, const char* arg);
Tensor from_numpy(py::array arr, const char* op, const char* arg);
Tensor from_dlpack(py::handle obj, const char* op, const char* arg);
py::object wrap(Tensor t);  // -> fastnn.Tensor
py::dtype numpy_dtype_of(DType dt);  // TypeError for bfloat16

DType parse_dtype(py::handle obj, const char* op, const char* arg);  // fastnn dtype, str or numpy dtype
Device parse_device(py::handle obj, const char* op, const char* arg);  // "cpu", "cuda", "cuda:N"
py::object device_to_py(const Device& d);
Activation parse_activation(py::handle obj, const char* op, const char* arg);

// ---- checks (all throw fastnn::ValueError / TypeError) ---------------------------
void expect_dtype(const Tensor& t, DType dt, const char* op, const char* arg);
void expect_float32(const Tensor& t, const char* op, const char* arg);
void expect_ndim(const Tensor& t, int64_t ndim, const char* op, const char* arg);
void expect_min_ndim(const Tensor& t, int64_t ndim, const char* op, const char* arg);
void expect_shape(const Tensor& t, const Shape& shape, const char* op, const char* arg);
void expect_contiguous(const Tensor& t, const char* op, const char* arg);
void expect_same_device(const Tensor& t, const Device& d, const char* op, const char* arg);
// ValueError when the memory of `out` overlaps that of `in`.
void expect_no_overlap(const Tensor& out, const char* out_arg, const Tensor& in, const char* in_arg, const char* op);
bool overlaps(const Tensor& a, const Tensor& b);

// Runs fn() with the GIL released.
template <typename Fn>
void without_gil(Fn&& fn) {
  py::gil_scoped_release nogil;
  fn();
}

}  // namespace fastnn::bindings
