// Bindings of the training kernels (fastnn/nn_kernels.h). Functional: new output tensors.
// Inputs: float32 (TypeError otherwise), any strides (non-contiguous inputs are copied to a
// contiguous temporary first, on their device). CPU tensors run fastnn::cpu::*, CUDA
// tensors the kernels/nn_*.cu launchers (named ops "nn_*", csrc/cuda_backend/nn_ops.cpp):
// outputs are allocated on the inputs' device and no data crosses the bus. Index tensors
// (cross-entropy targets, embedding indices, max_backward indices) on CUDA are range-checked
// on the device before the kernel runs: one small kernel + ONE stream synchronisation per
// call, the verdict read from pinned memory (no cudaMemcpy), so a bad index raises the same
// IndexError as on the CPU instead of a wrong result or an out-of-bounds access.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "core/cuda_backend.h"
#include "fastnn/nn_kernels.h"

namespace fastnn::bindings {
namespace {

bool on_cuda(const Tensor& t) { return t.device().type == DeviceType::cuda; }

// Runs the CPU kernel or the named CUDA op for `dev`, without the GIL.
template <typename Args>
void run_kernel(const Device& dev, const char* cuda_name, void (*cpu_fn)(const Args&), const Args& a) {
  without_gil([&] {
    if (dev.type == DeviceType::cuda) cuda_op(cuda_name, a, dev.index);
    else cpu_fn(a);
  });
}

Tensor in_f32(py::handle obj, const char* op, const char* arg) {
  Tensor t = to_tensor(obj, op, arg);
  expect_float32(t, op, arg);
  return t.is_contiguous() ? t : contiguous(t);
}
// ... and on the device of `ref`
Tensor in_f32_on(py::handle obj, const Tensor& ref, const char* op, const char* arg) {
  Tensor t = in_f32(obj, op, arg);
  expect_same_device(t, ref.device(), op, arg);
  return t;
}
Tensor in_f32_or_none(py::handle obj, const Tensor& ref, const char* op, const char* arg) {
  if (obj.is_none()) return Tensor();
  return in_f32_on(obj, ref, op, arg);
}
Tensor in_index(py::handle obj, const char* op, const char* arg) {
  Tensor t = to_tensor(obj, op, arg);
  FASTNN_CHECK(t.dtype == DType::int64 || t.dtype == DType::int32, TypeError, op, ": argument '", arg,
               "': expected dtype int64 or int32, got ", dtype_name(t.dtype));
  return t.is_contiguous() ? t : contiguous(t);
}
int64_t index_at(const Tensor& t, int64_t i) {
  return t.dtype == DType::int64 ? t.data_as<int64_t>()[i] : static_cast<int64_t>(t.data_as<int32_t>()[i]);
}
// IndexError naming the first index outside [0, bound) (other than `allowed`). CUDA
// tensors are checked on the device (nn_index_check: one synchronisation, no copy).
void check_indices(const Tensor& t, int64_t bound, const char* op, const char* arg, bool has_allowed,
                   int64_t allowed) {
  const int64_t n = t.numel();
  int64_t pos = -1, value = 0;
  if (on_cuda(t)) {
    IndexCheckArgs a;
    a.n = n;
    a.indices = t.data();
    a.indices_int64 = t.dtype == DType::int64;
    a.bound = bound;
    a.has_allowed = has_allowed;
    a.allowed = allowed;
    a.bad_position = &pos;
    a.bad_value = &value;
    without_gil([&] { cuda_op("nn_index_check", a, t.device().index); });
  } else {
    for (int64_t i = 0; i < n && pos < 0; ++i) {
      const int64_t v = index_at(t, i);
      if ((v < 0 || v >= bound) && !(has_allowed && v == allowed)) {
        pos = i;
        value = v;
      }
    }
  }
  if (pos >= 0) {
    throw IndexError(detail::concat(op, ": argument '", arg, "': value ", value, " at flat position ", pos,
                                    " is out of range [0, ", bound, ")",
                                    has_allowed ? detail::concat(" (ignore_index is ", allowed, ")") : std::string()));
  }
}
// A float32 tensor of `shape` on `dev` filled with `value` (no host->device copy on CUDA).
Tensor full_on(const Shape& shape, float value, const Device& dev) {
  Tensor t = empty(shape, DType::float32, dev);
  const int64_t n = t.numel();
  if (dev.type == DeviceType::cuda) {
    FillArgs f{n, t.data_as<float>(), value};
    without_gil([&] { cuda_op("nn_fill", f, dev.index); });
  } else {
    float* p = t.data_as<float>();
    for (int64_t i = 0; i < n; ++i) p[i] = value;
  }
  return t;
}

Activation parse_act(const std::string& s, const char* op) {
  if (s == "relu") return Activation::relu;
  if (s == "gelu") return Activation::gelu;
  if (s == "gelu_tanh") return Activation::gelu_tanh;
  if (s == "sigmoid") return Activation::sigmoid;
  if (s == "tanh") return Activation::tanh;
  if (s == "silu") return Activation::silu;
  throw ValueError(detail::concat(op, ": argument 'activation': expected 'relu', 'gelu', 'gelu_tanh', 'sigmoid', ",
                                  "'tanh' or 'silu', got '", s, "'"));
}
Reduction parse_reduction(const std::string& s, const char* op) {
  if (s == "mean") return Reduction::mean;
  if (s == "sum") return Reduction::sum;
  if (s == "none") return Reduction::none;
  throw ValueError(detail::concat(op, ": argument 'reduction': expected 'mean', 'sum' or 'none', got '", s, "'"));
}
void expect_same_shape(const Tensor& t, const Tensor& ref, const char* op, const char* arg, const char* ref_arg) {
  FASTNN_CHECK(t.shape == ref.shape, ValueError, op, ": argument '", arg, "': expected shape ", shape_str(ref.shape),
               " (the shape of '", ref_arg, "'), got ", shape_str(t.shape));
}
Shape without_last(const Shape& s) { return Shape(s.begin(), s.end() - 1); }
int64_t rows_of(const Tensor& t) {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) r *= t.shape[i];
  return r;
}
// grad_loss: None, a number, or a tensor of the loss's shape
Tensor grad_loss_arg(py::handle obj, const Shape& loss_shape, const Tensor& ref, const char* op) {
  if (obj.is_none()) return Tensor();
  if (py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj)) {
    FASTNN_CHECK(loss_shape.empty(), ValueError, op, ": argument 'grad_loss': expected a tensor of shape ",
                 shape_str(loss_shape), " for reduction='none', got a number");
    return full_on({}, obj.cast<float>(), ref.device());
  }
  Tensor t = in_f32_on(obj, ref, op, "grad_loss");
  FASTNN_CHECK(t.numel() == checked_numel(loss_shape, "grad_loss") && (t.shape == loss_shape || loss_shape.empty()),
               ValueError, op, ": argument 'grad_loss': expected shape ", shape_str(loss_shape), ", got ",
               shape_str(t.shape));
  return t;
}
int norm_axis(int64_t axis, int64_t ndim, const char* op) {
  const int64_t nd = std::max<int64_t>(ndim, 1);
  FASTNN_CHECK(axis >= -nd && axis < nd, IndexError, op, ": argument 'axis': expected a value in [", -nd, ", ", nd,
               "), got ", axis);
  return static_cast<int>(axis < 0 ? axis + nd : axis);
}

}  // namespace

