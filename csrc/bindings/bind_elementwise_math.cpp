// Bindings of the elementwise math kernels (fastnn/elementwise_math.h): _C.unary, _C.full,
// _C.compare, _C.gather, _C.scatter_add. Functional (new outputs), CPU and CUDA: the kernels
// run on the inputs' device. Non-contiguous inputs are copied to a contiguous temporary on
// their device first.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "fastnn/elementwise_math.h"

namespace fastnn::bindings {
namespace {

Tensor dense(const Tensor& t) { return t.is_contiguous() ? t : contiguous(t); }

UnaryOp parse_unary(const std::string& s) {
  static const char* names[] = {"exp", "log", "sqrt", "rsqrt", "abs", "sign", "neg",
                                "pow", "rpow", "add", "mul", "rsub", "rdiv", "fill", "div"};
  for (int i = 0; i < 15; ++i)
    if (s == names[i]) return static_cast<UnaryOp>(i);
  throw ValueError("unary: argument 'op': expected one of 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'sign', 'neg', "
                   "'pow', 'rpow', 'add', 'mul', 'rsub', 'rdiv', 'fill', 'div', got '" + s + "'");
}

CompareOp parse_compare(const std::string& s) {
  static const char* names[] = {"eq", "ne", "lt", "le", "gt", "ge"};
  for (int i = 0; i < 6; ++i)
    if (s == names[i]) return static_cast<CompareOp>(i);
  throw ValueError("compare: argument 'op': expected 'eq', 'ne', 'lt', 'le', 'gt' or 'ge', got '" + s + "'");
}

// The kernel on `dev`: the named CUDA op or the CPU function, without the GIL.
template <class Args>
void run_kernel(const Device& dev, const char* cuda_name, const Args& a, void (*cpu_fn)(const Args&)) {
  without_gil([&] {
    if (dev.type == DeviceType::cuda) cuda_op(cuda_name, a, dev.index);
    else cpu_fn(a);
  });
}

Tensor run_unary(const Tensor& x, const Shape& shape, const Device& dev, UnaryOp uop, float s) {
  Tensor y = empty(shape, DType::float32, dev);
  UnaryArgs a{uop, y.numel(), x.defined() ? x.data_as<float>() : nullptr, y.data_as<float>(), s};
  if (a.n > 0) run_kernel(dev, "ewm_unary", a, &cpu::unary);
  return y;
}

bool is_number(py::handle o) { return py::isinstance<py::float_>(o) || py::isinstance<py::int_>(o); }

// The index arrays of gather / scatter_add: int64 tensors of one shape on `dev`, at most
// kMaxIndexArrays and at most the indexed tensor's ndim; each checked against its
// dimension (IndexError naming the array, the value and its position).
struct IndexArrays {
  std::vector<Tensor> ts;
  int64_t n = 0;
  Shape shape;
};

IndexArrays index_arrays(py::handle seq, const Shape& x_shape, const Device& dev, const char* op) {
  IndexArrays r;
  r.ts = to_tensor_list(seq, op, "indices");
  const size_t k = r.ts.size();
  FASTNN_CHECK(k >= 1 && k <= static_cast<size_t>(kMaxIndexArrays) && k <= x_shape.size(), ValueError, op,
               ": argument 'indices': expected 1 to min(", kMaxIndexArrays, ", ndim = ", x_shape.size(),
               ") index tensors, got ", k);
  for (size_t j = 0; j < k; ++j) {
    const std::string name = detail::concat("indices[", j, "]");
    Tensor& t = r.ts[j];
    expect_dtype(t, DType::int64, op, name.c_str());
    expect_same_device(t, dev, op, name.c_str());
    if (j == 0) r.shape = t.shape;
    FASTNN_CHECK(t.shape == r.shape, ValueError, op, ": argument '", name, "': expected shape ", shape_str(r.shape),
                 " (the shape of 'indices[0]'; broadcast the index arrays first), got ", shape_str(t.shape));
    t = dense(t);
  }
  r.n = r.ts[0].numel();
  return r;
}

[[noreturn]] void throw_bad_index(const IndexArrays& ix, const Shape& x_shape, int64_t pos, int j, int64_t v,
                                  const char* op) {
  throw IndexError(detail::concat(op, ": argument 'indices[", j, "]': index ", v, " at flat position ", pos,
                                  " is out of bounds for dimension ", j, " with size ", x_shape[j]));
}

void check_index_range(const IndexArrays& ix, const Shape& x_shape, const Device& dev, const char* op) {
  const int k = static_cast<int>(ix.ts.size());
  if (ix.n == 0) return;
  if (dev.type == DeviceType::cpu) {
    for (int j = 0; j < k; ++j) {
      const int64_t* p = ix.ts[j].data_as<int64_t>();
      const int64_t d = x_shape[j];
      for (int64_t b = 0; b < ix.n; ++b)
        if (p[b] < -d || p[b] >= d) throw_bad_index(ix, x_shape, b, j, p[b], op);
    }
    return;
  }
  // CUDA: a kernel finds the first bad position; reading it back is one device->host copy.
  Tensor flag = empty({1}, DType::int64, dev);
  GatherIndexCheckArgs a;
  a.k = k;
  a.n_idx = ix.n;
  for (int j = 0; j < k; ++j) {
    a.dims[j] = x_shape[j];
    a.idx[j] = ix.ts[j].data_as<int64_t>();
  }
  a.first_bad = static_cast<unsigned long long*>(flag.data());
  without_gil([&] { cuda_op("ewm_index_check", a, dev.index); });
  const int64_t bad = *to_device(flag, Device{}).data_as<int64_t>();
  if (bad >= ix.n) return;
  for (int j = 0; j < k; ++j) {  // which array: read the offending entries (error path only)
    Tensor host = to_device(ix.ts[j], Device{});
    const int64_t v = host.data_as<int64_t>()[bad];
    if (v < -x_shape[j] || v >= x_shape[j]) throw_bad_index(ix, x_shape, bad, j, v, op);
  }
}

void fill_index_args(IndexedRows& a, const IndexArrays& ix, const Shape& x_shape) {
  a.k = static_cast<int>(ix.ts.size());
  a.n_idx = ix.n;
  a.inner = 1;
  for (size_t d = ix.ts.size(); d < x_shape.size(); ++d) a.inner *= x_shape[d];
  for (int j = 0; j < a.k; ++j) {
    a.dims[j] = x_shape[j];
    a.idx[j] = ix.ts[j].data_as<int64_t>();
  }
}

Shape gathered_shape(const IndexArrays& ix, const Shape& x_shape) {
  Shape s = ix.shape;
  s.insert(s.end(), x_shape.begin() + static_cast<int64_t>(ix.ts.size()), x_shape.end());
  return s;
}

}  // namespace

FASTNN_BINDINGS(elementwise_math) {
  m.def(
      "unary",
      [](py::handle x, const std::string& opname, float scalar) {
        const char* op = "unary";
        UnaryOp uop = parse_unary(opname);
        Tensor xt = to_tensor(x, op, "x");
        expect_float32(xt, op, "x");
        xt = dense(xt);
        return wrap(run_unary(xt, xt.shape, xt.device(), uop, scalar));
      },
      py::arg("x"), py::arg("op"), py::arg("scalar") = 0.0f,
      "y = op(x, scalar) elementwise, float32: exp log sqrt rsqrt abs sign neg, pow (x**scalar), "
      "rpow (scalar**x), add mul div (x / scalar) rsub (scalar - x) rdiv (scalar / x), fill (scalar).");
  m.def(
      "full",
      [](const Shape& shape, float value, py::object device) {
        const Device dev = parse_device(device, "full", "device");
        checked_numel(shape, "shape");
        return wrap(run_unary(Tensor(), shape, dev, UnaryOp::fill, value));
      },
      py::arg("shape"), py::arg("value"), py::arg("device") = "cpu", "A float32 tensor of `shape` filled with value.");

  m.def(
      "compare",
      [](py::handle a, py::handle b, const std::string& opname) {
        const char* op = "compare";
        CompareArgs args;
        args.op = parse_compare(opname);
        Tensor at = dense(to_tensor(a, op, "a"));
        FASTNN_CHECK(at.dtype == DType::float32 || at.dtype == DType::int64 || at.dtype == DType::int32, TypeError, op,
                     ": argument 'a': expected dtype float32, int64 or int32, got ", dtype_name(at.dtype));
        args.dtype = at.dtype;
        Tensor bt;
        if (py::isinstance<py::bool_>(b) || !is_number(b)) {
          bt = dense(to_tensor(b, op, "b"));
          FASTNN_CHECK(bt.dtype == at.dtype, TypeError, op, ": argument 'b': expected dtype ", dtype_name(at.dtype),
                       " (the dtype of 'a'), got ", dtype_name(bt.dtype));
          expect_same_device(bt, at.device(), op, "b");
        } else {
          args.b_scalar = b.cast<double>();
        }
        const int64_t nd = std::max(at.ndim(), bt.defined() ? bt.ndim() : int64_t{0});
        FASTNN_CHECK(nd <= kMaxCompareDims, ValueError, op, ": expected at most ", kMaxCompareDims,
                     " dimensions, got ", nd);
        args.ndim = static_cast<int>(nd);
        Shape out_shape(static_cast<size_t>(nd));
        for (int64_t d = 0; d < nd; ++d) {
          const int64_t da = d - (nd - at.ndim());
          const int64_t db = bt.defined() ? d - (nd - bt.ndim()) : -1;
          const int64_t sa = da >= 0 ? at.shape[da] : 1, sb = db >= 0 ? bt.shape[db] : 1;
          FASTNN_CHECK(sa == sb || sa == 1 || sb == 1, ValueError, op, ": arguments 'a' and 'b': shapes ",
                       shape_str(at.shape), " and ", shape_str(bt.shape), " cannot be broadcast together (dimension ",
                       d, ": ", sa, " vs ", sb, ")");
          out_shape[d] = args.shape[d] = sa == 1 ? sb : sa;
          args.a_strides[d] = (sa == 1 || da < 0) ? 0 : at.strides[da];
          args.b_strides[d] = (sb == 1 || db < 0) ? 0 : bt.strides[db];
        }
        const Device dev = at.device();
        Tensor out = empty(out_shape, DType::bool_, dev);
        args.a = at.data();
        args.b = bt.defined() ? bt.data() : nullptr;
        args.out = static_cast<uint8_t*>(out.data());
        if (out.numel() > 0) run_kernel(dev, "ewm_compare", args, &cpu::compare);
        return wrap(out);
      },
      py::arg("a"), py::arg("b"), py::arg("op"),
      "a op b (eq ne lt le gt ge) with NumPy broadcasting -> bool tensor; b a tensor of a's dtype or a number.");

  m.def(
      "gather",
      [](py::handle x, py::handle indices) {
        const char* op = "gather";
        Tensor xt = dense(to_tensor(x, op, "x"));
        const Device dev = xt.device();
        IndexArrays ix = index_arrays(indices, xt.shape, dev, op);
        check_index_range(ix, xt.shape, dev, op);
        Tensor out = empty(gathered_shape(ix, xt.shape), xt.dtype, dev);
        GatherArgs a;
        fill_index_args(a, ix, xt.shape);
        a.elem_size = static_cast<int>(itemsize(xt.dtype));
        a.x = xt.data();
        a.out = out.data();
        if (out.numel() > 0) run_kernel(dev, "ewm_gather", a, &cpu::gather);
        return wrap(out);
      },
      py::arg("x"), py::arg("indices"),
      "out[b, ...] = x[indices[0][b], ..., indices[k-1][b], ...] (advanced indexing over the leading k dims; "
      "index arrays int64 of one shape, negative values count from the end).");
  m.def(
      "scatter_add",
      [](py::handle grad_out, py::handle indices, const Shape& shape) {
        const char* op = "scatter_add";
        Tensor g = to_tensor(grad_out, op, "grad_out");
        expect_float32(g, op, "grad_out");
        g = dense(g);
        const Device dev = g.device();
        checked_numel(shape, "shape");
        IndexArrays ix = index_arrays(indices, shape, dev, op);
        expect_shape(g, gathered_shape(ix, shape), op, "grad_out");
        check_index_range(ix, shape, dev, op);
        Tensor gx = empty(shape, DType::float32, dev);
        ScatterAddArgs a;
        fill_index_args(a, ix, shape);
        a.grad_out = g.data_as<float>();
        a.grad_x = gx.data_as<float>();
        if (gx.numel() > 0) run_kernel(dev, "ewm_scatter_add", a, &cpu::scatter_add);
        return wrap(gx);
      },
      py::arg("grad_out"), py::arg("indices"), py::arg("shape"),
      "The backward of gather: zeros of `shape`, then grad_x[indices[:][b], ...] += grad_out[b, ...] "
      "(deterministic: summed in index order).");
}

}  // namespace fastnn::bindings
