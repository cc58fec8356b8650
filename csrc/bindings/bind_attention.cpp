// Bindings of the fused attention kernels (fastnn/attention.h):
//   _C.attention_forward(q, k, v, causal, scale, key_padding_mask, dropout_p, seed, return_lse,
//                        _key_chunk)   (_key_chunk: AttentionArgs::key_chunk, for tests and tuning)
//   _C.attention_backward(grad_out, q, k, v, out, lse, causal, scale, key_padding_mask, dropout_p, seed)
//   _C._attention_forward_reference / _C._attention_backward_reference: the plain
//     scalar implementations, same arguments (test oracle).
// q/k/v/grad_out/out are taken with whatever strides they have (e.g. a (B, N, H, D)
// tensor permuted to (B, H, N, D)); outputs are fresh contiguous tensors on the inputs'
// device. CUDA tensors run the kernels of kernels/attention_{forward,backward}.cu through
// the named ops "attention_forward" / "attention_backward" (head_dim <= 128 there); the
// reference functions take CPU tensors only.
#include <cmath>
#include <string>

#include "bindings/common.h"
#include "core/cuda_backend.h"
#include "fastnn/attention.h"

namespace fastnn::bindings {
namespace {

constexpr const char* kOp = "attention";

std::string dims_str(const Tensor& t) { return detail::concat(t.ndim(), "-D ", dtype_name(t.dtype)); }

void throw_input_error(const Tensor& t, const char* op, const char* arg, int64_t ndim, const char* layout) {
  const std::string msg = detail::concat(op, ": argument '", arg, "': expected ", ndim, "-D float32 ", layout,
                                         ", got ", dims_str(t), " with shape ", shape_str(t.shape));
  if (t.dtype != DType::float32) throw TypeError(msg);
  throw ValueError(msg);
}

Tensor input(py::handle obj, const char* op, const char* arg, int64_t ndim, const char* layout, const Device& dev) {
  Tensor t = to_tensor(obj, op, arg);
  if (t.ndim() != ndim || t.dtype != DType::float32) throw_input_error(t, op, arg, ndim, layout);
  expect_same_device(t, dev, op, arg);
  return t;
}

struct Prepared {
  AttentionArgs args;
  Device device;         // q's (every tensor must be on it); CPU for the reference functions
  Tensor q, k, v, mask;  // keep the inputs alive
};

// Validates q, k, v, mask and the scalars; fills sizes, input pointers and strides.
Prepared prepare(const char* op, bool reference, py::handle q_obj, py::handle k_obj, py::handle v_obj, bool causal,
                 py::object scale, py::handle mask_obj, double dropout_p, uint64_t seed) {
  Prepared p;
  if (!reference) p.device = to_tensor(q_obj, op, "q").device();
  p.q = input(q_obj, op, "q", 4, "(B, H, Nq, D)", p.device);
  p.k = input(k_obj, op, "k", 4, "(B, H, Nk, D)", p.device);
  p.v = input(v_obj, op, "v", 4, "(B, H, Nk, D)", p.device);
  const Shape& qs = p.q.shape;
  const Shape& ks = p.k.shape;
  FASTNN_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[3] == qs[3], ValueError, op,
               ": argument 'k': expected shape (B, H, Nk, D) = (", qs[0], ", ", qs[1], ", Nk, ", qs[3],
               ") to match q ", shape_str(qs), ", got ", shape_str(ks));
  FASTNN_CHECK(p.v.shape == ks, ValueError, op, ": argument 'v': expected the shape of k ", shape_str(ks), ", got ",
               shape_str(p.v.shape));
  if (p.device.type == DeviceType::cuda)
    FASTNN_CHECK(qs[3] <= 128, ValueError, op, ": argument 'q': expected head dim D <= 128 on ", p.device.str(),
                 ", got ", shape_str(qs));
  AttentionArgs& a = p.args;
  a.batch = qs[0];
  a.heads = qs[1];
  a.nq = qs[2];
  a.nk = ks[2];
  a.head_dim = qs[3];
  a.q = p.q.data_as<float>();
  a.q_sb = p.q.strides[0], a.q_sh = p.q.strides[1], a.q_sn = p.q.strides[2], a.q_sd = p.q.strides[3];
  a.k = p.k.data_as<float>();
  a.k_sb = p.k.strides[0], a.k_sh = p.k.strides[1], a.k_sn = p.k.strides[2], a.k_sd = p.k.strides[3];
  a.v = p.v.data_as<float>();
  a.v_sb = p.v.strides[0], a.v_sh = p.v.strides[1], a.v_sn = p.v.strides[2], a.v_sd = p.v.strides[3];

