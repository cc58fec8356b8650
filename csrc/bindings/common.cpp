// Argument conversion and validation shared by every binding (see common.h).
#include "bindings/common.h"

#include <algorithm>
#include <cstring>

#include "fastnn/dlpack.h"

namespace fastnn::bindings {

// ---- registration ----------------------------------------------------------------
namespace {
std::vector<std::pair<std::string, BindFn>>& registry() {
  static std::vector<std::pair<std::string, BindFn>> r;
  return r;
}
}  // namespace

int register_bindings(const char* name, BindFn fn) {
  registry().emplace_back(name, fn);
  return static_cast<int>(registry().size());
}

void run_registered_bindings(py::module_& m) {
  auto entries = registry();
  // "tensor" first (other files use the Tensor type in signatures), then alphabetical.
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    if ((a.first == "tensor") != (b.first == "tensor")) return a.first == "tensor";
    return a.first < b.first;
  });
  for (auto& e : entries) e.second(m);
}

// ---- dtype / device names -------------------------------------------------------------
namespace {

std::string type_name(py::handle obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

bool numpy_dtype_to_fastnn(const py::dtype& dt, DType* out) {
  const char kind = dt.kind();
  const auto size = dt.itemsize();
  if (kind == 'f' && size == 4) *out = DType::float32;
  else if (kind == 'f' && size == 8) *out = DType::float64;
  else if (kind == 'f' && size == 2) *out = DType::float16;
  else if (kind == 'i' && size == 4) *out = DType::int32;
  else if (kind == 'i' && size == 8) *out = DType::int64;
  else if (kind == 'u' && size == 1) *out = DType::uint8;
  else if (kind == 'b' && size == 1) *out = DType::bool_;
  else return false;
  return true;
}

py::dtype fastnn_to_numpy_dtype(DType dt) {
  switch (dt) {
    case DType::float32: return py::dtype("float32");
    case DType::float64: return py::dtype("float64");
    case DType::float16: return py::dtype("float16");
    case DType::int32: return py::dtype("int32");
    case DType::int64: return py::dtype("int64");
    case DType::uint8: return py::dtype("uint8");
    case DType::bool_: return py::dtype("bool");
    case DType::bfloat16: break;
  }
  throw TypeError("bfloat16 has no NumPy equivalent; convert first, e.g. t.to(fastnn.float32)");
}

}  // namespace

py::dtype numpy_dtype_of(DType dt) { return fastnn_to_numpy_dtype(dt); }

DType parse_dtype(py::handle obj, const char* op, const char* arg) {
  if (py::isinstance<DType>(obj)) return obj.cast<DType>();
  if (py::isinstance<py::str>(obj)) {
    std::string s = obj.cast<std::string>();
    if (s.rfind("fastnn.", 0) == 0) s = s.substr(7);
    static const std::pair<const char*, DType> names[] = {
        {"float32", DType::float32}, {"float", DType::float32},   {"float64", DType::float64},
        {"double", DType::float64},  {"float16", DType::float16}, {"half", DType::float16},
        {"bfloat16", DType::bfloat16}, {"int32", DType::int32},   {"int64", DType::int64},
        {"long", DType::int64},      {"uint8", DType::uint8},     {"bool", DType::bool_}};
    for (auto& n : names)
      if (s == n.first) return n.second;
  } else {
    try {
      py::dtype dt = py::dtype::from_args(py::reinterpret_borrow<py::object>(obj));
      DType out;
      if (numpy_dtype_to_fastnn(dt, &out)) return out;
    } catch (py::error_already_set&) {
    }
  }
  throw TypeError(detail::concat(op, ": argument '", arg,
                                 "': expected a dtype (float32, float64, float16, bfloat16, int32, int64, uint8, "
                                 "bool), got ",
                                 std::string(py::repr(obj))));
}

Device parse_device(py::handle obj, const char* op, const char* arg) {
  if (py::isinstance<py::str>(obj)) {
    const std::string s = obj.cast<std::string>();
    if (s == "cpu") return Device{DeviceType::cpu, 0};
    if (s == "cuda") return Device{DeviceType::cuda, 0};
    if (s.rfind("cuda:", 0) == 0 && s.size() > 5 &&
        std::all_of(s.begin() + 5, s.end(), [](char c) { return c >= '0' && c <= '9'; }) && s.size() < 12)
      return Device{DeviceType::cuda, std::stoi(s.substr(5))};
  }
  throw ValueError(detail::concat(op, ": argument '", arg, "': expected 'cpu', 'cuda' or 'cuda:N', got ",
                                  std::string(py::repr(obj))));
}

py::object device_to_py(const Device& d) { return py::str(d.str()); }

Activation parse_activation(py::handle obj, const char* op, const char* arg) {
  if (obj.is_none()) return Activation::none;
  if (py::isinstance<py::str>(obj)) {
    const std::string s = obj.cast<std::string>();
    if (s == "relu") return Activation::relu;
    if (s == "gelu") return Activation::gelu;
    if (s == "gelu_tanh") return Activation::gelu_tanh;
    if (s == "sigmoid") return Activation::sigmoid;
    if (s == "tanh") return Activation::tanh;
    if (s == "none") return Activation::none;
  }
  throw ValueError(detail::concat(op, ": argument '", arg,
                                  "': expected None, 'relu', 'gelu', 'gelu_tanh', 'sigmoid' or 'tanh', got ",
                                  std::string(py::repr(obj))));
}

// ---- NumPy ------------------------------------------------------------------------
namespace {
// Releases a Python object from whatever thread drops the last reference to the storage.
// The reference is held as a raw pointer in the closure (no heap-allocated py::object) and
// dropped under PyGILState_Ensure, which is a counter increment when the GIL is already held
// (the common case: the last Tensor referring to an array dies in Python code).
std::function<void(void*)> release_pyobject(py::object owner) {
  PyObject* held = owner.release().ptr();
  return [held](void*) {
    if (!Py_IsInitialized()) return;  // interpreter gone: leak rather than crash
    const PyGILState_STATE st = PyGILState_Ensure();
    Py_DECREF(held);
    PyGILState_Release(st);
  };
}
}  // namespace

Tensor from_numpy(py::array arr, const char* op, const char* arg) {
  DType dt;
  if (!numpy_dtype_to_fastnn(arr.dtype(), &dt))
    throw TypeError(detail::concat(op, ": argument '", arg,
                                   "': expected a NumPy array of float32, float64, float16, int32, int64, uint8 or "
                                   "bool, got dtype ",
                                   std::string(py::str(arr.dtype()))));
  if (arr.dtype().byteorder() == '>' )
    throw TypeError(detail::concat(op, ": argument '", arg,
                                   "': expected native byte order, got big-endian dtype ",
                                   std::string(py::str(arr.dtype())), " (use arr.astype(arr.dtype.newbyteorder('=')))"));
  const auto isz = static_cast<py::ssize_t>(itemsize(dt));
  Tensor t;
  t.dtype = dt;
  t.shape.resize(arr.ndim());
  t.strides.resize(arr.ndim());
  for (py::ssize_t d = 0; d < arr.ndim(); ++d) {
    t.shape[d] = arr.shape(d);
    const py::ssize_t s = arr.strides(d);
    if (s % isz != 0)
      throw ValueError(detail::concat(op, ": argument '", arg, "': expected strides that are multiples of the ",
                                      isz, "-byte item size, got ", s, " bytes in dimension ", d,
                                      " (use numpy.ascontiguousarray)"));
    t.strides[d] = s / isz;
  }
  if (reinterpret_cast<uintptr_t>(arr.data()) % static_cast<uintptr_t>(isz) != 0)
    throw ValueError(detail::concat(op, ": argument '", arg, "': expected an array aligned to its ", isz,
                                    "-byte item size, got an unaligned one (use numpy.ascontiguousarray)"));
  auto st = std::make_shared<Storage>();
  st->data = const_cast<void*>(arr.data());
  st->nbytes = static_cast<size_t>(arr.nbytes());
  st->release = release_pyobject(arr);
  t.storage = std::move(st);
  return t;
}

// ---- DLPack import ------------------------------------------------------------------
namespace {

bool dl_dtype_to_fastnn(DLDataType d, DType* out) {
  if (d.lanes != 1) return false;
  if (d.code == kDLFloat && d.bits == 32) *out = DType::float32;
  else if (d.code == kDLFloat && d.bits == 64) *out = DType::float64;
  else if (d.code == kDLFloat && d.bits == 16) *out = DType::float16;
  else if (d.code == kDLBfloat && d.bits == 16) *out = DType::bfloat16;
  else if (d.code == kDLInt && d.bits == 32) *out = DType::int32;
  else if (d.code == kDLInt && d.bits == 64) *out = DType::int64;
  else if (d.code == kDLUInt && d.bits == 8) *out = DType::uint8;
  else if (d.code == kDLBool && d.bits == 8) *out = DType::bool_;
  else return false;
  return true;
}

template <typename Managed>
Tensor tensor_from_managed(Managed* m, const char* op, const char* arg) {
  const DLTensor& dl = m->dl_tensor;
  DType dt;
  if (!dl_dtype_to_fastnn(dl.dtype, &dt)) {
    const int code = dl.dtype.code, bits = dl.dtype.bits, lanes = dl.dtype.lanes;
    if (m->deleter) m->deleter(m);
    throw TypeError(detail::concat(op, ": argument '", arg, "': DLPack dtype (code ", code, ", bits ", bits,
                                   ", lanes ", lanes, ") has no fastnn equivalent"));
  }
  Device dev;
  if (dl.device.device_type == kDLCPU || dl.device.device_type == kDLCUDAHost) {
    dev = Device{DeviceType::cpu, 0};
  } else if (dl.device.device_type == kDLCUDA || dl.device.device_type == kDLCUDAManaged) {
    dev = Device{DeviceType::cuda, dl.device.device_id};
  } else {
    const int dtype_ = dl.device.device_type;
    if (m->deleter) m->deleter(m);
    throw TypeError(detail::concat(op, ": argument '", arg, "': expected a CPU or CUDA DLPack tensor, got device type ",
                                   dtype_));
  }
  Tensor t;
  t.dtype = dt;
  t.shape.assign(dl.shape, dl.shape + dl.ndim);
  if (dl.strides) t.strides.assign(dl.strides, dl.strides + dl.ndim);
  else t.strides = contiguous_strides(t.shape);
  auto st = std::make_shared<Storage>();
  st->data = static_cast<char*>(dl.data) + dl.byte_offset;
  st->device = dev;
  st->release = [m](void*) {
    if (!Py_IsInitialized()) return;
    // Producers' deleters may touch Python objects (NumPy's and PyTorch's do).
    py::gil_scoped_acquire gil;
    if (m->deleter) m->deleter(m);
  };
  t.storage = std::move(st);
  return t;
}

}  // namespace

Tensor from_dlpack(py::handle obj, const char* op, const char* arg) {
  py::object capsule;
  if (py::isinstance<py::capsule>(obj)) {
    capsule = py::reinterpret_borrow<py::object>(obj);
  } else {
    py::object dlpack = obj.attr("__dlpack__");
    py::tuple dev = obj.attr("__dlpack_device__")();
    const int dev_type = dev[0].cast<int>();
    py::dict kwargs;
    // CUDA producers synchronise with our stream: fastnn uses the legacy default stream (1).
    if (dev_type == kDLCUDA || dev_type == kDLCUDAManaged) kwargs["stream"] = 1;
    kwargs["max_version"] = py::make_tuple(FASTNN_DLPACK_MAJOR_VERSION, FASTNN_DLPACK_MINOR_VERSION);
    try {
      capsule = dlpack(**kwargs);
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_TypeError)) throw;
      kwargs.attr("pop")("max_version");  // producer predates DLPack 1.0
      capsule = dlpack(**kwargs);
    }
  }
  PyObject* cap = capsule.ptr();
  if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    if (m->version.major > FASTNN_DLPACK_MAJOR_VERSION)
      throw TypeError(detail::concat(op, ": argument '", arg, "': DLPack major version ", m->version.major,
                                     " is newer than the supported ", FASTNN_DLPACK_MAJOR_VERSION));
    PyCapsule_SetName(cap, "used_dltensor_versioned");
    return tensor_from_managed(m, op, arg);
  }
  if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    PyCapsule_SetName(cap, "used_dltensor");
    return tensor_from_managed(m, op, arg);
  }
  throw TypeError(detail::concat(op, ": argument '", arg,
                                 "': expected a DLPack capsule named 'dltensor' or 'dltensor_versioned' "
                                 "(already consumed?)"));
}

