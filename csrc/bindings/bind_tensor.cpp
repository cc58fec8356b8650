// fastnn.Tensor (the pybind11 class _C.Tensor): storage, views, NumPy and DLPack
// interchange, device / dtype conversion. Autograd-aware methods are added in
// python/fastnn/tensor.py.
#include <cstring>

#include "bindings/common.h"
#include "fastnn/dlpack.h"

namespace fastnn::bindings {
namespace {

const char* kOp = "Tensor";

// ---- views --------------------------------------------------------------------------
int64_t wrap_dim(int64_t d, int64_t ndim, const char* op, const char* arg) {
  const int64_t lo = -std::max<int64_t>(ndim, 1), hi = std::max<int64_t>(ndim, 1) - 1;
  FASTNN_CHECK(d >= lo && d <= hi, IndexError, op, ": argument '", arg, "': expected a dimension in [", lo, ", ", hi,
               "], got ", d);
  return d < 0 ? d + std::max<int64_t>(ndim, 1) : d;
}

Shape infer_shape(const Tensor& t, std::vector<int64_t> shape, const char* op) {
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      FASTNN_CHECK(infer < 0, ValueError, op, ": argument 'shape': only one dimension can be -1, got ",
                   shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      FASTNN_CHECK(shape[i] >= 0, ValueError, op, ": argument 'shape': expected sizes >= 0 or -1, got ",
                   shape_str(shape));
      known *= shape[i];
    }
  }
  const int64_t n = t.numel();
  if (infer >= 0) {
    FASTNN_CHECK(known != 0 && n % known == 0, ValueError, op, ": cannot reshape a tensor of ", n,
                 " elements into shape ", shape_str(shape));
    shape[infer] = n / known;
  }
  FASTNN_CHECK(checked_numel(shape, "shape") == n, ValueError, op, ": cannot reshape a tensor of shape ",
               shape_str(t.shape), " (", n, " elements) into shape ", shape_str(shape));
  return shape;
}

// Strides for viewing t with new_shape without copying, if possible (PyTorch's rule:
// each run of old dims that maps onto a run of new dims must be contiguous in itself).
bool view_strides(const Tensor& t, const Shape& new_shape, Shape* out) {
  if (t.numel() == 0 || t.is_contiguous()) {
    *out = contiguous_strides(new_shape);
    return true;
  }
  Shape ns(new_shape.size());
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = t.strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = t.ndim() - 1; d >= 0; --d) {
    tensor_numel *= t.shape[d];
    if (d == 0 || (t.shape[d - 1] != 1 && t.strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        ns[view_d] = view_numel * chunk_base_stride;
        view_numel *= new_shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = t.strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return false;
  *out = ns;
  return true;
}

Tensor view(const Tensor& t, const std::vector<int64_t>& shape, const char* op) {
  Shape s = infer_shape(t, shape, op);
  Shape st;
  FASTNN_CHECK(view_strides(t, s, &st), ValueError, op, ": cannot view a tensor of shape ", shape_str(t.shape),
               " and strides ", shape_str(t.strides), " as shape ", shape_str(s), " without a copy; use reshape");
  Tensor v = t;
  v.shape = s;
  v.strides = st;
  return v;
}

Tensor reshape(const Tensor& t, const std::vector<int64_t>& shape) {
  Shape s = infer_shape(t, shape, "reshape");
  Shape st;
  if (view_strides(t, s, &st)) {
    Tensor v = t;
    v.shape = s;
    v.strides = st;
    return v;
  }
  Tensor c = contiguous(t);
  c.shape = s;
  c.strides = contiguous_strides(s);
  return c;
}

Tensor permute(const Tensor& t, const std::vector<int64_t>& dims) {
  FASTNN_CHECK(static_cast<int64_t>(dims.size()) == t.ndim(), ValueError, "permute: argument 'dims': expected ",
               t.ndim(), " dimensions, got ", dims.size());
  std::vector<bool> seen(t.ndim(), false);
  Tensor v = t;
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], t.ndim(), "permute", "dims");
    FASTNN_CHECK(!seen[d], ValueError, "permute: argument 'dims': expected a permutation, got ", shape_str(dims));
    seen[d] = true;
    v.shape[i] = t.shape[d];
    v.strides[i] = t.strides[d];
  }
  return v;
}