  p.mask = to_tensor_or_none(mask_obj, op, "key_padding_mask");
  if (p.mask.defined()) {
    const Shape want{a.batch, a.nk};
    FASTNN_CHECK(p.mask.dtype == DType::bool_ || p.mask.dtype == DType::uint8, TypeError, op,
                 ": argument 'key_padding_mask': expected a bool tensor of shape ", shape_str(want), ", got dtype ",
                 dtype_name(p.mask.dtype));
    FASTNN_CHECK(p.mask.shape == want, ValueError, op,
                 ": argument 'key_padding_mask': expected shape (B, Nk) = ", shape_str(want), ", got ",
                 shape_str(p.mask.shape));
    expect_same_device(p.mask, p.device, op, "key_padding_mask");
    a.key_padding_mask = p.mask.data_as<uint8_t>();
    a.mask_sb = p.mask.strides[0];
    a.mask_sn = p.mask.strides[1];
  }

  a.causal = causal;
  if (scale.is_none()) {
    a.scale = a.head_dim > 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim))) : 1.0f;
  } else {
    const double s = scale.cast<double>();
    FASTNN_CHECK(std::isfinite(s), ValueError, op, ": argument 'scale': expected a finite number, got ", s);
    a.scale = static_cast<float>(s);
  }
  FASTNN_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, ValueError, op,
               ": argument 'dropout_p': expected a probability in [0, 1), got ", dropout_p);
  a.dropout_p = static_cast<float>(dropout_p);
  a.seed = seed;
  a.offset = 0;
  return p;
}

py::object forward_impl(bool reference, py::handle q, py::handle k, py::handle v, bool causal, py::object scale,
                        py::handle mask, double dropout_p, uint64_t seed, bool return_lse, int64_t key_chunk) {
  Prepared p = prepare(kOp, reference, q, k, v, causal, scale, mask, dropout_p, seed);
  AttentionArgs& a = p.args;
  FASTNN_CHECK(key_chunk >= -1, ValueError, kOp, ": argument '_key_chunk': expected -1 (automatic), 0 (off) or a ",
               "positive number of keys, got ", key_chunk);
  a.key_chunk = key_chunk;
  Tensor out = empty({a.batch, a.heads, a.nq, a.head_dim}, DType::float32, p.device);
  Tensor lse = empty({a.batch, a.heads, a.nq}, DType::float32, p.device);
  a.out = out.data_as<float>();
  a.o_sb = out.strides[0], a.o_sh = out.strides[1], a.o_sn = out.strides[2], a.o_sd = out.strides[3];
  a.lse = lse.data_as<float>();
  a.lse_sb = lse.strides[0], a.lse_sh = lse.strides[1], a.lse_sn = lse.strides[2];
  without_gil([&] {
    if (reference)
      cpu::attention_forward_reference(a);
    else if (p.device.type == DeviceType::cuda)
      cuda_op("attention_forward", a, p.device.index);
    else
      cpu::attention_forward(a);
  });
  if (return_lse) return py::make_tuple(wrap(out), wrap(lse));
  return wrap(out);
}

