// Bindings of batch normalisation (fastnn/batch_norm.h): _C.batch_norm, _C.batch_norm_backward.
// CPU and CUDA (dispatch on the input's device; every tensor must share it).
#include <cmath>
#include <cstdint>

#include "bindings/common.h"
#include "core/cuda_backend.h"
#include "fastnn/batch_norm.h"

namespace fastnn::bindings {
namespace {

// The (N, C, *) input, contiguous, and the sizes the kernels see.
struct Input {
  Tensor x;
  Device dev;
  int64_t n = 0, c = 0, inner = 1;
};

Input input_arg(py::handle obj, const char* op) {
  Input in;
  in.x = to_tensor(obj, op, "input");
  expect_float32(in.x, op, "input");
  expect_min_ndim(in.x, 2, op, "input");
  if (!in.x.is_contiguous()) in.x = contiguous(in.x);
  in.dev = in.x.device();
  in.n = in.x.shape[0];
  in.c = in.x.shape[1];
  for (int64_t d = 2; d < in.x.ndim(); ++d) in.inner *= in.x.shape[d];
  return in;
}

// (C,) float32 on dev; `inplace` ones must be contiguous already (they are written).
Tensor channel_arg(py::handle obj, const char* op, const char* arg, int64_t c, const Device& dev, bool inplace) {
  if (obj.is_none()) return Tensor();
  Tensor t = to_tensor(obj, op, arg);
  expect_float32(t, op, arg);
  expect_same_device(t, dev, op, arg);
  expect_shape(t, Shape{c}, op, arg);
  if (inplace) expect_contiguous(t, op, arg);
  return t.is_contiguous() ? t : contiguous(t);
}

float* fp(const Tensor& t) { return t.defined() ? t.data_as<float>() : nullptr; }

py::tuple batch_norm_py(py::handle x_o, py::handle w_o, py::handle b_o, py::handle rm_o, py::handle rv_o,
                        bool training, double momentum, double eps) {
  const char* op = "batch_norm";
  const Input in = input_arg(x_o, op);
  const Tensor& x = in.x;
  const Device dev = in.dev;
  const int64_t C = in.c, N = in.n, inner = in.inner;
  Tensor w = channel_arg(w_o, op, "weight", C, dev, false);
  Tensor b = channel_arg(b_o, op, "bias", C, dev, false);
  Tensor rm = channel_arg(rm_o, op, "running_mean", C, dev, true);
  Tensor rv = channel_arg(rv_o, op, "running_var", C, dev, true);
  FASTNN_CHECK(rm.defined() == rv.defined(), ValueError, op,
               ": arguments 'running_mean' and 'running_var': expected both or neither, got only one");
  FASTNN_CHECK(training || rm.defined(), ValueError, op,
               ": argument 'running_mean': expected running statistics when training=False, got None");
  FASTNN_CHECK(!training || N * inner > 1, ValueError, op,
               ": argument 'input': expected more than 1 value per channel when training, got input shape ",
               shape_str(x.shape));
  FASTNN_CHECK(std::isfinite(eps) && eps >= 0.0, ValueError, op, ": argument 'eps': expected a finite value >= 0, got ", eps);
  FASTNN_CHECK(std::isfinite(momentum), ValueError, op, ": argument 'momentum': expected a finite number, got ", momentum);
  if (rm.defined()) expect_no_overlap(rm, "running_mean", rv, "running_var", op);
  Tensor y = empty(x.shape, DType::float32, dev);
  Tensor sm = empty({C}, DType::float32, dev), si = empty({C}, DType::float32, dev);
  BatchNormArgs a;
  a.n = N; a.c = C; a.inner = inner;
  a.x = x.data_as<float>(); a.y = fp(y); a.weight = fp(w); a.bias = fp(b);
  a.running_mean = fp(rm); a.running_var = fp(rv); a.save_mean = fp(sm); a.save_invstd = fp(si);
  a.training = training; a.momentum = momentum; a.eps = eps;
  if (C > 0 && N * inner > 0) {
    without_gil([&] {
      if (dev.type == DeviceType::cpu) cpu::batch_norm(a);
      else cuda_op("batch_norm", a, dev.index);
    });
  }
  return py::make_tuple(wrap(y), wrap(sm), wrap(si));
}

py::tuple batch_norm_backward_py(py::handle g_o, py::handle x_o, py::handle w_o, py::handle sm_o, py::handle si_o,
                                 bool training, bool need_input, bool need_weight) {
  const char* op = "batch_norm_backward";
  const Input in = input_arg(x_o, op);
  const Tensor& x = in.x;
  const Device dev = in.dev;
  const int64_t C = in.c, N = in.n, inner = in.inner;
  Tensor g = to_tensor(g_o, op, "grad");
  expect_float32(g, op, "grad");
  expect_same_device(g, dev, op, "grad");
  expect_shape(g, x.shape, op, "grad");
  if (!g.is_contiguous()) g = contiguous(g);
  Tensor w = channel_arg(w_o, op, "weight", C, dev, false);
  Tensor sm = channel_arg(sm_o, op, "save_mean", C, dev, false);
  Tensor si = channel_arg(si_o, op, "save_invstd", C, dev, false);
  FASTNN_CHECK(sm.defined() && si.defined(), ValueError, op,
               ": arguments 'save_mean' and 'save_invstd': expected the tensors batch_norm returned, got None");
  Tensor dx = need_input ? empty(x.shape, DType::float32, dev) : Tensor();
  Tensor dw = need_weight ? empty({C}, DType::float32, dev) : Tensor();
  Tensor db = need_weight ? empty({C}, DType::float32, dev) : Tensor();
  BatchNormBackwardArgs a;
  a.n = N; a.c = C; a.inner = inner;
  a.dy = g.data_as<float>(); a.x = x.data_as<float>(); a.weight = fp(w);
  a.save_mean = fp(sm); a.save_invstd = fp(si);
  a.dx = fp(dx); a.dweight = fp(dw); a.dbias = fp(db); a.training = training;
  if (C > 0) {
    if (N * inner == 0) {  // empty batch: zero parameter gradients
      if (dw.defined()) copy_(dw, zeros({C}, DType::float32, dev));
      if (db.defined()) copy_(db, zeros({C}, DType::float32, dev));
    } else {
      without_gil([&] {
        if (dev.type == DeviceType::cpu) cpu::batch_norm_backward(a);
        else cuda_op("batch_norm_backward", a, dev.index);
      });
    }
  }
  return py::make_tuple(dx.defined() ? wrap(dx) : py::none(), dw.defined() ? wrap(dw) : py::none(),
                        db.defined() ? wrap(db) : py::none());
}

}  // namespace

FASTNN_BINDINGS(batch_norm) {
  m.def("batch_norm", &batch_norm_py, py::arg("input"), py::arg("weight") = py::none(), py::arg("bias") = py::none(),
        py::arg("running_mean") = py::none(), py::arg("running_var") = py::none(), py::arg("training") = true,
        py::arg("momentum") = 0.1, py::arg("eps") = 1e-5,
        "Batch normalisation over dim 1 -> (output, save_mean, save_invstd); updates the running stats in place.");
  m.def("batch_norm_backward", &batch_norm_backward_py, py::arg("grad"), py::arg("input"),
        py::arg("weight") = py::none(), py::arg("save_mean") = py::none(), py::arg("save_invstd") = py::none(),
        py::arg("training") = true, py::arg("need_input") = true, py::arg("need_weight") = true,
        "-> (grad_input or None, grad_weight or None, grad_bias or None).");
}

}  // namespace fastnn::bindings
