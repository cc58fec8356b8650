// Bindings of the recurrent kernels (fastnn/rnn.h):
//   _C.rnn_cell / _C.rnn_cell_backward        one fused time step (fastnn.ops.lstm_cell, ...)
//   _C.rnn_layer_forward / _C.rnn_layer_backward  one layer, one or two directions, the whole
//       sequence in C++ (T recurrent GEMMs + T fused cell launches per direction).
// Modes: "rnn_tanh", "rnn_relu", "lstm", "gru". CPU and CUDA (dispatch on the device of the
// first tensor argument; all tensors must share it).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "core/cuda_backend.h"
#include "fastnn/elementwise_math.h"
#include "fastnn/rnn.h"

namespace fastnn::bindings {
namespace {

RnnMode parse_mode(const std::string& s, const char* op) {
  if (s == "lstm") return RnnMode::lstm;
  if (s == "gru") return RnnMode::gru;
  if (s == "rnn_tanh") return RnnMode::rnn_tanh;
  if (s == "rnn_relu") return RnnMode::rnn_relu;
  throw ValueError(detail::concat(op, ": argument 'mode': expected 'lstm', 'gru', 'rnn_tanh' or 'rnn_relu', got '", s,
                                  "'"));
}

// float32 on `dev` with exactly `shape`; made contiguous (a copy) when it is not.
Tensor f32_check(Tensor t, const char* op, const char* arg, const Shape& shape, const Device& dev) {
  expect_float32(t, op, arg);
  expect_same_device(t, dev, op, arg);
  expect_shape(t, shape, op, arg);
  return t.is_contiguous() ? t : contiguous(t);
}

Tensor f32_arg(py::handle obj, const char* op, const char* arg, const Shape& shape, const Device& dev) {
  return f32_check(to_tensor(obj, op, arg), op, arg, shape, dev);
}

Tensor f32_opt(py::handle obj, const char* op, const char* arg, const Shape& shape, const Device& dev) {
  return obj.is_none() ? Tensor() : f32_arg(obj, op, arg, shape, dev);
}

const float* ptr(const Tensor& t) { return t.defined() ? t.data_as<float>() : nullptr; }
float* mptr(const Tensor& t) { return t.defined() ? t.data_as<float>() : nullptr; }

RnnStepOps step_ops(const Device& dev) {
  if (dev.type == DeviceType::cpu) return cpu::rnn_step_ops();
  RnnStepOps ops;
  const int d = dev.index;
  ops.gemm = [d](const GemmArgs& g) { require_cuda_backend().gemm(g, d); };
  ops.cell = [d](const RnnCellArgs& c) { cuda_op("rnn_cell", c, d); };
  ops.cell_backward = [d](const RnnCellBackwardArgs& c) { cuda_op("rnn_cell_backward", c, d); };
  return ops;
}

void copy_into(const Tensor& dst, const Tensor& src) {
  if (src.defined()) copy_(dst, src);
}

// lengths: integers in [1, T], one per row; validated on the host, then moved to `dev`.
Tensor lengths_arg(py::handle obj, int64_t T, int64_t B, const Device& dev, const char* op) {
  if (obj.is_none()) return Tensor();
  Tensor t = to_tensor(obj, op, "lengths");
  FASTNN_CHECK(t.dtype == DType::int64 || t.dtype == DType::int32, TypeError, op,
               ": argument 'lengths': expected an int64 or int32 tensor, got ", dtype_name(t.dtype));
  expect_shape(t, Shape{B}, op, "lengths");
  Tensor h = contiguous(to_dtype(to_device(t, Device{}), DType::int64));
  const int64_t* p = h.data_as<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    FASTNN_CHECK(p[b] >= 1 && p[b] <= T, ValueError, op, ": argument 'lengths': expected values in [1, ", T,
                 "] (the sequence length), got ", p[b], " at index ", b);
  }
  return dev.type == DeviceType::cpu ? h : to_device(h, dev);
}

// A (batch, hidden) float32 tensor whose shape and device fix those of the other arguments.
Tensor state_arg(py::handle obj, const char* op, const char* arg) {
  Tensor t = to_tensor(obj, op, arg);
  expect_float32(t, op, arg);
  expect_ndim(t, 2, op, arg);
  return t;
}

py::tuple cell_py(const std::string& mode_s, py::handle gx_o, py::handle gh_o, py::handle h_o, py::handle c_o) {
  const char* op = "rnn_cell";
  const RnnMode mode = parse_mode(mode_s, op);
  Tensor h_prev = state_arg(h_o, op, "h_prev");
  const Device dev = h_prev.device();
  const int64_t B = h_prev.shape[0], H = h_prev.shape[1], GH = rnn_num_gates(mode) * H;
  h_prev = f32_arg(h_o, op, "h_prev", {B, H}, dev);
  Tensor gx = f32_arg(gx_o, op, "gates_x", {B, GH}, dev);
  Tensor gh = f32_arg(gh_o, op, "gates_h", {B, GH}, dev);
  const bool lstm = mode == RnnMode::lstm;
  FASTNN_CHECK(!lstm || !c_o.is_none(), ValueError, op, ": argument 'c_prev': expected a tensor for an LSTM cell, got None");
  Tensor c_prev = lstm ? f32_arg(c_o, op, "c_prev", {B, H}, dev) : Tensor();
  Tensor h = empty({B, H}, DType::float32, dev);
  Tensor c = lstm ? empty({B, H}, DType::float32, dev) : Tensor();
  const int64_t S = rnn_num_saved(mode) * H;
  Tensor saved = S ? empty({B, S}, DType::float32, dev) : Tensor();
  RnnCellArgs a;
  a.mode = mode; a.batch = B; a.hidden = H;
  a.gx = ptr(gx); a.gx_ld = GH; a.gh = ptr(gh); a.gh_ld = GH;
  a.h_prev = ptr(h_prev); a.c_prev = ptr(c_prev); a.h = mptr(h); a.c = mptr(c); a.saved = mptr(saved);
  if (B > 0 && H > 0) {
    without_gil([&] {
      if (dev.type == DeviceType::cpu) cpu::rnn_cell(a);
      else cuda_op("rnn_cell", a, dev.index);
    });
  }
  return py::make_tuple(wrap(h), c.defined() ? wrap(c) : py::none(), saved.defined() ? wrap(saved) : py::none());
}

py::tuple cell_backward_py(const std::string& mode_s, py::handle dh_o, py::handle dc_o, py::handle saved_o,
                           py::handle h_prev_o, py::handle c_prev_o, py::handle c_o, py::handle h_o) {
  const char* op = "rnn_cell_backward";
  const RnnMode mode = parse_mode(mode_s, op);
  Tensor dh0 = state_arg(dh_o, op, "grad_h");
  const Device dev = dh0.device();
  const int64_t B = dh0.shape[0], H = dh0.shape[1], GH = rnn_num_gates(mode) * H, S = rnn_num_saved(mode) * H;
  const bool lstm = mode == RnnMode::lstm, gru = mode == RnnMode::gru;
  Tensor dh = empty({B, H}, DType::float32, dev);
  copy_(dh, dh0);
  Tensor dc;
  if (lstm) {
    dc = zeros({B, H}, DType::float32, dev);
    copy_into(dc, f32_opt(dc_o, op, "grad_c", {B, H}, dev));
  }
  Tensor saved = S ? f32_arg(saved_o, op, "saved", {B, S}, dev) : Tensor();
  Tensor h_prev = gru ? f32_arg(h_prev_o, op, "h_prev", {B, H}, dev) : Tensor();
  Tensor c_prev = lstm ? f32_arg(c_prev_o, op, "c_prev", {B, H}, dev) : Tensor();
  Tensor c = lstm ? f32_arg(c_o, op, "c", {B, H}, dev) : Tensor();
  Tensor h = (!lstm && !gru) ? f32_arg(h_o, op, "h", {B, H}, dev) : Tensor();
  Tensor dgx = empty({B, GH}, DType::float32, dev);
  Tensor dgh = gru ? empty({B, GH}, DType::float32, dev) : dgx;
  RnnCellBackwardArgs a;
  a.mode = mode; a.batch = B; a.hidden = H;
  a.dh = mptr(dh); a.dc = mptr(dc); a.saved = ptr(saved); a.h_prev = ptr(h_prev); a.c_prev = ptr(c_prev);
  a.c = ptr(c); a.h = ptr(h);
  a.dgx = mptr(dgx); a.dgx_ld = GH; a.dgh = mptr(dgh); a.dgh_ld = GH;
  if (B > 0 && H > 0) {
    without_gil([&] {
      if (dev.type == DeviceType::cpu) cpu::rnn_cell_backward(a);
      else cuda_op("rnn_cell_backward", a, dev.index);
    });
  }
  return py::make_tuple(wrap(dgx), wrap(dgh), wrap(dh), dc.defined() ? wrap(dc) : py::none());
}

struct LayerShapes {
  RnnMode mode;
  int64_t D, T, B, H, GH, S;
  Device dev;
};

// xprojs[0] fixes T, B and G*H; w_hh[0] fixes H.
LayerShapes layer_shapes(const std::string& mode_s, const std::vector<Tensor>& xp, const std::vector<Tensor>& w,
                         const char* op) {
  LayerShapes s;
  s.mode = parse_mode(mode_s, op);
  s.D = static_cast<int64_t>(xp.size());
  FASTNN_CHECK(s.D == 1 || s.D == 2, ValueError, op, ": argument 'xprojs': expected 1 or 2 tensors (directions), got ",
               s.D);
  FASTNN_CHECK(static_cast<int64_t>(w.size()) == s.D, ValueError, op, ": argument 'w_hh': expected ", s.D,
               " tensors (one per direction), got ", w.size());
  expect_float32(w[0], op, "w_hh[0]");
  expect_ndim(w[0], 2, op, "w_hh[0]");
  s.H = w[0].shape[1];
  s.GH = rnn_num_gates(s.mode) * s.H;
  s.S = rnn_num_saved(s.mode) * s.H;
  expect_float32(xp[0], op, "xprojs[0]");
  expect_ndim(xp[0], 3, op, "xprojs[0]");
  s.T = xp[0].shape[0];
  s.B = xp[0].shape[1];
  s.dev = xp[0].device();
  FASTNN_CHECK(s.T >= 1 && s.B >= 1 && s.H >= 1, ValueError, op,
               ": expected sequence length, batch and hidden size >= 1, got ", s.T, ", ", s.B, ", ", s.H);
  return s;
}

std::string nm(const char* a, int64_t d) { return detail::concat(a, "[", d, "]"); }

py::tuple layer_forward_py(const std::string& mode_s, py::handle xprojs_o, py::handle w_o, py::handle b_o,
                           py::handle h0_o, py::handle c0_o, py::handle lengths_o) {
  const char* op = "rnn_layer_forward";
  std::vector<Tensor> xp0 = to_tensor_list(xprojs_o, op, "xprojs"), w0 = to_tensor_list(w_o, op, "w_hh");
  const LayerShapes s = layer_shapes(mode_s, xp0, w0, op);
  const bool lstm = s.mode == RnnMode::lstm;
  std::vector<Tensor> xp(s.D), w(s.D), bh(s.D);
  std::vector<Tensor> bl = b_o.is_none() ? std::vector<Tensor>() : to_tensor_list(b_o, op, "b_hh");
  FASTNN_CHECK(bl.empty() || static_cast<int64_t>(bl.size()) == s.D, ValueError, op, ": argument 'b_hh': expected ",
               s.D, " tensors or None, got ", bl.size());
  for (int64_t d = 0; d < s.D; ++d) {
    xp[d] = f32_check(xp0[d], op, nm("xprojs", d).c_str(), {s.T, s.B, s.GH}, s.dev);
    w[d] = f32_check(w0[d], op, nm("w_hh", d).c_str(), {s.GH, s.H}, s.dev);
    if (!bl.empty()) bh[d] = f32_check(bl[d], op, nm("b_hh", d).c_str(), {s.GH}, s.dev);
  }
  Tensor h0 = f32_opt(h0_o, op, "h0", {s.D, s.B, s.H}, s.dev);
  FASTNN_CHECK(lstm || c0_o.is_none(), ValueError, op, ": argument 'c0': expected None for mode '", mode_s,
               "', got a tensor");
  Tensor c0 = lstm ? f32_opt(c0_o, op, "c0", {s.D, s.B, s.H}, s.dev) : Tensor();
  Tensor lengths = lengths_arg(lengths_o, s.T, s.B, s.dev, op);
  Tensor y = empty({s.T, s.B, s.D * s.H}, DType::float32, s.dev);
  Tensor gh = empty({s.B, s.GH}, DType::float32, s.dev);
  py::list hs_l, cs_l, saved_l;
  std::vector<RnnSequenceArgs> args(s.D);
  for (int64_t d = 0; d < s.D; ++d) {
    const bool rev = d == 1;
    Tensor hs = zeros({s.T + 1, s.B, s.H}, DType::float32, s.dev);
    Tensor cs = lstm ? zeros({s.T + 1, s.B, s.H}, DType::float32, s.dev) : Tensor();
    Tensor saved = s.S ? empty({s.T, s.B, s.S}, DType::float32, s.dev) : Tensor();
    const int64_t slot = rev ? s.T : 0;
    auto slot_view = [&](const Tensor& t) {
      Tensor v = t;
      v.offset += slot * s.B * s.H;
      v.shape = {s.B, s.H};
      v.strides = {s.H, 1};
      return v;
    };
    auto dir_view = [&](const Tensor& t) {
      Tensor v = t;
      v.offset += d * s.B * s.H;
      v.shape = {s.B, s.H};
      v.strides = {s.H, 1};
      return v;
    };
    if (h0.defined()) copy_(slot_view(hs), dir_view(h0));
    if (c0.defined()) copy_(slot_view(cs), dir_view(c0));
    RnnSequenceArgs& a = args[d];
    a.mode = s.mode; a.seq_len = s.T; a.batch = s.B; a.hidden = s.H; a.reverse = rev;
    a.xproj = ptr(xp[d]); a.w_hh = ptr(w[d]); a.b_hh = ptr(bh[d]);
    a.lengths = lengths.defined() ? lengths.data_as<int64_t>() : nullptr;
    a.hs = mptr(hs); a.cs = mptr(cs); a.saved = mptr(saved);
    a.y = mptr(y) + d * s.H; a.y_ld = s.D * s.H;
    a.gh = mptr(gh);
    hs_l.append(wrap(hs));
    cs_l.append(cs.defined() ? wrap(cs) : py::none());
    saved_l.append(saved.defined() ? wrap(saved) : py::none());
  }
  without_gil([&] {
    if (s.dev.type == DeviceType::cpu) {
      cpu::rnn_layer_forward(args.data(), s.D);
      return;
    }
    const RnnStepOps ops = step_ops(s.dev);
    for (int64_t d = 0; d < s.D; ++d) rnn_sequence_forward(args[d], ops);
  });
  return py::make_tuple(wrap(y), hs_l, cs_l, saved_l);
}

py::tuple layer_backward_py(const std::string& mode_s, py::handle dy_o, py::handle dhn_o, py::handle dcn_o,
                            py::handle w_o, py::handle hs_o, py::handle cs_o, py::handle saved_o,
                            py::handle lengths_o, bool need_bias) {
  const char* op = "rnn_layer_backward";
  std::vector<Tensor> w0 = to_tensor_list(w_o, op, "w_hh"), hs0 = to_tensor_list(hs_o, op, "hs");
  FASTNN_CHECK(!hs0.empty(), ValueError, op, ": argument 'hs': expected 1 or 2 tensors, got 0");
  expect_ndim(hs0[0], 3, op, "hs[0]");
  // layer_shapes wants the (T, B, G*H) projection shape: derive it from hs (T+1, B, H).
  LayerShapes s;
  s.mode = parse_mode(mode_s, op);
  s.D = static_cast<int64_t>(hs0.size());
  FASTNN_CHECK(s.D <= 2 && static_cast<int64_t>(w0.size()) == s.D, ValueError, op,
               ": argument 'w_hh': expected as many tensors as 'hs' (1 or 2), got ", w0.size());
  s.T = hs0[0].shape[0] - 1;
  s.B = hs0[0].shape[1];
  s.H = hs0[0].shape[2];
  s.GH = rnn_num_gates(s.mode) * s.H;
  s.S = rnn_num_saved(s.mode) * s.H;
  s.dev = hs0[0].device();
  FASTNN_CHECK(s.T >= 1 && s.B >= 1 && s.H >= 1, ValueError, op, ": argument 'hs[0]': expected shape (T+1, B, H) with T, B, H >= 1, got ",
               shape_str(hs0[0].shape));
  const bool lstm = s.mode == RnnMode::lstm, gru = s.mode == RnnMode::gru;
  std::vector<Tensor> cs0 = lstm ? to_tensor_list(cs_o, op, "cs") : std::vector<Tensor>(s.D);
  std::vector<Tensor> sv0 = s.S ? to_tensor_list(saved_o, op, "saved") : std::vector<Tensor>(s.D);
  FASTNN_CHECK(static_cast<int64_t>(cs0.size()) == s.D && static_cast<int64_t>(sv0.size()) == s.D, ValueError, op,
               ": arguments 'cs' and 'saved': expected ", s.D, " tensors each");
  Tensor dy = f32_opt(dy_o, op, "grad_y", {s.T, s.B, s.D * s.H}, s.dev);
  Tensor dhn = f32_opt(dhn_o, op, "grad_h_n", {s.D, s.B, s.H}, s.dev);
  Tensor dcn = lstm ? f32_opt(dcn_o, op, "grad_c_n", {s.D, s.B, s.H}, s.dev) : Tensor();
  Tensor lengths = lengths_arg(lengths_o, s.T, s.B, s.dev, op);
  Tensor dh0 = zeros({s.D, s.B, s.H}, DType::float32, s.dev);
  Tensor dc0 = lstm ? zeros({s.D, s.B, s.H}, DType::float32, s.dev) : Tensor();
  if (dhn.defined()) copy_(dh0, dhn);
  if (dcn.defined()) copy_(dc0, dcn);
  Tensor ones;  // the 1-element "row of ones" of db_hh = 1^T dG, read through a zero stride
  if (need_bias) {
    ones = empty({1}, DType::float32, s.dev);
    // written where it lives (on CUDA by the fill kernel, on the stream): no host->device copy per call
    if (s.dev.type == DeviceType::cpu) *ones.data_as<float>() = 1.0f;
    else cuda_op("ewm_unary", UnaryArgs{UnaryOp::fill, 1, nullptr, ones.data_as<float>(), 1.0f}, s.dev.index);
  }
  std::vector<RnnSequenceArgs> args(s.D);
  py::list dxp_l, dw_l, db_l;
  std::vector<Tensor> keep;
  for (int64_t d = 0; d < s.D; ++d) {
    Tensor w = f32_check(w0[d], op, nm("w_hh", d).c_str(), {s.GH, s.H}, s.dev);
    Tensor hs = f32_check(hs0[d], op, nm("hs", d).c_str(), {s.T + 1, s.B, s.H}, s.dev);
    Tensor cs = lstm ? f32_check(cs0[d], op, nm("cs", d).c_str(), {s.T + 1, s.B, s.H}, s.dev) : Tensor();
    Tensor sv = s.S ? f32_check(sv0[d], op, nm("saved", d).c_str(), {s.T, s.B, s.S}, s.dev) : Tensor();
    Tensor dgx = empty({s.T, s.B, s.GH}, DType::float32, s.dev);
    Tensor dgh = gru ? empty({s.T, s.B, s.GH}, DType::float32, s.dev) : dgx;
    Tensor dw = empty({s.GH, s.H}, DType::float32, s.dev);
    Tensor db = need_bias ? empty({s.GH}, DType::float32, s.dev) : Tensor();
    keep.insert(keep.end(), {w, hs, cs, sv, dgh});
    RnnSequenceArgs& a = args[d];
    a.mode = s.mode; a.seq_len = s.T; a.batch = s.B; a.hidden = s.H; a.reverse = d == 1;
    a.w_hh = ptr(w); a.hs = mptr(hs); a.cs = mptr(cs); a.saved = mptr(sv);
    a.lengths = lengths.defined() ? lengths.data_as<int64_t>() : nullptr;
    a.dy = dy.defined() ? ptr(dy) + d * s.H : nullptr; a.dy_ld = s.D * s.H;
    a.dh = mptr(dh0) + d * s.B * s.H;
    a.dc = lstm ? mptr(dc0) + d * s.B * s.H : nullptr;
    a.dgx = mptr(dgx); a.dgh = mptr(dgh); a.dw_hh = mptr(dw); a.db_hh = mptr(db); a.ones = ptr(ones);
    dxp_l.append(wrap(dgx));
    dw_l.append(wrap(dw));
    db_l.append(db.defined() ? wrap(db) : py::none());
  }
  without_gil([&] {
    if (s.dev.type == DeviceType::cpu) {
      cpu::rnn_layer_backward(args.data(), s.D);
      return;
    }
    const RnnStepOps ops = step_ops(s.dev);
    for (int64_t d = 0; d < s.D; ++d) rnn_sequence_backward(args[d], ops);
  });
  return py::make_tuple(dxp_l, dw_l, db_l, wrap(dh0), dc0.defined() ? wrap(dc0) : py::none());
}

}  // namespace