FASTNN_BINDINGS(nn) {
  m.def(
      "activation",
      [](py::handle x, const std::string& act) {
        const char* op = "activation";
        Activation a = parse_act(act, op);
        Tensor xt = in_f32(x, op, "x");
        Tensor y = empty(xt.shape, DType::float32, xt.device());
        ActivationArgs args{a, xt.numel(), xt.data_as<float>(), y.data_as<float>()};
        run_kernel(xt.device(), "nn_activation", &cpu::activation, args);
        return wrap(y);
      },
      py::arg("x"), py::arg("activation"));
  m.def(
      "activation_backward",
      [](py::handle grad_y, py::handle x, const std::string& act) {
        const char* op = "activation_backward";
        Activation a = parse_act(act, op);
        Tensor xt = in_f32(x, op, "x");
        Tensor gy = in_f32_on(grad_y, xt, op, "grad_y");
        expect_same_shape(gy, xt, op, "grad_y", "x");
        Tensor gx = empty(xt.shape, DType::float32, xt.device());
        ActivationBackwardArgs args{a, xt.numel(), xt.data_as<float>(), gy.data_as<float>(), gx.data_as<float>()};
        run_kernel(xt.device(), "nn_activation_backward", &cpu::activation_backward, args);
        return wrap(gx);
      },
      py::arg("grad_y"), py::arg("x"), py::arg("activation"));

  m.def(
      "softmax",
      [](py::handle x, bool log) {
        const char* op = log ? "log_softmax" : "softmax";
        Tensor xt = in_f32(x, op, "x");
        expect_min_ndim(xt, 1, op, "x");
        Tensor y = empty(xt.shape, DType::float32, xt.device());
        SoftmaxArgs a{rows_of(xt), xt.shape.back(), xt.data_as<float>(), y.data_as<float>(), log};
        if (xt.numel() > 0) run_kernel(xt.device(), "nn_softmax", &cpu::softmax, a);
        return wrap(y);
      },
      py::arg("x"), py::arg("log"));
  m.def(
      "softmax_backward",
      [](py::handle grad_y, py::handle y, bool log) {
        const char* op = log ? "log_softmax_backward" : "softmax_backward";
        Tensor yt = in_f32(y, op, "y");
        expect_min_ndim(yt, 1, op, "y");
        Tensor gy = in_f32_on(grad_y, yt, op, "grad_y");
        expect_same_shape(gy, yt, op, "grad_y", "y");
        Tensor gx = empty(yt.shape, DType::float32, yt.device());
        SoftmaxBackwardArgs a{rows_of(yt), yt.shape.back(), yt.data_as<float>(), gy.data_as<float>(),
                              gx.data_as<float>(), log};
        if (yt.numel() > 0) run_kernel(yt.device(), "nn_softmax_backward", &cpu::softmax_backward, a);
        return wrap(gx);
      },
      py::arg("grad_y"), py::arg("y"), py::arg("log"));

  m.def(
      "cross_entropy",
      [](py::handle logits, py::handle target, double label_smoothing, int64_t ignore_index,
         const std::string& reduction, bool need_loss, bool need_grad, py::handle grad_loss) {
        const char* op = "cross_entropy";
        Reduction red = parse_reduction(reduction, op);
        Tensor x = in_f32(logits, op, "logits");
        FASTNN_CHECK(x.ndim() == 2 || x.ndim() == 1, ValueError, op,
                     ": argument 'logits': expected a 2-D (batch, classes) or 1-D (classes) tensor, got shape ",
                     shape_str(x.shape));
        Tensor t = in_index(target, op, "target");
        expect_same_device(t, x.device(), op, "target");
        const Shape batch_shape = x.ndim() == 2 ? Shape{x.shape[0]} : Shape{};
        FASTNN_CHECK(t.shape == batch_shape, ValueError, op, ": argument 'target': expected shape ",
                     shape_str(batch_shape), " for logits of shape ", shape_str(x.shape), ", got ", shape_str(t.shape));
        FASTNN_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, ValueError, op,
                     ": argument 'label_smoothing': expected a value in [0, 1], got ", label_smoothing);
        const int64_t classes = x.shape.back();
        check_indices(t, classes, op, "target", true, ignore_index);
        const Shape loss_shape = red == Reduction::none ? batch_shape : Shape{};
        Tensor gl = grad_loss_arg(grad_loss, loss_shape, x, op);
        Tensor loss = empty(loss_shape, DType::float32, x.device());
        Tensor grad = need_grad ? empty(x.shape, DType::float32, x.device()) : Tensor();
        CrossEntropyArgs a;
        a.rows = x.ndim() == 2 ? x.shape[0] : 1;
        a.classes = classes;
        a.logits = x.data_as<float>();
        a.target = t.data();
        a.target_int64 = t.dtype == DType::int64;
        a.ignore_index = ignore_index;
        a.label_smoothing = static_cast<float>(label_smoothing);
        a.reduction = red;
        a.loss = loss.data_as<float>();
        a.grad_logits = need_grad ? grad.data_as<float>() : nullptr;
        a.grad_loss = gl.defined() ? gl.data_as<float>() : nullptr;
        run_kernel(x.device(), "nn_cross_entropy", &cpu::cross_entropy, a);
        return py::make_tuple(need_loss ? wrap(loss) : py::none(), need_grad ? wrap(grad) : py::none());
      },
      py::arg("logits"), py::arg("target"), py::arg("label_smoothing"), py::arg("ignore_index"), py::arg("reduction"),
      py::arg("need_loss"), py::arg("need_grad"), py::arg("grad_loss"));

  m.def(
      "bce_with_logits",
      [](py::handle x, py::handle target, py::handle pos_weight, const std::string& reduction, bool need_grad,
         py::handle grad_loss) {
        const char* op = "binary_cross_entropy_with_logits";
        Reduction red = parse_reduction(reduction, op);
        Tensor xt = in_f32(x, op, "logits");
        Tensor yt = in_f32_on(target, xt, op, "target");
        expect_same_shape(yt, xt, op, "target", "logits");
        Tensor pw = in_f32_or_none(pos_weight, xt, op, "pos_weight");
        int64_t pw_size = 1;
        if (pw.defined()) {
          const int64_t last = xt.ndim() ? xt.shape.back() : 1;
          FASTNN_CHECK(pw.numel() == last && pw.ndim() <= 1, ValueError, op,
                       ": argument 'pos_weight': expected shape (", last,
                       ",) (the last dimension of 'logits'), got ", shape_str(pw.shape));
          pw_size = last;
        }
        const Shape loss_shape = red == Reduction::none ? xt.shape : Shape{};
        Tensor gl = grad_loss_arg(grad_loss, loss_shape, xt, op);
        Tensor loss = empty(loss_shape, DType::float32, xt.device());
        Tensor grad = need_grad ? empty(xt.shape, DType::float32, xt.device()) : Tensor();
        BceWithLogitsArgs a;
        a.n = xt.numel();
        a.x = xt.data_as<float>();
        a.target = yt.data_as<float>();
        a.pos_weight = pw.defined() ? pw.data_as<float>() : nullptr;
        a.pw_size = pw_size;
        a.reduction = red;
        a.loss = loss.data_as<float>();
        a.grad_x = need_grad ? grad.data_as<float>() : nullptr;
        a.grad_loss = gl.defined() ? gl.data_as<float>() : nullptr;
        if (a.pos_weight && pw_size == 0) a.pos_weight = nullptr;
        run_kernel(xt.device(), "nn_bce_with_logits", &cpu::bce_with_logits, a);
        return py::make_tuple(wrap(loss), need_grad ? wrap(grad) : py::none());
      },
      py::arg("logits"), py::arg("target"), py::arg("pos_weight"), py::arg("reduction"), py::arg("need_grad"),
      py::arg("grad_loss"));

  m.def(
      "mse_loss",
      [](py::handle input, py::handle target, const std::string& reduction, bool need_grad, py::handle grad_loss) {
        const char* op = "mse_loss";
        Reduction red = parse_reduction(reduction, op);
        Tensor at = in_f32(input, op, "input");
        Tensor bt = in_f32_on(target, at, op, "target");
        expect_same_shape(bt, at, op, "target", "input");
        const Shape loss_shape = red == Reduction::none ? at.shape : Shape{};
        Tensor gl = grad_loss_arg(grad_loss, loss_shape, at, op);
        Tensor loss = empty(loss_shape, DType::float32, at.device());
        Tensor grad = need_grad ? empty(at.shape, DType::float32, at.device()) : Tensor();
        MseArgs a;
        a.n = at.numel();
        a.a = at.data_as<float>();
        a.b = bt.data_as<float>();
        a.reduction = red;
        a.loss = loss.data_as<float>();
        a.grad_a = need_grad ? grad.data_as<float>() : nullptr;
        a.grad_loss = gl.defined() ? gl.data_as<float>() : nullptr;
        run_kernel(at.device(), "nn_mse", &cpu::mse, a);
        return py::make_tuple(wrap(loss), need_grad ? wrap(grad) : py::none());
      },
      py::arg("input"), py::arg("target"), py::arg("reduction"), py::arg("need_grad"), py::arg("grad_loss"));

  m.def(
      "layer_norm",
      [](py::handle x, py::handle weight, py::handle bias, double eps) {
        const char* op = "layer_norm";
        Tensor xt = in_f32(x, op, "x");
        expect_min_ndim(xt, 1, op, "x");
        FASTNN_CHECK(eps > 0.0 && std::isfinite(eps), ValueError, op, ": argument 'eps': expected a finite value > 0, got ",
                     eps);
        const Shape wshape{xt.shape.back()};
        Tensor w = in_f32_or_none(weight, xt, op, "weight");
        Tensor b = in_f32_or_none(bias, xt, op, "bias");
        if (w.defined()) expect_shape(w, wshape, op, "weight");
        if (b.defined()) expect_shape(b, wshape, op, "bias");
        Tensor y = empty(xt.shape, DType::float32, xt.device());
        const Shape rshape = without_last(xt.shape);
        Tensor mean = empty(rshape, DType::float32, xt.device());
        Tensor rstd = empty(rshape, DType::float32, xt.device());
        LayerNormArgs a;
        a.rows = rows_of(xt);
        a.cols = xt.shape.back();
        a.x = xt.data_as<float>();
        a.weight = w.defined() ? w.data_as<float>() : nullptr;
        a.bias = b.defined() ? b.data_as<float>() : nullptr;
        a.eps = static_cast<float>(eps);
        a.y = y.data_as<float>();
        a.mean = mean.data_as<float>();
        a.rstd = rstd.data_as<float>();
        if (xt.numel() > 0) run_kernel(xt.device(), "nn_layer_norm", &cpu::layer_norm, a);
        return py::make_tuple(wrap(y), wrap(mean), wrap(rstd));
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"));
  m.def(
      "layer_norm_backward",
      [](py::handle grad_y, py::handle x, py::handle weight, py::handle mean, py::handle rstd, bool need_weight,
         bool need_bias) {
        const char* op = "layer_norm_backward";
        Tensor xt = in_f32(x, op, "x");
        expect_min_ndim(xt, 1, op, "x");
        Tensor gy = in_f32_on(grad_y, xt, op, "grad_y");
        expect_same_shape(gy, xt, op, "grad_y", "x");
        const Shape rshape = without_last(xt.shape);
        const Shape wshape{xt.shape.back()};
        Tensor mt = in_f32_on(mean, xt, op, "mean");
        Tensor rt = in_f32_on(rstd, xt, op, "rstd");
        expect_shape(mt, rshape, op, "mean");
        expect_shape(rt, rshape, op, "rstd");
        Tensor w = in_f32_or_none(weight, xt, op, "weight");
        if (w.defined()) expect_shape(w, wshape, op, "weight");
        Tensor gx = empty(xt.shape, DType::float32, xt.device());
        Tensor gw = need_weight ? empty(wshape, DType::float32, xt.device()) : Tensor();
        Tensor gb = need_bias ? empty(wshape, DType::float32, xt.device()) : Tensor();
        LayerNormBackwardArgs a;
        a.rows = rows_of(xt);
        a.cols = xt.shape.back();
        a.x = xt.data_as<float>();
        a.weight = w.defined() ? w.data_as<float>() : nullptr;
        a.mean = mt.data_as<float>();
        a.rstd = rt.data_as<float>();
        a.grad_y = gy.data_as<float>();
        a.grad_x = gx.data_as<float>();
        a.grad_weight = need_weight ? gw.data_as<float>() : nullptr;
        a.grad_bias = need_bias ? gb.data_as<float>() : nullptr;
        if (a.cols > 0) run_kernel(xt.device(), "nn_layer_norm_backward", &cpu::layer_norm_backward, a);
        return py::make_tuple(wrap(gx), need_weight ? wrap(gw) : py::none(), need_bias ? wrap(gb) : py::none());
      },
      py::arg("grad_y"), py::arg("x"), py::arg("weight"), py::arg("mean"), py::arg("rstd"), py::arg("need_weight"),
      py::arg("need_bias"));

  m.def(
      "dropout",
      [](py::handle x, double p, uint64_t seed, uint64_t offset) {
        const char* op = "dropout";
        FASTNN_CHECK(p >= 0.0 && p <= 1.0, ValueError, op, ": argument 'p': expected a probability in [0, 1], got ", p);
        Tensor xt = in_f32(x, op, "x");
        Tensor y = empty(xt.shape, DType::float32, xt.device());
        DropoutArgs a;
        a.n = xt.numel();
        a.x = xt.data_as<float>();
        a.y = y.data_as<float>();
        a.p = static_cast<float>(p);
        a.seed = seed;
        a.offset = offset;
        run_kernel(xt.device(), "nn_dropout", &cpu::dropout, a);
        return wrap(y);
      },
      py::arg("x"), py::arg("p"), py::arg("seed"), py::arg("offset"));

  m.def(
      "embedding",
      [](py::handle indices, py::handle table) {
        const char* op = "embedding";
        Tensor idx = in_index(indices, op, "indices");
        Tensor tb = in_f32(table, op, "table");
        expect_same_device(idx, tb.device(), op, "indices");
        expect_ndim(tb, 2, op, "table");
        check_indices(idx, tb.shape[0], op, "indices", false, 0);
        Shape oshape = idx.shape;
        oshape.push_back(tb.shape[1]);
        Tensor out = empty(oshape, DType::float32, tb.device());
        EmbeddingArgs a;
        a.num_indices = idx.numel();
        a.dim = tb.shape[1];
        a.indices = idx.data();
        a.indices_int64 = idx.dtype == DType::int64;
        a.table = tb.data_as<float>();
        a.out = out.data_as<float>();
        run_kernel(tb.device(), "nn_embedding", &cpu::embedding, a);
        return wrap(out);
      },
      py::arg("indices"), py::arg("table"));
  m.def(
      "embedding_backward",
      [](py::handle grad_out, py::handle indices, int64_t num_weights, bool deterministic) {
        const char* op = "embedding_backward";
        FASTNN_CHECK(num_weights >= 0, ValueError, op, ": argument 'num_weights': expected a value >= 0, got ",
                     num_weights);
        Tensor idx = in_index(indices, op, "indices");
        Tensor go = in_f32(grad_out, op, "grad_out");
        expect_same_device(idx, go.device(), op, "indices");
        FASTNN_CHECK(go.ndim() == idx.ndim() + 1 && Shape(go.shape.begin(), go.shape.end() - 1) == idx.shape,
                     ValueError, op, ": argument 'grad_out': expected shape ", shape_str(idx.shape),
                     " + (dim,) (the shape of 'indices' plus the embedding dimension), got ", shape_str(go.shape));
        check_indices(idx, num_weights, op, "indices", false, 0);
        const int64_t dim = go.shape.back();
        Tensor gt = empty({num_weights, dim}, DType::float32, go.device());
        EmbeddingBackwardArgs a;
        a.num_indices = idx.numel();
        a.dim = dim;
        a.num_weights = num_weights;
        a.indices = idx.data();
        a.indices_int64 = idx.dtype == DType::int64;
        a.grad_out = go.data_as<float>();
        a.grad_table = gt.data_as<float>();
        if (on_cuda(go)) {
          EmbeddingBackwardCudaArgs ca{a, deterministic};
          without_gil([&] { cuda_op("nn_embedding_backward", ca, go.device().index); });
        } else {
          without_gil([&] { cpu::embedding_backward(a); });  // always deterministic
        }
        return wrap(gt);
      },
      // deterministic: CUDA only (the CPU kernel always is). False: atomics, the summation
      // order of duplicate indices varies run to run; True: bitwise reproducible, slower
      // for large vocabularies (kernels/nn_embedding.cu).
      py::arg("grad_out"), py::arg("indices"), py::arg("num_weights"), py::arg("deterministic") = false);

  m.def(
      "binary",
      [](py::handle a, py::handle b, const std::string& opname) {
        BinaryOp bop;
        if (opname == "add") bop = BinaryOp::add;
        else if (opname == "sub") bop = BinaryOp::sub;
        else if (opname == "mul") bop = BinaryOp::mul;
        else if (opname == "div") bop = BinaryOp::div;
        else throw ValueError("binary: argument 'op': expected 'add', 'sub', 'mul' or 'div', got '" + opname + "'");
        const char* op = opname.c_str();
        Tensor at = in_f32(a, op, "a");
        Tensor bt = in_f32_on(b, at, op, "b");
        const int64_t nd = std::max(at.ndim(), bt.ndim());
        FASTNN_CHECK(nd <= kMaxBroadcastDims, ValueError, op, ": expected at most ", kMaxBroadcastDims,
                     " dimensions, got ", nd);
        BinaryArgs args;
        args.op = bop;
        args.ndim = static_cast<int>(nd);
        Shape out_shape(static_cast<size_t>(nd));
        for (int64_t d = 0; d < nd; ++d) {
          const int64_t da = d - (nd - at.ndim()), db = d - (nd - bt.ndim());
          const int64_t sa = da >= 0 ? at.shape[da] : 1, sb = db >= 0 ? bt.shape[db] : 1;
          FASTNN_CHECK(sa == sb || sa == 1 || sb == 1, ValueError, op, ": arguments 'a' and 'b': shapes ",
                       shape_str(at.shape), " and ", shape_str(bt.shape), " cannot be broadcast together (dimension ",
                       d, ": ", sa, " vs ", sb, ")");
          const int64_t so = sa == 1 ? sb : sa;
          out_shape[d] = so;
          args.shape[d] = so;
          args.a_strides[d] = (sa == 1 || da < 0) ? 0 : at.strides[da];
          args.b_strides[d] = (sb == 1 || db < 0) ? 0 : bt.strides[db];
        }
        Tensor out = empty(out_shape, DType::float32, at.device());
        args.a = at.data_as<float>();
        args.b = bt.data_as<float>();
        args.out = out.data_as<float>();
        if (out.numel() > 0) run_kernel(at.device(), "nn_binary", &cpu::binary, args);
        return wrap(out);
      },
      py::arg("a"), py::arg("b"), py::arg("op"));

  // x broadcast (NumPy rules) to `shape`: a contiguous copy.
  m.def(
      "broadcast_to",
      [](py::handle x, const Shape& shape) {
        const char* op = "broadcast_to";
        Tensor xt = in_f32(x, op, "x");
        const int64_t nd = static_cast<int64_t>(shape.size());
        FASTNN_CHECK(nd >= xt.ndim() && nd <= kMaxBroadcastDims, ValueError, op, ": argument 'shape': cannot broadcast ",
                     shape_str(xt.shape), " to ", shape_str(shape));
        static const float zero = 0.0f;
        BinaryArgs args;
        args.op = BinaryOp::add;
        args.ndim = static_cast<int>(nd);
        for (int64_t d = 0; d < nd; ++d) {
          const int64_t dx = d - (nd - xt.ndim());
          const int64_t sx = dx >= 0 ? xt.shape[dx] : 1;
          FASTNN_CHECK(shape[d] >= 0 && (sx == shape[d] || sx == 1), ValueError, op, ": argument 'shape': cannot broadcast ",
                       shape_str(xt.shape), " to ", shape_str(shape));
          args.shape[d] = shape[d];
          args.a_strides[d] = (sx == 1 || dx < 0) ? 0 : xt.strides[dx];
          args.b_strides[d] = 0;
        }
        Tensor out = empty(shape, DType::float32, xt.device());
        args.a = xt.data_as<float>();
        args.b = on_cuda(xt) ? nullptr : &zero;  // CUDA: nullptr = plain copy (no host operand)
        args.out = out.data_as<float>();
        if (out.numel() > 0) run_kernel(xt.device(), "nn_binary", &cpu::binary, args);
        return wrap(out);
      },
      py::arg("x"), py::arg("shape"));

  m.def(
      "max_backward",
      [](py::handle grad_out, py::handle indices, const Shape& input_shape, py::object axis) {
        const char* op = "max_backward";
        Tensor go = in_f32(grad_out, op, "grad_out");
        Tensor idx = to_tensor(indices, op, "indices");
        expect_dtype(idx, DType::int64, op, "indices");
        expect_same_device(idx, go.device(), op, "indices");
        if (!idx.is_contiguous()) idx = contiguous(idx);
        ReduceMaxBackwardArgs a;
        const int64_t nd = static_cast<int64_t>(input_shape.size());
        if (axis.is_none()) {
          a.r = checked_numel(input_shape, "input_shape");
        } else {
          const int ax = norm_axis(axis.cast<int64_t>(), nd, op);
          for (int d = 0; d < ax && d < nd; ++d) a.outer *= input_shape[d];
          a.r = nd ? input_shape[ax] : 1;
          for (int64_t d = ax + 1; d < nd; ++d) a.inner *= input_shape[d];
        }
        FASTNN_CHECK(go.numel() == a.outer * a.inner && idx.numel() == go.numel(), ValueError, op,
                     ": arguments 'grad_out' / 'indices': expected ", a.outer * a.inner, " elements, got shapes ",
                     shape_str(go.shape), " and ", shape_str(idx.shape));
        check_indices(idx, a.r, op, "indices", false, 0);
        const int64_t* ip = idx.data_as<int64_t>();
        Tensor gx = empty(input_shape, DType::float32, go.device());
        a.grad_out = go.data_as<float>();
        a.indices = ip;
        a.grad_x = gx.data_as<float>();
        if (gx.numel() > 0) run_kernel(go.device(), "nn_max_backward", &cpu::reduce_max_backward, a);
        return wrap(gx);
      },
      py::arg("grad_out"), py::arg("indices"), py::arg("input_shape"), py::arg("axis"));

  // Reduction over one axis (axis=None: over everything). Returns (values, indices or None).
  m.def(
      "reduce",
      [](py::handle x, py::object axis, bool keepdim, const std::string& opname) {
        ReduceOp rop;
        if (opname == "sum") rop = ReduceOp::sum;
        else if (opname == "mean") rop = ReduceOp::mean;
        else if (opname == "max") rop = ReduceOp::max;
        else throw ValueError("reduce: argument 'op': expected 'sum', 'mean' or 'max', got '" + opname + "'");
        const char* op = opname.c_str();
        Tensor xt = in_f32(x, op, "x");
        ReduceArgs a;
        a.op = rop;
        Shape out_shape;
        if (axis.is_none()) {
          a.outer = 1;
          a.r = xt.numel();
          a.inner = 1;
          if (keepdim) out_shape.assign(static_cast<size_t>(xt.ndim()), 1);
        } else {
          const int ax = norm_axis(axis.cast<int64_t>(), xt.ndim(), op);
          if (xt.ndim() == 0) {
            a.r = 1;
          } else {
            for (int d = 0; d < ax; ++d) a.outer *= xt.shape[d];
            a.r = xt.shape[ax];
            for (int64_t d = ax + 1; d < xt.ndim(); ++d) a.inner *= xt.shape[d];
            out_shape = xt.shape;
            if (keepdim) out_shape[ax] = 1;
            else out_shape.erase(out_shape.begin() + ax);
          }
        }
        if (rop == ReduceOp::max)
          FASTNN_CHECK(a.r > 0 || a.outer * a.inner == 0, ValueError, op, ": argument 'x': expected a non-empty ",
                       "reduction dimension for max, got shape ", shape_str(xt.shape));
        Tensor out = empty(out_shape, DType::float32, xt.device());
        Tensor idx = rop == ReduceOp::max ? empty(out_shape, DType::int64, xt.device()) : Tensor();
        a.x = xt.data_as<float>();
        a.out = out.data_as<float>();
        a.indices = idx.defined() ? idx.data_as<int64_t>() : nullptr;
        if (out.numel() > 0) {
          if (a.r == 0) {
            // sum over nothing = 0, mean = NaN (0/0), as NumPy/torch
            out = full_on(out_shape, rop == ReduceOp::mean ? NAN : 0.0f, xt.device());
          } else {
            run_kernel(xt.device(), "nn_reduce", &cpu::reduce, a);
          }
        }
        return py::make_tuple(wrap(out), idx.defined() ? wrap(idx) : py::none());
      },
      py::arg("x"), py::arg("axis"), py::arg("keepdim"), py::arg("op"));
}

}  // namespace fastnn::bindings