Tensor transpose(const Tensor& t, int64_t d0, int64_t d1) {
  if (t.ndim() < 2 && (d0 == 0 || d0 == -1) && (d1 == 0 || d1 == -1)) return t;
  d0 = wrap_dim(d0, t.ndim(), "transpose", "dim0");
  d1 = wrap_dim(d1, t.ndim(), "transpose", "dim1");
  Tensor v = t;
  std::swap(v.shape[d0], v.shape[d1]);
  std::swap(v.strides[d0], v.strides[d1]);
  return v;
}

Tensor getitem(const Tensor& t, py::handle index) {
  py::tuple idx = py::isinstance<py::tuple>(index) ? py::reinterpret_borrow<py::tuple>(index)
                                                    : py::make_tuple(index);
  int64_t consumed = 0, ellipses = 0;
  for (auto item : idx) {
    if (item.is_none()) continue;
    if (item.ptr() == Py_Ellipsis) {
      ellipses++;
      continue;
    }
    if (py::isinstance<py::slice>(item) || py::isinstance<py::int_>(item) ||
        (py::hasattr(item, "__index__") && !py::isinstance<py::bool_>(item) && !py::isinstance<py::array>(item) &&
         !py::isinstance<PyTensor>(item)))
      consumed++;
    else
      throw TypeError(detail::concat("Tensor indexing: expected integers, slices, None or ..., got ",
                                     std::string(py::str(py::type::handle_of(item).attr("__name__"))),
                                     " (advanced indexing is not supported; use fastnn.ops.embedding / take)"));
  }
  FASTNN_CHECK(ellipses <= 1, IndexError, "Tensor indexing: an index can only have a single ellipsis");
  FASTNN_CHECK(consumed <= t.ndim(), IndexError, "Tensor indexing: too many indices for a tensor of dimension ",
               t.ndim(), " (got ", consumed, ")");
  Tensor v = t;
  v.shape.clear();
  v.strides.clear();
  int64_t src_d = 0;
  int64_t offset = t.offset;
  for (auto item : idx) {
    if (item.is_none()) {
      v.shape.push_back(1);
      v.strides.push_back(0);
    } else if (item.ptr() == Py_Ellipsis) {
      const int64_t span = t.ndim() - consumed;
      for (int64_t k = 0; k < span; ++k, ++src_d) {
        v.shape.push_back(t.shape[src_d]);
        v.strides.push_back(t.strides[src_d]);
      }
    } else if (py::isinstance<py::slice>(item)) {
      py::ssize_t start, stop, step, len;
      if (!py::reinterpret_borrow<py::slice>(item).compute(t.shape[src_d], &start, &stop, &step, &len))
        throw py::error_already_set();
      if (len > 0) offset += start * t.strides[src_d];
      v.shape.push_back(len);
      v.strides.push_back(t.strides[src_d] * step);
      src_d++;
    } else {
      int64_t i = item.cast<int64_t>();
      const int64_t n = t.shape[src_d];
      FASTNN_CHECK(i >= -n && i < n, IndexError, "Tensor indexing: index ", i, " is out of bounds for dimension ",
                   src_d, " with size ", n);
      if (i < 0) i += n;
      offset += i * t.strides[src_d];
      src_d++;
    }
  }
  for (; src_d < t.ndim(); ++src_d) {
    v.shape.push_back(t.shape[src_d]);
    v.strides.push_back(t.strides[src_d]);
  }
  v.offset = offset;
  return v;
}

