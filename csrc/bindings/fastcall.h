// Public functions bound as plain CPython METH_FASTCALL | METH_KEYWORDS builtins instead of
// through pybind11's dispatcher, for the ops whose whole call is a few microseconds (a
// 64 x 128 x 10 GEMM): pybind11 matches keyword arguments with a dictionary lookup per
// parameter (~0.9 us for a single keyword), and the Python wrapper that used to pass
// everything positionally cost another ~0.15 us. Here a Python call is one C call: the
// arguments arrive as a C array plus a tuple of keyword names, matched by a string compare.
//
// Same contract as a Python `def f(p0, p1=..., *, k0=..., ...)`: TypeError for a missing,
// duplicated or unknown argument or too many positionals; fastnn's C++ exceptions become
// the same Python exceptions as through pybind11 (its registered translators run).
#pragma once
#include <Python.h>

#include <initializer_list>

#include "bindings/common.h"

namespace fastnn::bindings {

// One parameter of a fastcall signature; `dflt` nullptr = required.
struct FastParam {
  const char* name;
  PyObject* dflt;
};

// Fills values[i] (borrowed references) for each of `params`; the first `n_positional`
// may be given by position, the rest only by keyword. Throws TypeError like CPython.
void parse_fastcall(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                    std::initializer_list<FastParam> params, int n_positional, PyObject** values);

// pybind11's conversions of a `bool` / `float` parameter (True/False/None/numpy.bool_/
// anything with __bool__; float/int/anything with __float__ or __index__), TypeError naming
// the argument otherwise.
bool arg_bool(PyObject* o, const char* op, const char* arg);
float arg_float(PyObject* o, const char* op, const char* arg);

// Runs body() -> py::object, turning any exception into the Python error it stands for.
template <typename Body>
PyObject* fastcall_guard(Body&& body) noexcept {
  try {
    return body().release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (...) {
    py::detail::try_translate_exceptions();
  }
  return nullptr;
}

// Adds a fastcall builtin to `m`. `def` must outlive the module (a static).
void add_fastcall(py::module_& m, PyMethodDef* def);

}  // namespace fastnn::bindings