namespace {
// The fastnn.Tensor type object, looked up once (after the module registered it).
PyTypeObject* tensor_type() {
  static PyTypeObject* tp = nullptr;
  if (!tp) tp = reinterpret_cast<PyTypeObject*>(py::detail::get_type_handle(typeid(PyTensor), false).ptr());
  return tp;
}

// The PyTensor of an instance of exactly fastnn.Tensor, read from pybind11's simple instance
// layout: skips the type-registry lookups of isinstance<PyTensor> + cast (~0.1 us per
// operand on every op). nullptr for anything else (subclasses take the generic path).
const PyTensor* exact_pytensor(py::handle obj) {
  if (Py_TYPE(obj.ptr()) != tensor_type() || !tensor_type()) return nullptr;
  auto* inst = reinterpret_cast<py::detail::instance*>(obj.ptr());
  if (!inst->simple_layout || !inst->simple_holder_constructed) return nullptr;
  return static_cast<const PyTensor*>(inst->simple_value_holder[0]);
}
}  // namespace

Tensor to_tensor(py::handle obj, const char* op, const char* arg) {
  if (const PyTensor* pt = exact_pytensor(obj)) return pt->t;
  // NumPy before the (slower) pybind11 isinstance test for fastnn.Tensor subclasses.
  if (py::isinstance<py::array>(obj)) return from_numpy(py::reinterpret_borrow<py::array>(obj), op, arg);
  if (py::isinstance<PyTensor>(obj)) return obj.cast<PyTensor&>().t;
  if (py::hasattr(obj, "__dlpack__")) return from_dlpack(obj, op, arg);
  throw TypeError(detail::concat(op, ": argument '", arg,
                                 "': expected a fastnn.Tensor, a NumPy array or a DLPack-capable array, got ",
                                 type_name(obj)));
}