// ---- NumPy export -------------------------------------------------------------------
py::array to_numpy(const Tensor& t) {
  FASTNN_CHECK(t.device().type == DeviceType::cpu, TypeError, "Tensor.numpy: the tensor is on ", t.device().str(),
               "; copy it to the host first with .cpu()");
  const py::dtype dt = numpy_dtype_of(t.dtype);
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end()), strides(t.ndim());
  for (int64_t d = 0; d < t.ndim(); ++d) strides[d] = t.strides[d] * static_cast<py::ssize_t>(itemsize(t.dtype));
  auto* keep = new std::shared_ptr<Storage>(t.storage);
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<Storage>*>(p); });
  return py::array(dt, shape, strides, t.data(), owner);
}

// ---- DLPack export ------------------------------------------------------------------
struct DLPackContext {
  Tensor t;
  std::vector<int64_t> shape, strides;
};

DLDataType dl_dtype(DType dt) {
  switch (dt) {
    case DType::float32: return {kDLFloat, 32, 1};
    case DType::float64: return {kDLFloat, 64, 1};
    case DType::float16: return {kDLFloat, 16, 1};
    case DType::bfloat16: return {kDLBfloat, 16, 1};
    case DType::int32: return {kDLInt, 32, 1};
    case DType::int64: return {kDLInt, 64, 1};
    case DType::uint8: return {kDLUInt, 8, 1};
    case DType::bool_: return {kDLBool, 8, 1};
  }
  return {kDLFloat, 32, 1};
}

template <typename Managed>
void fill_dl(Managed* m, DLPackContext* ctx) {
  const Tensor& t = ctx->t;
  m->manager_ctx = ctx;
  m->dl_tensor.data = t.data();
  m->dl_tensor.device = t.device().type == DeviceType::cpu ? DLDevice{kDLCPU, 0}
                                                           : DLDevice{kDLCUDA, t.device().index};
  m->dl_tensor.ndim = static_cast<int32_t>(t.ndim());
  m->dl_tensor.dtype = dl_dtype(t.dtype);
  m->dl_tensor.shape = ctx->shape.data();
  m->dl_tensor.strides = ctx->strides.data();
  m->dl_tensor.byte_offset = 0;
}

py::capsule to_dlpack(const Tensor& src, bool versioned, bool copied) {
  auto* ctx = new DLPackContext{src, src.shape, src.strides};
  if (versioned) {
    auto* m = new DLManagedTensorVersioned{};
    m->version = {FASTNN_DLPACK_MAJOR_VERSION, FASTNN_DLPACK_MINOR_VERSION};
    m->flags = copied ? FASTNN_DLPACK_FLAG_IS_COPIED : 0;
    m->deleter = [](DLManagedTensorVersioned* self) {
      delete static_cast<DLPackContext*>(self->manager_ctx);
      delete self;
    };
    fill_dl(m, ctx);
    return py::capsule(m, "dltensor_versioned", [](PyObject* cap) {
      // Called when the capsule dies; consumers rename it when they take ownership.
      if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
        auto* mm = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
        if (mm && mm->deleter) mm->deleter(mm);
      }
    });
  }
  auto* m = new DLManagedTensor{};
  m->deleter = [](DLManagedTensor* self) {
    delete static_cast<DLPackContext*>(self->manager_ctx);
    delete self;
  };
  fill_dl(m, ctx);
  return py::capsule(m, "dltensor", [](PyObject* cap) {
    if (PyCapsule_IsValid(cap, "dltensor")) {
      auto* mm = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
      if (mm && mm->deleter) mm->deleter(mm);
    }
  });
}

py::object scalar_item(const Tensor& t) {
  FASTNN_CHECK(t.numel() == 1, ValueError, "Tensor.item: expected a tensor with one element, got shape ",
               shape_str(t.shape));
  Tensor h = to_dtype(to_device(t, Device{}), t.dtype);
  Tensor d = empty({}, DType::float64, Device{});
  switch (t.dtype) {
    case DType::int32: return py::int_(*h.data_as<int32_t>());
    case DType::int64: return py::int_(*h.data_as<int64_t>());
    case DType::uint8: return py::int_(*h.data_as<uint8_t>());
    case DType::bool_: return py::bool_(*h.data_as<bool>());
    default: copy_(d, Tensor{h.storage, h.offset, {}, {}, h.dtype}); return py::float_(*d.data_as<double>());
  }
}

