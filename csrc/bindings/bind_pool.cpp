// Bindings of the pooling family: max_pool2d (with argmax indices), avg_pool2d,
// adaptive_avg_pool2d and their backward passes (fastnn/pool.h). Validation here.
#include <string>

#include "bindings/common.h"
#include "bindings/spatial_args.h"
#include "core/cuda_backend.h"
#include "fastnn/pool.h"

namespace fastnn::bindings {
namespace {
using namespace spatial;

// CPU or CUDA (kernels/pool.cu through pool_ops.cpp): same arguments, same results.
void run_forward(const Pool2dArgs& a, const Device& dev) {
  without_gil([&] {
    if (dev.type == DeviceType::cuda) cuda_op("pool2d_forward", a, dev.index);
    else cpu::pool2d_forward(a);
  });
}

void run_backward(const Pool2dArgs& a, const Device& dev) {
  without_gil([&] {
    if (dev.type == DeviceType::cuda) cuda_op("pool2d_backward", a, dev.index);
    else cpu::pool2d_backward(a);
  });
}

// Windowed pooling (max / avg): sizes and the output shape.
Pool2dArgs plan_window(const Tensor& x, PoolKind kind, py::handle k_o, py::handle s_o, py::handle p_o,
                       const char* op) {
  expect_f32_4d(x, op, "x");
  const Pair k = parse_pair(k_o, op, "kernel_size", 1);
  const Pair s = s_o.is_none() ? k : parse_pair(s_o, op, "stride", 1);
  const Pair p = parse_pair(p_o, op, "padding", 0);
  FASTNN_CHECK(p.h <= k.h / 2 && p.w <= k.w / 2, ValueError, op,
               ": argument 'padding': expected at most half the kernel size (", k.h / 2, ", ", k.w / 2, "), got ",
               pyrepr(p_o), " with kernel_size ", pyrepr(k_o));
  const int64_t H = x.shape[2], W = x.shape[3];
  const int64_t nh = H + 2 * p.h - k.h, nw = W + 2 * p.w - k.w;
  FASTNN_CHECK(nh >= 0 && nw >= 0, ValueError, op, ": output size would be <= 0: input size (", H, ", ", W,
               "), kernel (", k.h, ", ", k.w, "), padding (", p.h, ", ", p.w, "), stride (", s.h, ", ", s.w, ")");
  Pool2dArgs a;
  a.kind = kind;
  a.planes = x.shape[0] * x.shape[1];
  a.in_h = H, a.in_w = W;
  a.out_h = nh / s.h + 1, a.out_w = nw / s.w + 1;
  a.kernel_h = k.h, a.kernel_w = k.w, a.stride_h = s.h, a.stride_w = s.w, a.pad_h = p.h, a.pad_w = p.w;
  return a;
}

Shape out_shape(const Tensor& x, const Pool2dArgs& a) { return {x.shape[0], x.shape[1], a.out_h, a.out_w}; }

py::object max_pool2d_py(py::handle x_o, py::handle k_o, py::handle s_o, py::handle p_o, bool return_indices) {
  const char* op = "max_pool2d";
  Tensor x = to_tensor(x_o, op, "x");
  Pool2dArgs a = plan_window(x, PoolKind::max, k_o, s_o, p_o, op);
  x = dense(x);
  Tensor y = empty(out_shape(x, a), DType::float32, x.device());
  Tensor idx = empty(out_shape(x, a), DType::int64, x.device());
  a.x = x.data_as<float>(), a.y = y.data_as<float>(), a.indices = idx.data_as<int64_t>();
  run_forward(a, x.device());
  if (return_indices) return py::make_tuple(wrap(y), wrap(idx));
  return wrap(y);
}

py::object max_pool2d_backward_py(py::handle gy_o, py::handle x_o, py::handle idx_o, py::handle k_o, py::handle s_o,
                                  py::handle p_o) {
  const char* op = "max_pool2d_backward";
  Tensor x = to_tensor(x_o, op, "x");
  Pool2dArgs a = plan_window(x, PoolKind::max, k_o, s_o, p_o, op);
  Tensor gy = to_tensor(gy_o, op, "grad_out");
  expect_f32_4d(gy, op, "grad_out");
  expect_same_device(gy, x.device(), op, "grad_out");
  expect_shape(gy, out_shape(x, a), op, "grad_out");
  Tensor idx = to_tensor(idx_o, op, "indices");
  if (idx.dtype != DType::int64)
    throw TypeError(detail::concat(op, ": argument 'indices': expected int64 (from max_pool2d), got ",
                                   dtype_name(idx.dtype)));
  expect_shape(idx, out_shape(x, a), op, "indices");
  expect_same_device(idx, x.device(), op, "indices");
  gy = dense(gy), idx = dense(idx);
  const int64_t HW = a.in_h * a.in_w;
  // On CUDA the values stay on the device (reading them here would be a device-to-host
  // copy); the CUDA kernel gathers, so an index outside its window is ignored, never
  // written through (kernels/pool.cu).
  if (x.device().type == DeviceType::cpu) {
    const int64_t* ip = idx.data_as<int64_t>();
    const int64_t n = idx.numel();
    for (int64_t q = 0; q < n; ++q)
      if (ip[q] < 0 || ip[q] >= HW)
        throw IndexError(detail::concat(op, ": argument 'indices': expected values in [0, ", HW,
                                        ") (H*W of x), got ", ip[q], " at flat position ", q));
  }
  Tensor gx = empty(x.shape, DType::float32, x.device());
  a.dy = gy.data_as<float>(), a.indices = idx.data_as<int64_t>(), a.dx = gx.data_as<float>();
  run_backward(a, x.device());
  return wrap(gx);
}

py::object avg_pool2d_py(py::handle x_o, py::handle k_o, py::handle s_o, py::handle p_o, bool count_include_pad) {
  const char* op = "avg_pool2d";
  Tensor x = to_tensor(x_o, op, "x");
  Pool2dArgs a = plan_window(x, PoolKind::avg, k_o, s_o, p_o, op);
  a.count_include_pad = count_include_pad;
  x = dense(x);
  Tensor y = empty(out_shape(x, a), DType::float32, x.device());
  a.x = x.data_as<float>(), a.y = y.data_as<float>();
  run_forward(a, x.device());
  return wrap(y);
}

py::object avg_pool2d_backward_py(py::handle gy_o, py::handle x_o, py::handle k_o, py::handle s_o, py::handle p_o,
                                  bool count_include_pad) {
  const char* op = "avg_pool2d_backward";
  Tensor x = to_tensor(x_o, op, "x");
  Pool2dArgs a = plan_window(x, PoolKind::avg, k_o, s_o, p_o, op);
  a.count_include_pad = count_include_pad;
  Tensor gy = to_tensor(gy_o, op, "grad_out");
  expect_f32_4d(gy, op, "grad_out");
  expect_same_device(gy, x.device(), op, "grad_out");
  expect_shape(gy, out_shape(x, a), op, "grad_out");
  gy = dense(gy);
  Tensor gx = empty(x.shape, DType::float32, x.device());
  a.dy = gy.data_as<float>(), a.dx = gx.data_as<float>();
  run_backward(a, x.device());
  return wrap(gx);
}

Pool2dArgs plan_adaptive(const Tensor& x, py::handle os_o, const char* op) {
  expect_f32_4d(x, op, "x");
  const Pair os = parse_pair(os_o, op, "output_size", 1);
  Pool2dArgs a;
  a.kind = PoolKind::adaptive_avg;
  a.planes = x.shape[0] * x.shape[1];
  a.in_h = x.shape[2], a.in_w = x.shape[3];
  a.out_h = os.h, a.out_w = os.w;
  return a;
}

py::object adaptive_avg_pool2d_py(py::handle x_o, py::handle os_o) {
  const char* op = "adaptive_avg_pool2d";
  Tensor x = to_tensor(x_o, op, "x");
  Pool2dArgs a = plan_adaptive(x, os_o, op);
  x = dense(x);
  Tensor y = empty(out_shape(x, a), DType::float32, x.device());
  a.x = x.data_as<float>(), a.y = y.data_as<float>();
  run_forward(a, x.device());
  return wrap(y);
}

py::object adaptive_avg_pool2d_backward_py(py::handle gy_o, py::handle x_o) {
  const char* op = "adaptive_avg_pool2d_backward";
  Tensor x = to_tensor(x_o, op, "x");
  Tensor gy = to_tensor(gy_o, op, "grad_out");
  expect_f32_4d(x, op, "x");
  expect_f32_4d(gy, op, "grad_out");
  expect_same_device(gy, x.device(), op, "grad_out");
  FASTNN_CHECK(gy.shape[0] == x.shape[0] && gy.shape[1] == x.shape[1] && gy.shape[2] >= 1 && gy.shape[3] >= 1,
               ValueError, op, ": argument 'grad_out': expected shape (", x.shape[0], ", ", x.shape[1],
               ", out_h >= 1, out_w >= 1), got ", shape_str(gy.shape));
  Pool2dArgs a;
  a.kind = PoolKind::adaptive_avg;
  a.planes = x.shape[0] * x.shape[1];
  a.in_h = x.shape[2], a.in_w = x.shape[3], a.out_h = gy.shape[2], a.out_w = gy.shape[3];
  gy = dense(gy);
  Tensor gx = empty(x.shape, DType::float32, x.device());
  a.dy = gy.data_as<float>(), a.dx = gx.data_as<float>();
  run_backward(a, x.device());
  return wrap(gx);
}

}  // namespace

FASTNN_BINDINGS(pool) {
  m.def("max_pool2d", &max_pool2d_py, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("return_indices") = false,
        "Max pooling (PyTorch semantics); (out, int64 indices into each H*W plane) with return_indices.");
  m.def("max_pool2d_backward", &max_pool2d_backward_py, py::arg("grad_out"), py::arg("x"), py::arg("indices"),
        py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0,
        "grad_input of max_pool2d: grad_out routed to the argmax indices.");
  m.def("avg_pool2d", &avg_pool2d_py, py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
        py::arg("padding") = 0, py::arg("count_include_pad") = true, "Average pooling (PyTorch semantics).");
  m.def("avg_pool2d_backward", &avg_pool2d_backward_py, py::arg("grad_out"), py::arg("x"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0, py::arg("count_include_pad") = true,
        "grad_input of avg_pool2d.");
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d_py, py::arg("x"), py::arg("output_size"),
        "Adaptive average pooling (output_size 1 = global average pooling).");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_py, py::arg("grad_out"), py::arg("x"),
        "grad_input of adaptive_avg_pool2d.");
}

}  // namespace fastnn::bindings