py::object backward_impl(bool reference, py::handle grad_out, py::handle q, py::handle k, py::handle v,
                         py::handle out_obj, py::handle lse_obj, bool causal, py::object scale, py::handle mask,
                         double dropout_p, uint64_t seed) {
  const char* op = "attention_backward";
  Prepared p = prepare(op, reference, q, k, v, causal, scale, mask, dropout_p, seed);
  AttentionArgs& a = p.args;
  const Shape qshape{a.batch, a.heads, a.nq, a.head_dim};
  Tensor go = input(grad_out, op, "grad_out", 4, "(B, H, Nq, D)", p.device);
  FASTNN_CHECK(go.shape == qshape, ValueError, op, ": argument 'grad_out': expected the shape of q ",
               shape_str(qshape), ", got ", shape_str(go.shape));
  Tensor o = input(out_obj, op, "out", 4, "(B, H, Nq, D)", p.device);
  FASTNN_CHECK(o.shape == qshape, ValueError, op, ": argument 'out': expected the shape of q ", shape_str(qshape),
               ", got ", shape_str(o.shape));
  Tensor lse = input(lse_obj, op, "lse", 3, "(B, H, Nq)", p.device);
  const Shape lshape{a.batch, a.heads, a.nq};
  FASTNN_CHECK(lse.shape == lshape, ValueError, op, ": argument 'lse': expected shape (B, H, Nq) = ",
               shape_str(lshape), ", got ", shape_str(lse.shape));
  a.grad_out = go.data_as<float>();
  a.go_sb = go.strides[0], a.go_sh = go.strides[1], a.go_sn = go.strides[2], a.go_sd = go.strides[3];
  a.out = o.data_as<float>();  // read only in backward
  a.o_sb = o.strides[0], a.o_sh = o.strides[1], a.o_sn = o.strides[2], a.o_sd = o.strides[3];
  a.lse = lse.data_as<float>();
  a.lse_sb = lse.strides[0], a.lse_sh = lse.strides[1], a.lse_sn = lse.strides[2];
  Tensor dq = empty(qshape, DType::float32, p.device);
  Tensor dk = empty(p.k.shape, DType::float32, p.device);
  Tensor dv = empty(p.k.shape, DType::float32, p.device);
  a.dq = dq.data_as<float>();
  a.dq_sb = dq.strides[0], a.dq_sh = dq.strides[1], a.dq_sn = dq.strides[2], a.dq_sd = dq.strides[3];
  a.dk = dk.data_as<float>();
  a.dk_sb = dk.strides[0], a.dk_sh = dk.strides[1], a.dk_sn = dk.strides[2], a.dk_sd = dk.strides[3];
  a.dv = dv.data_as<float>();
  a.dv_sb = dv.strides[0], a.dv_sh = dv.strides[1], a.dv_sn = dv.strides[2], a.dv_sd = dv.strides[3];
  without_gil([&] {
    if (reference)
      cpu::attention_backward_reference(a);
    else if (p.device.type == DeviceType::cuda)
      cuda_op("attention_backward", a, p.device.index);
    else
      cpu::attention_backward(a);
  });
  return py::make_tuple(wrap(dq), wrap(dk), wrap(dv));
}

}  // namespace

FASTNN_BINDINGS(attention) {
  using namespace pybind11::literals;
  for (bool reference : {false, true}) {
    const char* fname = reference ? "_attention_forward_reference" : "attention_forward";
    const char* bname = reference ? "_attention_backward_reference" : "attention_backward";
    m.def(
        fname,
        [reference](py::handle q, py::handle k, py::handle v, bool causal, py::object scale, py::handle mask,
                    double dropout_p, uint64_t seed, bool return_lse, int64_t key_chunk) {
          return forward_impl(reference, q, k, v, causal, scale, mask, dropout_p, seed, return_lse, key_chunk);
        },
        "q"_a, "k"_a, "v"_a, "causal"_a = false, "scale"_a = py::none(), "key_padding_mask"_a = py::none(),
        "dropout_p"_a = 0.0, "seed"_a = 0, "return_lse"_a = false, "_key_chunk"_a = -1,
        "Fused attention forward (see fastnn.ops.attention). Returns out or (out, lse).");
    m.def(
        bname,
        [reference](py::handle grad_out, py::handle q, py::handle k, py::handle v, py::handle out, py::handle lse,
                    bool causal, py::object scale, py::handle mask, double dropout_p, uint64_t seed) {
          return backward_impl(reference, grad_out, q, k, v, out, lse, causal, scale, mask, dropout_p, seed);
        },
        "grad_out"_a, "q"_a, "k"_a, "v"_a, "out"_a, "lse"_a, "causal"_a = false, "scale"_a = py::none(),
        "key_padding_mask"_a = py::none(), "dropout_p"_a = 0.0, "seed"_a = 0,
        "Fused attention backward (see fastnn.ops.attention_backward). Returns (dq, dk, dv).");
  }
}

}  // namespace fastnn::bindings