constexpr int kNumDTypes = static_cast<int>(DType::bool_) + 1;

// The DType enum's own value objects, indexed by DType (filled when the enum is bound). Never
// freed: they must outlive the interpreter's teardown of the module.
py::object* dtype_objects() {
  static py::object* objs = new py::object[kNumDTypes];
  return objs;
}

py::tuple shape_tuple(const Shape& shape) {
  py::tuple out(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) out[i] = py::int_(shape[i]);
  return out;
}

}  // namespace

FASTNN_BINDINGS(tensor) {
  py::enum_<DType>(m, "DType")
      .value("float32", DType::float32)
      .value("float64", DType::float64)
      .value("float16", DType::float16)
      .value("bfloat16", DType::bfloat16)
      .value("int32", DType::int32)
      .value("int64", DType::int64)
      .value("uint8", DType::uint8)
      .value("bool", DType::bool_)
      .def_property_readonly("itemsize", [](DType d) { return itemsize(d); })
      .def_property_readonly("is_floating_point", [](DType d) {
        return d == DType::float32 || d == DType::float64 || d == DType::float16 || d == DType::bfloat16;
      })
      .def("__repr__", [](DType d) { return std::string("fastnn.") + dtype_name(d); })
      .def("__str__", [](DType d) { return std::string("fastnn.") + dtype_name(d); });
  // Tensor.dtype hands out these objects (the class attributes DType.float32, ...) instead of
  // casting a new enum instance per read: a read costs ~0.1 us instead of ~1 us, and the
  // Python layer's dispatch can test `t.dtype is DType.float32` (autograd reads dtypes per op).
  {
    py::object cls = m.attr("DType");
    for (int i = 0; i < kNumDTypes; ++i) dtype_objects()[i] = cls.attr(dtype_name(static_cast<DType>(i)));
  }

  py::class_<PyTensor>(m, "Tensor", py::dynamic_attr(), "A strided view of device memory (see fastnn.tensor).")
      .def_property_readonly("shape", [](const PyTensor& s) { return shape_tuple(s.t.shape); })
      .def_property_readonly("strides", [](const PyTensor& s) { return py::tuple(py::cast(s.t.strides)); })
      .def_property_readonly("dtype", [](const PyTensor& s) { return dtype_objects()[static_cast<int>(s.t.dtype)]; })
      .def_property_readonly("device", [](const PyTensor& s) { return device_to_py(s.t.device()); })
      .def_property_readonly("is_cuda", [](const PyTensor& s) { return s.t.device().type == DeviceType::cuda; })
      .def_property_readonly("ndim", [](const PyTensor& s) { return s.t.ndim(); })
      .def_property_readonly("nbytes", [](const PyTensor& s) { return s.t.nbytes(); })
      .def_property_readonly("itemsize", [](const PyTensor& s) { return itemsize(s.t.dtype); })
      .def_property_readonly("_storage_offset", [](const PyTensor& s) { return s.t.offset; })
      // requires_grad, grad and grad_fn are plain instance attributes (py::dynamic_attr) with
      // class-level defaults set in fastnn/tensor.py: autograd reads them several times per op,
      // and an instance-dict read is ~10x cheaper than a bound C++ accessor.
      .def("dim", [](const PyTensor& s) { return s.t.ndim(); })
      .def("numel", [](const PyTensor& s) { return s.t.numel(); })
      .def("__len__", [](const PyTensor& s) {
        FASTNN_CHECK(s.t.ndim() > 0, TypeError, "len() of a 0-d tensor");
        return s.t.shape[0];
      })
      .def("size", [](const PyTensor& s, py::object dim) -> py::object {
        if (dim.is_none()) return py::tuple(py::cast(s.t.shape));
        return py::int_(s.t.shape[wrap_dim(dim.cast<int64_t>(), s.t.ndim(), "size", "dim")]);
      }, py::arg("dim") = py::none())
      .def("is_contiguous", [](const PyTensor& s) { return s.t.is_contiguous(); })
      .def("data_ptr", [](const PyTensor& s) { return reinterpret_cast<uintptr_t>(s.t.data()); })
      .def("_shares_storage", [](const PyTensor& a, const PyTensor& b) { return a.t.storage == b.t.storage; })
      // views (no copy)
      .def("_view", [](const PyTensor& s, std::vector<int64_t> shape) { return PyTensor(view(s.t, shape, "view")); })
      .def("_reshape", [](const PyTensor& s, std::vector<int64_t> shape) { return PyTensor(reshape(s.t, shape)); })
      .def("_permute", [](const PyTensor& s, std::vector<int64_t> dims) { return PyTensor(permute(s.t, dims)); })
      .def("_transpose", [](const PyTensor& s, int64_t a, int64_t b) { return PyTensor(transpose(s.t, a, b)); })
      .def("_getitem", [](const PyTensor& s, py::handle idx) { return PyTensor(getitem(s.t, idx)); })
      .def("_as_strided", [](const PyTensor& s, std::vector<int64_t> shape, std::vector<int64_t> strides) {
        FASTNN_CHECK(shape.size() == strides.size(), ValueError, "as_strided: shape and strides differ in length");
        Tensor v = s.t;
        v.shape = shape;
        v.strides = strides;
        return PyTensor(v);
      })
      // copies and conversions
      .def("_contiguous", [](const PyTensor& s) {
        py::gil_scoped_release nogil;
        return PyTensor(contiguous(s.t));
      })
      .def("_clone", [](const PyTensor& s) {
        py::gil_scoped_release nogil;
        Tensor out = empty(s.t.shape, s.t.dtype, s.t.device());
        copy_(out, s.t);
        return PyTensor(out);
      })
      .def("_to", [](const PyTensor& s, py::object device, py::object dtype, bool copy) {
        Tensor t = s.t;
        const Device dev = device.is_none() ? t.device() : parse_device(device, "Tensor.to", "device");
        const DType dt = dtype.is_none() ? t.dtype : parse_dtype(dtype, "Tensor.to", "dtype");
        py::gil_scoped_release nogil;
        if (dev == t.device() && dt == t.dtype && !copy) return PyTensor(t);
        Tensor out = empty(t.shape, dt, dev);
        copy_(out, t);
        return PyTensor(out);
      }, py::arg("device") = py::none(), py::arg("dtype") = py::none(), py::arg("copy") = false)
      .def("copy_", [](py::object self, py::handle src) {
        PyTensor& s = self.cast<PyTensor&>();
        Tensor src_t = to_tensor(src, "Tensor.copy_", "src");
        FASTNN_CHECK(src_t.shape == s.t.shape, ValueError, "Tensor.copy_: argument 'src': expected shape ",
                     shape_str(s.t.shape), ", got ", shape_str(src_t.shape));
        if (overlaps(s.t, src_t) && !(s.t.data() == src_t.data() && s.t.strides == src_t.strides)) {
          src_t = contiguous(Tensor(src_t));
          Tensor c = empty(src_t.shape, src_t.dtype, src_t.device());
          copy_(c, src_t);
          src_t = c;
        }
        {
          py::gil_scoped_release nogil;
          copy_(s.t, src_t);
        }
        return self;
      }, py::arg("src"))
      .def("item", [](const PyTensor& s) { return scalar_item(s.t); })
      .def("numpy", [](const PyTensor& s) { return to_numpy(s.t); })
      .def("__dlpack_device__", [](const PyTensor& s) {
        const Device d = s.t.device();
        return py::make_tuple(d.type == DeviceType::cpu ? int(kDLCPU) : int(kDLCUDA), d.index);
      })
      .def("__dlpack__", [](const PyTensor& s, py::object stream, py::object max_version, py::object dl_device,
                            py::object copy) {
        Tensor t = s.t;
        bool copied = false;
        if (!dl_device.is_none()) {
          py::tuple dd = dl_device;
          const int type = dd[0].cast<int>(), id = dd[1].cast<int>();
          Device want;
          if (type == kDLCPU) want = Device{DeviceType::cpu, 0};
          else if (type == kDLCUDA) want = Device{DeviceType::cuda, id};
          else throw py::buffer_error(detail::concat("__dlpack__: argument 'dl_device': unsupported device type ", type));
          if (want != t.device()) {
            if (!copy.is_none() && !copy.cast<bool>())
              throw py::buffer_error("__dlpack__: a copy to another device is needed but copy=False");
            t = to_device(t, want);
            copied = true;
          }
        }
        if (!copied && !copy.is_none() && copy.cast<bool>()) {
          Tensor c = empty(t.shape, t.dtype, t.device());
          copy_(c, t);
          t = c;
          copied = true;
        }
        // DLPack stream argument: None for CPU data; for CUDA an integer, 1 (legacy default),
        // 2 (per-thread default), -1 (no synchronisation wanted) or a cudaStream_t; 0 is
        // disallowed as ambiguous. fastnn works on the legacy default stream, so all prior work
        // is ordered before the consumer's stream once we synchronise.
        if (t.device().type == DeviceType::cpu) {
          FASTNN_CHECK(stream.is_none(), ValueError, "__dlpack__: argument 'stream': expected None for a CPU tensor, got ",
                       std::string(py::repr(stream)));
        } else if (!stream.is_none()) {
          FASTNN_CHECK(py::isinstance<py::int_>(stream), TypeError,
                       "__dlpack__: argument 'stream': expected None or an integer, got ", std::string(py::repr(stream)));
          FASTNN_CHECK(stream.cast<int64_t>() != 0, ValueError,
                       "__dlpack__: argument 'stream': 0 is ambiguous for CUDA (DLPack spec); pass 1 for the legacy "
                       "default stream, 2 for the per-thread default stream or -1 for no synchronisation");
        }
        if (t.device().type == DeviceType::cuda && !(!stream.is_none() && stream.cast<int64_t>() == -1))
          require_cuda_backend().synchronize(t.device().index);
        bool versioned = false;
        if (!max_version.is_none()) {
          py::tuple mv = max_version;
          versioned = mv[0].cast<int>() >= 1;
        }
        return to_dlpack(t, versioned, copied);
      }, py::kw_only(), py::arg("stream") = py::none(), py::arg("max_version") = py::none(),
         py::arg("dl_device") = py::none(), py::arg("copy") = py::none());

  m.def("from_numpy", [](py::handle a) {
    FASTNN_CHECK(py::isinstance<py::array>(a), TypeError, "from_numpy: argument 'a': expected a numpy.ndarray, got ",
                 std::string(py::str(py::type::handle_of(a).attr("__name__"))));
    return PyTensor(from_numpy(py::reinterpret_borrow<py::array>(a), "from_numpy", "a"));
  }, py::arg("a"));
  m.def("from_dlpack", [](py::handle x) { return PyTensor(from_dlpack(x, "from_dlpack", "x")); }, py::arg("x"));
  m.def("as_tensor", [](py::handle x) { return PyTensor(to_tensor(x, "as_tensor", "x")); }, py::arg("x"));
  m.def("empty", [](std::vector<int64_t> shape, py::object dtype, py::object device) {
    const DType dt = parse_dtype(dtype, "empty", "dtype");
    const Device dev = parse_device(device, "empty", "device");
    checked_numel(shape, "shape");
    return PyTensor(empty(shape, dt, dev));
  }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu");
  m.def("zeros", [](std::vector<int64_t> shape, py::object dtype, py::object device) {
    const DType dt = parse_dtype(dtype, "zeros", "dtype");
    const Device dev = parse_device(device, "zeros", "device");
    checked_numel(shape, "shape");
    return PyTensor(zeros(shape, dt, dev));
  }, py::arg("shape"), py::arg("dtype") = "float32", py::arg("device") = "cpu");
  m.def("_parse_device", [](py::handle d) { return device_to_py(parse_device(d, "device", "device")); });
  m.def("_parse_dtype", [](py::handle d) { return parse_dtype(d, "dtype", "dtype"); });
}

}  // namespace fastnn::bindings
