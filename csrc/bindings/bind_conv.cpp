// Bindings of the convolution family: conv2d (forward, fused bias + activation) and
// conv2d_backward (grad_input / grad_weight / grad_bias, each its own kernel).
// All argument parsing and validation happens here (ints or pairs, 'same' / 'valid'
// padding, output size, channel / groups / weight / bias consistency, dtype, device,
// ndim); the kernels (fastnn/conv.h) trust what they get. Inputs that are not dense
// C-contiguous are copied once. CUDA tensors run the CUDA kernels (conv_ops.cpp, by name
// through the backend), with the same arguments and no host round trip.
#include <string>

#include "bindings/common.h"
#include "bindings/spatial_args.h"
#include "core/cuda_backend.h"
#include "fastnn/conv.h"

namespace fastnn::bindings {
namespace {
using namespace spatial;

// The loop-nest reference exists on the CPU only.
void expect_cpu(const Tensor& t, const char* op, const char* arg) {
  FASTNN_CHECK(t.device().type == DeviceType::cpu, ValueError, op, ": argument '", arg,
               "': expected a tensor on device 'cpu' (the reference runs on the CPU), got device '",
               t.device().str(), "'");
}

bool on_cuda(const Tensor& t) { return t.device().type == DeviceType::cuda; }


// Parses and validates everything but the data; fills the sizes of `a`.
bool is_16bit(DType dt) { return dt == DType::bfloat16 || dt == DType::float16; }

// x and weight: 4-D float32, or on CUDA both bfloat16 or both float16 (tensor cores).
void expect_conv_operands(const Tensor& x, const Tensor& w, const char* op) {
  if (on_cuda(x) && is_16bit(x.dtype)) {
    FASTNN_CHECK(x.ndim() == 4, ValueError, op, ": argument 'x': expected 4-D (N, C, H, W), got ", x.ndim(),
                 "-D with shape ", shape_str(x.shape));
    if (w.dtype != x.dtype)
      throw TypeError(detail::concat(op, ": argument 'weight': expected ", dtype_name(x.dtype),
                                     " (the dtype of x), got ", dtype_name(w.dtype)));
    FASTNN_CHECK(w.ndim() == 4, ValueError, op, ": argument 'weight': expected 4-D (O, C/groups, kh, kw), got ",
                 w.ndim(), "-D with shape ", shape_str(w.shape));
    return;
  }
  expect_f32_4d(x, op, "x");
  expect_f32_4d(w, op, "weight");
}

Conv2dArgs plan(const Tensor& x, const Tensor& w, py::handle stride_o, py::handle padding_o, py::handle dilation_o,
                int64_t groups, const char* op) {
  expect_conv_operands(x, w, op);
  expect_same_device(w, x.device(), op, "weight");
  FASTNN_CHECK(groups >= 1, ValueError, op, ": argument 'groups': expected an int >= 1, got ", groups);
  const int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
  const int64_t O = w.shape[0], kh = w.shape[2], kw = w.shape[3];
  FASTNN_CHECK(C % groups == 0, ValueError, op, ": argument 'groups': in_channels (", C,
               ", from x of shape ", shape_str(x.shape), ") must be divisible by groups, got groups=", groups);
  FASTNN_CHECK(O % groups == 0, ValueError, op, ": argument 'groups': out_channels (", O,
               ", from weight of shape ", shape_str(w.shape), ") must be divisible by groups, got groups=", groups);
  FASTNN_CHECK(w.shape[1] == C / groups, ValueError, op, ": argument 'weight': expected shape (out_channels, ",
               C / groups, ", kh, kw) (in_channels ", C, " / groups ", groups, "), got ", shape_str(w.shape));
  FASTNN_CHECK(kh >= 1 && kw >= 1, ValueError, op, ": argument 'weight': expected a kernel of size >= 1, got shape ",
               shape_str(w.shape));
  const Pair st = parse_pair(stride_o, op, "stride", 1);
  const Pair dl = parse_pair(dilation_o, op, "dilation", 1);
  int64_t pt, pl, pb, pr;
  if (py::isinstance<py::str>(padding_o)) {
    const std::string s = padding_o.cast<std::string>();
    if (s == "valid") {
      pt = pl = pb = pr = 0;
    } else if (s == "same") {
      FASTNN_CHECK(st.h == 1 && st.w == 1, ValueError, op,
                   ": argument 'padding': 'same' requires stride 1, got stride ", pyrepr(stride_o));
      const int64_t th = dl.h * (kh - 1), tw = dl.w * (kw - 1);
      pt = th / 2, pb = th - pt, pl = tw / 2, pr = tw - pl;
    } else {
      throw ValueError(detail::concat(op, ": argument 'padding': expected an int, a pair of ints, 'same' or 'valid', got ",
                                      pyrepr(padding_o)));
    }
  } else {
    const Pair p = parse_pair(padding_o, op, "padding", 0);
    pt = pb = p.h, pl = pr = p.w;
  }
  const int64_t nh = H + pt + pb - dl.h * (kh - 1) - 1, nw = W + pl + pr - dl.w * (kw - 1) - 1;
  FASTNN_CHECK(nh >= 0 && nw >= 0, ValueError, op, ": output size would be <= 0: input size (", H, ", ", W,
               "), kernel (", kh, ", ", kw, "), padding (", pt, ", ", pl, ") top/left and (", pb, ", ", pr,
               ") bottom/right, stride (", st.h, ", ", st.w, "), dilation (", dl.h, ", ", dl.w,
               ") give output (", nh < 0 ? 0 : nh / st.h + 1, ", ", nw < 0 ? 0 : nw / st.w + 1, ")");
  Conv2dArgs a;
  a.batch = N, a.in_channels = C, a.in_h = H, a.in_w = W;
  a.out_channels = O, a.out_h = nh / st.h + 1, a.out_w = nw / st.w + 1;
  a.kernel_h = kh, a.kernel_w = kw;
  a.stride_h = st.h, a.stride_w = st.w;
  a.pad_h = pt, a.pad_w = pl;
  a.dil_h = dl.h, a.dil_w = dl.w;
  a.groups = groups;
  a.dtype = x.dtype;
  return a;
}

// None: the process-wide setting (off unless enabled); True / False: this call only.
bool allow_tf32_arg(py::handle o, const char* op) {
  if (o.is_none()) return false;
  if (!py::isinstance<py::bool_>(o))
    throw TypeError(detail::concat(op, ": argument 'allow_tf32': expected None or a bool, got ", pyrepr(o)));
  return o.cast<bool>();
}

Tensor check_bias(py::handle bias_o, int64_t O, const Device& dev, const char* op) {
  Tensor bias = to_tensor_or_none(bias_o, op, "bias");
  if (!bias.defined()) return bias;
  if (bias.dtype != DType::float32)
    throw TypeError(detail::concat(op, ": argument 'bias': expected 1-D float32 of length ", O, ", got ",
                                   bias.ndim(), "-D ", dtype_name(bias.dtype)));
  FASTNN_CHECK(bias.ndim() == 1 && bias.shape[0] == O, ValueError, op, ": argument 'bias': expected 1-D float32 of length ",
               O, " (out_channels), got shape ", shape_str(bias.shape));
  expect_same_device(bias, dev, op, "bias");
  return dense(bias);
}

py::object conv2d_py(py::handle x_o, py::handle w_o, py::handle bias_o, py::handle stride_o, py::handle padding_o,
                     py::handle dilation_o, int64_t groups, py::handle act_o, py::handle tf32_o) {
  const char* op = "conv2d";
  Tensor x = to_tensor(x_o, op, "x");
  Tensor w = to_tensor(w_o, op, "weight");
  Conv2dArgs a = plan(x, w, stride_o, padding_o, dilation_o, groups, op);
  Tensor bias = check_bias(bias_o, a.out_channels, x.device(), op);
  a.activation = parse_activation(act_o, op, "activation");
  a.allow_tf32 = allow_tf32_arg(tf32_o, op);
  x = dense(x), w = dense(w);
  Tensor y = empty({a.batch, a.out_channels, a.out_h, a.out_w}, DType::float32, x.device());
  a.x = x.data_as<float>(), a.weight = w.data_as<float>();
  a.bias = bias.defined() ? bias.data_as<float>() : nullptr;
  a.y = y.data_as<float>();
  without_gil([&] {
    if (on_cuda(x)) cuda_op("conv2d_forward", a, x.device().index);
    else cpu::conv2d_forward(a);
  });
  return wrap(y);
}

py::tuple conv2d_backward_py(py::handle gy_o, py::handle x_o, py::handle w_o, py::handle stride_o,
                             py::handle padding_o, py::handle dilation_o, int64_t groups, bool need_input,
                             bool need_weight, bool need_bias, py::handle tf32_o) {
  const char* op = "conv2d_backward";
  Tensor x = to_tensor(x_o, op, "x");
  Tensor w = to_tensor(w_o, op, "weight");
  Tensor gy = to_tensor(gy_o, op, "grad_out");
  Conv2dArgs a = plan(x, w, stride_o, padding_o, dilation_o, groups, op);
  expect_f32_4d(gy, op, "grad_out");
  expect_same_device(gy, x.device(), op, "grad_out");
  expect_shape(gy, {a.batch, a.out_channels, a.out_h, a.out_w}, op, "grad_out");
  a.allow_tf32 = allow_tf32_arg(tf32_o, op);
  x = dense(x), w = dense(w), gy = dense(gy);
  a.x = x.data_as<float>(), a.weight = w.data_as<float>(), a.dy = gy.data_as<float>();
  Tensor gx, gw, gb;
  if (need_input) gx = empty(x.shape, DType::float32, x.device());  // float32 also for 16-bit x / weight
  if (need_weight) gw = empty(w.shape, DType::float32, x.device());
  if (need_bias) gb = empty({a.out_channels}, DType::float32, x.device());
  a.dx = need_input ? gx.data_as<float>() : nullptr;
  a.dw = need_weight ? gw.data_as<float>() : nullptr;
  a.db = need_bias ? gb.data_as<float>() : nullptr;
  without_gil([&] {
    if (on_cuda(x)) {
      const int dev = x.device().index;
      if (need_input) cuda_op("conv2d_backward_input", a, dev);
      if (need_weight) cuda_op("conv2d_backward_weight", a, dev);  // also fills db when a.db is set
      else if (need_bias) cuda_op("conv2d_backward_bias", a, dev);
      return;
    }
    if (need_input) cpu::conv2d_backward_input(a);
    if (need_weight) cpu::conv2d_backward_weight(a);  // also fills db when a.db is set
    else if (need_bias) cpu::conv2d_backward_bias(a);
  });
  return py::make_tuple(need_input ? wrap(gx) : py::none(), need_weight ? wrap(gw) : py::none(),
                        need_bias ? wrap(gb) : py::none());
}

// The plain loop-nest reference (tests cross-check the fast kernels against it).
py::tuple conv2d_reference_py(py::handle x_o, py::handle w_o, py::handle bias_o, py::handle gy_o, py::handle stride_o,
                              py::handle padding_o, py::handle dilation_o, int64_t groups) {
  const char* op = "conv2d_reference";
  Tensor x = dense(to_tensor(x_o, op, "x"));
  Tensor w = dense(to_tensor(w_o, op, "weight"));
  expect_cpu(x, op, "x");
  Conv2dArgs a = plan(x, w, stride_o, padding_o, dilation_o, groups, op);
  Tensor bias = check_bias(bias_o, a.out_channels, x.device(), op);
  Tensor gy = dense(to_tensor(gy_o, op, "grad_out"));
  expect_f32_4d(gy, op, "grad_out");
  expect_shape(gy, {a.batch, a.out_channels, a.out_h, a.out_w}, op, "grad_out");
  Tensor y = empty(gy.shape, DType::float32, x.device());
  Tensor gx = empty(x.shape, DType::float32, x.device());
  Tensor gw = empty(w.shape, DType::float32, x.device());
  Tensor gb = empty({a.out_channels}, DType::float32, x.device());
  a.x = x.data_as<float>(), a.weight = w.data_as<float>(), a.dy = gy.data_as<float>();
  a.bias = bias.defined() ? bias.data_as<float>() : nullptr;
  a.y = y.data_as<float>(), a.dx = gx.data_as<float>(), a.dw = gw.data_as<float>(), a.db = gb.data_as<float>();
  without_gil([&] {
    cpu::conv2d_forward_reference(a);
    cpu::conv2d_backward_input_reference(a);
    cpu::conv2d_backward_weight_reference(a);
  });
  return py::make_tuple(wrap(y), wrap(gx), wrap(gw), wrap(gb));
}

}  // namespace

FASTNN_BINDINGS(conv) {
  m.def("conv2d", &conv2d_py, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("activation") = py::none(), py::arg("allow_tf32") = py::none(),
        "act(conv2d(x, weight) + bias), float32 NCHW / OIHW, PyTorch semantics. On CUDA, x and weight may "
        "also be both bfloat16 or both float16 (tensor cores, FP32 accumulation, float32 output), and "
        "allow_tf32=True lets float32 run on TF32 tensor cores.");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("grad_out"), py::arg("x"), py::arg("weight"),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("need_input") = true, py::arg("need_weight") = true, py::arg("need_bias") = true,
        py::arg("allow_tf32") = py::none(),
        "(grad_input, grad_weight, grad_bias) of conv2d without activation (None where not needed); float32 "
        "gradients (also for 16-bit x / weight on CUDA).");
  m.def("conv2d_reference", &conv2d_reference_py, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("grad_out"), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
        py::arg("groups") = 1,
        "(y, grad_input, grad_weight, grad_bias) from the plain loop-nest reference (none/relu only; testing).");
}

}  // namespace fastnn::bindings