FASTNN_BINDINGS(rnn) {
  m.def("rnn_cell", &cell_py, py::arg("mode"), py::arg("gates_x"), py::arg("gates_h"), py::arg("h_prev"),
        py::arg("c_prev") = py::none(),
        "One fused recurrent step after the GEMMs -> (h, c or None, saved or None).");
  m.def("rnn_cell_backward", &cell_backward_py, py::arg("mode"), py::arg("grad_h"), py::arg("grad_c") = py::none(),
        py::arg("saved") = py::none(), py::arg("h_prev") = py::none(), py::arg("c_prev") = py::none(),
        py::arg("c") = py::none(), py::arg("h") = py::none(),
        "Backward of rnn_cell -> (grad_gates_x, grad_gates_h, grad_h_prev (direct part), grad_c_prev or None).");
  m.def("rnn_layer_forward", &layer_forward_py, py::arg("mode"), py::arg("xprojs"), py::arg("w_hh"),
        py::arg("b_hh") = py::none(), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
        py::arg("lengths") = py::none(),
        "One recurrent layer over a sequence, 1 or 2 directions -> (y, hs, cs, saved).");
  m.def("rnn_layer_backward", &layer_backward_py, py::arg("mode"), py::arg("grad_y"), py::arg("grad_h_n"),
        py::arg("grad_c_n"), py::arg("w_hh"), py::arg("hs"), py::arg("cs"), py::arg("saved"),
        py::arg("lengths") = py::none(), py::arg("need_bias") = true,
        "Backward of rnn_layer_forward -> (grad_xprojs, grad_w_hh, grad_b_hh, grad_h0, grad_c0).");
}

}  // namespace fastnn::bindings
