// Argument parsing of the fastcall builtins (see fastcall.h).
#include "bindings/fastcall.h"

#include <cstring>
#include <string>

namespace fastnn::bindings {
namespace {

int find_param(PyObject* name, std::initializer_list<FastParam> params) {
  // A handful of short names: comparing contents costs ~10 ns each, no interned-string cache needed.
  int i = 0;
  for (const FastParam& p : params) {
    if (PyUnicode_CompareWithASCIIString(name, p.name) == 0) return i;
    ++i;
  }
  return -1;
}

}  // namespace

void parse_fastcall(const char* fn, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                    std::initializer_list<FastParam> params, int n_positional, PyObject** values) {
  const int n = static_cast<int>(params.size());
  if (nargs > n_positional)
    throw TypeError(detail::concat(fn, "() takes at most ", n_positional, " positional argument",
                                   n_positional == 1 ? "" : "s", " but ", nargs, " were given"));
  for (int i = 0; i < n; ++i) values[i] = i < nargs ? args[i] : nullptr;
  const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t j = 0; j < nkw; ++j) {
    PyObject* name = PyTuple_GET_ITEM(kwnames, j);
    const int i = find_param(name, params);
    if (i < 0)
      throw TypeError(detail::concat(fn, "() got an unexpected keyword argument '", PyUnicode_AsUTF8(name), "'"));
    if (values[i])
      throw TypeError(detail::concat(fn, "() got multiple values for argument '", params.begin()[i].name, "'"));
    values[i] = args[nargs + j];
  }
  for (int i = 0; i < n; ++i) {
    if (values[i]) continue;
    values[i] = params.begin()[i].dflt;
    if (!values[i])
      throw TypeError(detail::concat(fn, "() missing required argument '", params.begin()[i].name, "'"));
  }
}

bool arg_bool(PyObject* o, const char* op, const char* arg) {
  if (o == Py_True) return true;
  if (o == Py_False || o == Py_None) return false;
  PyNumberMethods* num = Py_TYPE(o)->tp_as_number;
  if (num && num->nb_bool) {
    const int r = num->nb_bool(o);
    if (r == 0 || r == 1) return r == 1;
    PyErr_Clear();
  }
  throw TypeError(detail::concat(op, ": argument '", arg, "': expected a bool, got ", Py_TYPE(o)->tp_name));
}

float arg_float(PyObject* o, const char* op, const char* arg) {
  if (PyFloat_CheckExact(o)) return static_cast<float>(PyFloat_AS_DOUBLE(o));
  const double v = PyFloat_AsDouble(o);  // __float__ or __index__; a str is a TypeError
  if (v == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw TypeError(detail::concat(op, ": argument '", arg, "': expected a float, got ", Py_TYPE(o)->tp_name));
  }
  return static_cast<float>(v);
}

void add_fastcall(py::module_& m, PyMethodDef* def) {
  PyObject* f = PyCFunction_NewEx(def, nullptr, m.attr("__name__").ptr());
  if (!f) throw py::error_already_set();
  m.add_object(def->ml_name, py::reinterpret_steal<py::object>(f), /*overwrite=*/true);
}

}  // namespace fastnn::bindings