Tensor to_tensor_or_none(py::handle obj, const char* op, const char* arg) {
  if (obj.is_none()) return Tensor{};
  return to_tensor(obj, op, arg);
}

std::vector<Tensor> to_tensor_list(py::handle seq, const char* op, const char* arg) {
  if (!py::isinstance<py::sequence>(seq) || py::isinstance<py::str>(seq))
    throw TypeError(detail::concat(op, ": argument '", arg, "': expected a list of tensors, got ", type_name(seq)));
  py::sequence s = py::reinterpret_borrow<py::sequence>(seq);
  std::vector<Tensor> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    py::object item = s[i];
    if (py::isinstance<PyTensor>(item)) {  // the common case: no element name to format
      out.push_back(item.cast<PyTensor&>().t);
      continue;
    }
    const std::string name = detail::concat(arg, "[", i, "]");
    out.push_back(to_tensor(item, op, name.c_str()));
  }
  return out;
}

py::object wrap(Tensor t) { return py::cast(PyTensor(std::move(t))); }

// ---- checks ------------------------------------------------------------------------
void expect_dtype(const Tensor& t, DType dt, const char* op, const char* arg) {
  FASTNN_CHECK(t.dtype == dt, TypeError, op, ": argument '", arg, "': expected dtype ", dtype_name(dt), ", got ",
               dtype_name(t.dtype));
}
void expect_float32(const Tensor& t, const char* op, const char* arg) { expect_dtype(t, DType::float32, op, arg); }
void expect_ndim(const Tensor& t, int64_t ndim, const char* op, const char* arg) {
  FASTNN_CHECK(t.ndim() == ndim, ValueError, op, ": argument '", arg, "': expected a ", ndim, "-D tensor, got ",
               t.ndim(), "-D with shape ", shape_str(t.shape));
}
void expect_min_ndim(const Tensor& t, int64_t ndim, const char* op, const char* arg) {
  FASTNN_CHECK(t.ndim() >= ndim, ValueError, op, ": argument '", arg, "': expected at least ", ndim,
               " dimensions, got shape ", shape_str(t.shape));
}
void expect_shape(const Tensor& t, const Shape& shape, const char* op, const char* arg) {
  FASTNN_CHECK(t.shape == shape, ValueError, op, ": argument '", arg, "': expected shape ", shape_str(shape),
               ", got ", shape_str(t.shape));
}
void expect_contiguous(const Tensor& t, const char* op, const char* arg) {
  FASTNN_CHECK(t.is_contiguous(), ValueError, op, ": argument '", arg,
               "': expected a contiguous tensor, got strides ", shape_str(t.strides), " for shape ",
               shape_str(t.shape), " (call .contiguous())");
}
void expect_same_device(const Tensor& t, const Device& d, const char* op, const char* arg) {
  FASTNN_CHECK(t.device() == d, ValueError, op, ": argument '", arg, "': expected a tensor on ", d.str(),
               ", got one on ", t.device().str());
}

namespace {
// [lo, hi) byte range spanned by a tensor's elements.
std::pair<uintptr_t, uintptr_t> byte_range(const Tensor& t) {
  auto base = reinterpret_cast<uintptr_t>(t.data());
  if (t.numel() == 0) return {base, base};
  int64_t lo = 0, hi = 0;
  for (int64_t d = 0; d < t.ndim(); ++d) {
    const int64_t span = (t.shape[d] - 1) * t.strides[d];
    if (span < 0) lo += span;
    else hi += span;
  }
  const int64_t isz = static_cast<int64_t>(itemsize(t.dtype));
  return {base + lo * isz, base + (hi + 1) * isz};
}
}  // namespace

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  if (a.device() != b.device()) return false;
  auto [alo, ahi] = byte_range(a);
  auto [blo, bhi] = byte_range(b);
  return alo < bhi && blo < ahi;
}

void expect_no_overlap(const Tensor& out, const char* out_arg, const Tensor& in, const char* in_arg,
                       const char* op) {
  FASTNN_CHECK(!overlaps(out, in), ValueError, op, ": argument '", out_arg, "' must not share memory with argument '",
               in_arg, "'");
}

}  // namespace fastnn::bindings
