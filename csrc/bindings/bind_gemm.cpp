// Bindings of the GEMM family: gemm (BLAS semantics + fused epilogue), matmul (NumPy
// broadcasting), linear (PyTorch convention) and their backward passes. Everything is
// expressed as GemmArgs with strides; transposes and broadcasts are folded into
// strides, never copied (except a non-collapsible leading-dim layout in linear).
//
// Operand dtypes: float32; gemm / matmul / linear also take bfloat16 or float16 operands
// (both the same dtype): on CUDA the tensor-core path reads them directly (FP32
// accumulation); on the CPU they are widened to float32 first (exact), which computes
// the same products. Results, c, bias and out are float32. CUDA configuration copied
// into GemmArgs: allow_tf32 and the tile override (fastnn.cuda.set_allow_tf32 /
// set_gemm_tile), read once per call.
#include <algorithm>
#include <atomic>
#include <numeric>
#include <optional>

#include "bindings/common.h"
#include "bindings/cuda_settings.h"
#include "bindings/fastcall.h"
#include "fastnn/elementwise_math.h"
#include "fastnn/gemm.h"

namespace fastnn::bindings {
namespace {

// Configuration of the CUDA GEMM (not kernel state: copied into each GemmArgs); the TF32
// switch, shared with the convolution, is in bindings/cuda_settings.h.
std::atomic<int>& gemm_tile_setting() {
  static std::atomic<int> v{0};
  return v;
}

bool is_low_precision(DType dt) { return dt == DType::bfloat16 || dt == DType::float16; }

// `lowp`: a GEMM operand, which may also be bfloat16 / float16.
void expect_matrix_like(const Tensor& t, int64_t ndim, bool at_least, const char* op, const char* arg,
                        bool lowp = false) {
  const bool nd_ok = at_least ? t.ndim() >= ndim : t.ndim() == ndim;
  const bool dt_ok = t.dtype == DType::float32 || (lowp && is_low_precision(t.dtype));
  if (nd_ok && dt_ok) return;
  const std::string want = detail::concat(at_least ? "at least " : "", ndim, "-D ",
                                          lowp ? "float32, bfloat16 or float16" : "float32");
  const std::string got = detail::concat(t.ndim(), "-D ", dtype_name(t.dtype), " with shape ", shape_str(t.shape));
  if (!dt_ok) throw TypeError(detail::concat(op, ": argument '", arg, "': expected ", want, ", got ", got));
  throw ValueError(detail::concat(op, ": argument '", arg, "': expected ", want, ", got ", got));
}

// The two operands of one product share a dtype (no implicit promotion).
void expect_same_operand_dtype(const Tensor& a, const Tensor& b, const char* op, const char* b_arg) {
  FASTNN_CHECK(a.dtype == b.dtype, TypeError, op, ": argument '", b_arg, "': expected dtype ", dtype_name(a.dtype),
               " (the dtype of the other operand), got ", dtype_name(b.dtype));
}

// On the CPU a 16-bit operand is widened to float32 (exact), in place of `t`; float32 and
// CUDA operands are left as they are (no copy of the Tensor's shape vectors).
void widen_cpu_operand(Tensor& t) {
  if (t.device().type == DeviceType::cuda || !is_low_precision(t.dtype)) return;
  t = to_dtype(t, DType::float32);
}
Tensor cpu_operand(const Tensor& t) {
  Tensor r = t;
  widen_cpu_operand(r);
  return r;
}

// `p` advanced by `elems` elements of `dt` (GemmArgs keeps 16-bit operand addresses in
// float pointers: see GemmArgs::ab_dtype).
const float* advance(const float* p, int64_t elems, DType dt) {
  return reinterpret_cast<const float*>(reinterpret_cast<const char*>(p) + elems * static_cast<int64_t>(itemsize(dt)));
}

// Runs the kernel on the tensors' device. Pointers and strides are already in `g`.
void run_gemm(GemmArgs g, const Device& dev) {
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  if (dev.type == DeviceType::cuda) {
    g.allow_tf32 = allow_tf32_setting().load(std::memory_order_relaxed);
    g.tile = gemm_tile_setting().load(std::memory_order_relaxed);
    require_cuda_backend().gemm(g, dev.index);
  } else {
    cpu::gemm(g);
  }
}

// CPU products of at most this many multiply-adds run with the GIL held: they take a few
// microseconds (64 x 128 x 10 = 82K: ~2-5 us), and releasing and re-acquiring the GIL costs
// ~0.1 us of that. Anything larger, and every CUDA product (an emulated kernel is ~1000x
// slower; a real one may wait on the stream), releases it.
constexpr double kGemmHoldGilMaxWork = 131072.0;

bool gemm_releases_gil(double batch_mnk, const Device& dev) {
  return dev.type == DeviceType::cuda || batch_mnk > kGemmHoldGilMaxWork;
}

// run_gemm, with the GIL released unless the product is small (see kGemmHoldGilMaxWork).
void run_gemm_gil_aware(const GemmArgs& g, const Device& dev) {
  if (!gemm_releases_gil(static_cast<double>(g.m) * g.n * g.k * g.batch, dev)) {
    run_gemm(g, dev);
    return;
  }
  py::gil_scoped_release nogil;
  run_gemm(g, dev);
}

bool same_view(const Tensor& a, const Tensor& b) {
  return a.data() == b.data() && a.shape == b.shape && a.strides == b.strides;
}

// out / result for an (m, n) product: the user's `out` (checked) or a new tensor; with
// beta != 0 it is first loaded with c (unless it already is c).
Tensor prepare_result(const Shape& shape, const Tensor& out, const Tensor& c, bool use_c, const Device& dev,
                      const char* op, std::initializer_list<std::pair<const Tensor*, const char*>> inputs) {
  Tensor r;
  if (out.defined()) {
    expect_matrix_like(out, static_cast<int64_t>(shape.size()), false, op, "out");
    expect_shape(out, shape, op, "out");
    expect_same_device(out, dev, op, "out");
    for (auto& [t, name] : inputs)
      if (t->defined()) expect_no_overlap(out, "out", *t, name, op);
    for (size_t d = 0; d < shape.size(); ++d)
      FASTNN_CHECK(shape[d] <= 1 || out.strides[d] != 0, ValueError, op,
                   ": argument 'out': expected a tensor without zero strides, got strides ", shape_str(out.strides));
    if (use_c && !same_view(out, c))
      FASTNN_CHECK(!overlaps(out, c), ValueError, op,
                   ": argument 'out' must be exactly argument 'c' or not share memory with it");
    r = out;
  } else {
    r = empty(shape, DType::float32, dev);
  }
  if (use_c && !same_view(r, c)) {
    py::gil_scoped_release nogil;
    copy_(r, c);
  }
  return r;
}

// ---- gemm ---------------------------------------------------------------------------
py::object gemm_py(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b, float alpha, float beta,
                   py::handle c_obj, py::handle bias_obj, py::handle act_obj, py::handle out_obj) {
  const char* op = "gemm";
  Tensor a = to_tensor(a_obj, op, "a");
  Tensor b = to_tensor(b_obj, op, "b");
  expect_matrix_like(a, 2, false, op, "a", true);
  expect_matrix_like(b, 2, false, op, "b", true);
  expect_same_operand_dtype(a, b, op, "b");
  const Device dev = a.device();
  expect_same_device(b, dev, op, "b");
  const Activation act = parse_activation(act_obj, op, "activation");
  const int64_t m = trans_a ? a.shape[1] : a.shape[0], k = trans_a ? a.shape[0] : a.shape[1];
  const int64_t k2 = trans_b ? b.shape[1] : b.shape[0], n = trans_b ? b.shape[0] : b.shape[1];
  FASTNN_CHECK(k == k2, ValueError, op, ": argument 'b': inner dimensions do not match: op(a) has shape (", m, ", ", k,
               ") (a ", shape_str(a.shape), ", trans_a=", trans_a ? "True" : "False", ") and op(b) has shape (", k2,
               ", ", n, ") (b ", shape_str(b.shape), ", trans_b=", trans_b ? "True" : "False", ")");
  Tensor bias = to_tensor_or_none(bias_obj, op, "bias");
  if (bias.defined()) {
    expect_matrix_like(bias, 1, false, op, "bias");
    FASTNN_CHECK(bias.shape[0] == n, ValueError, op, ": argument 'bias': expected length ", n,
                 " (the number of output columns), got shape ", shape_str(bias.shape));
    expect_same_device(bias, dev, op, "bias");
  }
  Tensor c = to_tensor_or_none(c_obj, op, "c");
  if (c.defined()) {
    expect_matrix_like(c, 2, false, op, "c");
    expect_shape(c, {m, n}, op, "c");
    expect_same_device(c, dev, op, "c");
  }
  const bool use_c = beta != 0.0f;
  FASTNN_CHECK(!use_c || c.defined(), ValueError, op, ": argument 'c': expected a (", m, ", ", n,
               ") tensor since beta = ", beta, " != 0, got None");
  Tensor out = to_tensor_or_none(out_obj, op, "out");
  // A bias that is not unit-stride is made contiguous (n floats): the epilogue reads it as a vector.
  if (bias.defined() && bias.shape[0] > 1 && bias.strides[0] != 1) bias = contiguous(bias);
  Tensor r = prepare_result({m, n}, out, c, use_c, dev, op, {{&a, "a"}, {&b, "b"}, {&bias, "bias"}});
  widen_cpu_operand(a), widen_cpu_operand(b);

  GemmArgs g;
  // BLAS: with alpha = 0 neither a nor b is read (a NaN there must not reach the result): an
  // empty product on every device.
  g.m = m, g.n = n, g.k = alpha == 0.0f ? 0 : k;
  g.a = static_cast<const float*>(a.data());  // 16-bit operands too: see GemmArgs::ab_dtype
  g.a_rs = trans_a ? a.strides[1] : a.strides[0];
  g.a_cs = trans_a ? a.strides[0] : a.strides[1];
  g.b = static_cast<const float*>(b.data());
  g.b_rs = trans_b ? b.strides[1] : b.strides[0];
  g.b_cs = trans_b ? b.strides[0] : b.strides[1];
  g.c = r.data_as<float>();
  g.c_rs = r.strides[0], g.c_cs = r.strides[1];
  g.alpha = alpha, g.beta = use_c ? beta : 0.0f;
  g.bias_col = bias.defined() ? bias.data_as<float>() : nullptr;
  g.activation = act;
  g.ab_dtype = a.dtype;
  run_gemm_gil_aware(g, dev);
  return wrap(std::move(r));
}

// ---- batched products over arbitrary (broadcast) batch dims -------------------------
// Per-batch-dim element strides of the three operands (0 = broadcast). Dims are
// collapsed where all three are jointly contiguous; the innermost remaining dim becomes
// GemmArgs::batch, the outer ones are looped over here.
void run_batched(GemmArgs g, Shape bshape, Shape as, Shape bs, Shape cs, const Device& dev) {
  // Drop size-1 dims.
  Shape s2, a2, b2, c2;
  for (size_t d = 0; d < bshape.size(); ++d) {
    if (bshape[d] == 0) return;
    if (bshape[d] == 1) continue;
    s2.push_back(bshape[d]), a2.push_back(as[d]), b2.push_back(bs[d]), c2.push_back(cs[d]);
  }
  // Collapse d into d+1 when stride[d] == stride[d+1] * size[d+1] for all operands.
  Shape s3, a3, b3, c3;
  for (size_t d = 0; d < s2.size(); ++d) {
    if (!s3.empty() && a3.back() == a2[d] * s2[d] && b3.back() == b2[d] * s2[d] && c3.back() == c2[d] * s2[d]) {
      s3.back() *= s2[d];
      a3.back() = a2[d], b3.back() = b2[d], c3.back() = c2[d];
    } else {
      s3.push_back(s2[d]), a3.push_back(a2[d]), b3.push_back(b2[d]), c3.push_back(c2[d]);
    }
  }
  if (s3.empty()) {
    g.batch = 1;
    run_gemm(g, dev);
    return;
  }
  const size_t nd = s3.size();
  g.batch = s3[nd - 1];
  g.a_batch_stride = a3[nd - 1], g.b_batch_stride = b3[nd - 1], g.c_batch_stride = c3[nd - 1];
  std::vector<int64_t> idx(nd - 1, 0);
  const float* a0 = g.a;
  const float* b0 = g.b;
  float* c0 = g.c;
  while (true) {
    int64_t oa = 0, ob = 0, oc = 0;
    for (size_t d = 0; d + 1 < nd; ++d) oa += idx[d] * a3[d], ob += idx[d] * b3[d], oc += idx[d] * c3[d];
    g.a = advance(a0, oa, g.ab_dtype), g.b = advance(b0, ob, g.ab_dtype), g.c = c0 + oc;
    run_gemm(g, dev);
    int64_t d = static_cast<int64_t>(nd) - 2;
    for (; d >= 0; --d) {
      if (++idx[d] < s3[d]) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
}

// Broadcast batch shapes (NumPy rules); nullopt if incompatible.
std::optional<Shape> broadcast_batch(const Shape& x, const Shape& y) {
  const size_t nd = std::max(x.size(), y.size());
  Shape r(nd);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t dx = i < nd - x.size() ? 1 : x[i - (nd - x.size())];
    const int64_t dy = i < nd - y.size() ? 1 : y[i - (nd - y.size())];
    if (dx != dy && dx != 1 && dy != 1) return std::nullopt;
    r[i] = dx == 1 ? dy : dx;
  }
  return r;
}

// Strides of t's batch dims (all but the last two) aligned to `bshape` (0 where broadcast).
Shape batch_strides(const Tensor& t, const Shape& bshape) {
  const size_t tb = t.shape.size() - 2;
  Shape s(bshape.size(), 0);
  for (size_t i = 0; i < tb; ++i) {
    const size_t d = bshape.size() - tb + i;
    s[d] = t.shape[i] == 1 ? 0 : t.strides[i];
  }
  return s;
}

Shape batch_shape(const Tensor& t) { return Shape(t.shape.begin(), t.shape.end() - 2); }

// NumPy's 1-D promotion: a (k,) -> (1, k); b (k,) -> (k, 1).
Tensor promote(const Tensor& t, bool is_a) {
  if (t.ndim() != 1) return t;
  Tensor r = t;
  if (is_a) {
    r.shape = {1, t.shape[0]};
    r.strides = {t.shape[0] * t.strides[0], t.strides[0]};
  } else {
    r.shape = {t.shape[0], 1};
    r.strides = {t.strides[0], 1};
  }
  return r;
}

struct MatmulPlan {
  Tensor a, b;       // promoted (>= 2-D)
  Shape bshape;      // broadcast batch shape
  Shape out_shape;   // user-visible result shape (1-D dims removed)
  Shape full_shape;  // bshape + (m, n)
  int64_t m, k, n;
};

MatmulPlan plan_matmul(const Tensor& a_in, const Tensor& b_in, const char* op, bool lowp) {
  expect_matrix_like(a_in, 1, true, op, "a", lowp);
  expect_matrix_like(b_in, 1, true, op, "b", lowp);
  expect_same_operand_dtype(a_in, b_in, op, "b");
  expect_same_device(b_in, a_in.device(), op, "b");
  MatmulPlan p;
  p.a = promote(cpu_operand(a_in), true);
  p.b = promote(cpu_operand(b_in), false);
  p.m = p.a.shape[p.a.ndim() - 2], p.k = p.a.shape[p.a.ndim() - 1];
  p.n = p.b.shape[p.b.ndim() - 1];
  const int64_t k2 = p.b.shape[p.b.ndim() - 2];
  FASTNN_CHECK(p.k == k2, ValueError, op, ": argument 'b': inner dimensions do not match: a has shape ",
               shape_str(a_in.shape), " and b has shape ", shape_str(b_in.shape), " (", p.k, " != ", k2, ")");
  auto bs = broadcast_batch(batch_shape(p.a), batch_shape(p.b));
  FASTNN_CHECK(bs.has_value(), ValueError, op, ": cannot broadcast the batch dimensions of a ", shape_str(a_in.shape),
               " and b ", shape_str(b_in.shape));
  p.bshape = *bs;
  p.full_shape = p.bshape;
  p.full_shape.push_back(p.m);
  p.full_shape.push_back(p.n);
  p.out_shape = p.bshape;
  if (a_in.ndim() > 1) p.out_shape.push_back(p.m);
  if (b_in.ndim() > 1) p.out_shape.push_back(p.n);
  return p;
}

// A view of `t` (shape `out_shape`, contiguous) as the full (batch, m, n) shape.
Tensor as_full(const Tensor& t, const Shape& full) {
  Tensor r = t;
  r.shape = full;
  r.strides = contiguous_strides(full);
  return r;
}

GemmArgs matrix_args(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c, int64_t m, int64_t n,
                     int64_t k) {
  const int64_t an = a.ndim(), bn = b.ndim(), cn = c.ndim();
  GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.a = static_cast<const float*>(a.data());  // 16-bit operands too: see GemmArgs::ab_dtype
  g.a_rs = ta ? a.strides[an - 1] : a.strides[an - 2];
  g.a_cs = ta ? a.strides[an - 2] : a.strides[an - 1];
  g.b = static_cast<const float*>(b.data());
  g.b_rs = tb ? b.strides[bn - 1] : b.strides[bn - 2];
  g.b_cs = tb ? b.strides[bn - 2] : b.strides[bn - 1];
  g.c = c.data_as<float>();
  g.c_rs = c.strides[cn - 2], g.c_cs = c.strides[cn - 1];
  g.ab_dtype = a.dtype;
  return g;
}

py::object matmul_py(py::handle a_obj, py::handle b_obj, py::handle out_obj) {
  const char* op = "matmul";
  Tensor a_in = to_tensor(a_obj, op, "a");
  Tensor b_in = to_tensor(b_obj, op, "b");
  MatmulPlan p = plan_matmul(a_in, b_in, op, true);
  const Device dev = a_in.device();
  Tensor out = to_tensor_or_none(out_obj, op, "out");
  Tensor none;
  Tensor r = prepare_result(p.out_shape, out, none, false, dev, op, {{&a_in, "a"}, {&b_in, "b"}});
  Tensor rf = r;
  if (rf.ndim() != static_cast<int64_t>(p.full_shape.size()) || !r.is_contiguous()) {
    if (!r.is_contiguous()) {  // the user's strided `out`: compute into a temporary, then copy
      rf = empty(p.out_shape, DType::float32, dev);
    }
    rf = as_full(rf, p.full_shape);
  }
  GemmArgs g = matrix_args(p.a, false, p.b, false, rf, p.m, p.n, p.k);
  double work = static_cast<double>(p.m) * p.n * p.k;
  for (int64_t d : p.bshape) work *= static_cast<double>(d);
  std::optional<py::gil_scoped_release> nogil;
  if (gemm_releases_gil(work, dev)) nogil.emplace();
  run_batched(g, p.bshape, batch_strides(p.a, p.bshape), batch_strides(p.b, p.bshape), batch_strides(rf, p.bshape),
              dev);
  if (rf.data() != r.data()) {
    Tensor tmp = rf;
    tmp.shape = r.shape;
    tmp.strides = contiguous_strides(r.shape);
    copy_(r, tmp);
  }
  nogil.reset();
  return wrap(std::move(r));
}

// Gradient of one operand of a batched product, reduced over the dims where that
// operand was broadcast: grad_x[xb] = sum over batch indices mapping to xb of
// op(l) @ op(r). `x` is the promoted operand (its batch shape may be shorter).
Tensor reduce_grad(const Tensor& x, const Shape& bshape, const Tensor& l, bool tl, const Tensor& rr, bool tr,
                   int64_t m, int64_t n, int64_t k, const Device& dev) {
  Tensor gx = empty(x.shape, DType::float32, dev);
  Shape xs = batch_strides(gx, bshape);
  bool broadcast = false;
  const size_t off = bshape.size() - (x.shape.size() - 2);
  for (size_t d = 0; d < bshape.size(); ++d) {
    const int64_t xd = d < off ? 1 : x.shape[d - off];
    if (xd != bshape[d]) broadcast = true;
  }
  GemmArgs g = matrix_args(l, tl, rr, tr, gx, m, n, k);
  if (!broadcast) {
    run_batched(g, bshape, batch_strides(l, bshape), batch_strides(rr, bshape), xs, dev);
    return gx;
  }
  // Sequential accumulation: first product of each output slice overwrites (beta 0);
  // the slices are visited in order, so "first" = every broadcast index is 0.
  const size_t nd = bshape.size();
  for (int64_t d = 0; d < static_cast<int64_t>(nd); ++d)
    if (bshape[d] == 0) {
      // Nothing to sum: zero gradient.
      Tensor z = zeros(x.shape, DType::float32, dev);
      return z;
    }
  Shape ls = batch_strides(l, bshape), rs = batch_strides(rr, bshape);
  std::vector<int64_t> idx(nd, 0);
  const float* l0 = g.a;  // float32 operands (backward takes float32 only)
  const float* r0 = g.b;
  float* c0 = g.c;
  while (true) {
    int64_t ol = 0, orr = 0, oc = 0;
    bool first = true;
    for (size_t d = 0; d < nd; ++d) {
      ol += idx[d] * ls[d], orr += idx[d] * rs[d], oc += idx[d] * xs[d];
      if (xs[d] == 0 && idx[d] != 0) first = false;
    }
    GemmArgs one = g;
    one.a = l0 + ol, one.b = r0 + orr, one.c = c0 + oc;
    one.beta = first ? 0.0f : 1.0f;
    run_gemm(one, dev);
    int64_t d = static_cast<int64_t>(nd) - 1;
    for (; d >= 0; --d) {
      if (++idx[d] < bshape[d]) break;
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return gx;
}

Tensor reshape_like(const Tensor& t, const Shape& shape) {  // t contiguous
  Tensor r = t;
  r.shape = shape;
  r.strides = contiguous_strides(shape);
  return r;
}

py::tuple matmul_backward_py(py::handle g_obj, py::handle a_obj, py::handle b_obj) {
  const char* op = "matmul_backward";
  Tensor a_in = to_tensor(a_obj, op, "a");
  Tensor b_in = to_tensor(b_obj, op, "b");
  Tensor grad = to_tensor(g_obj, op, "grad");
  MatmulPlan p = plan_matmul(a_in, b_in, op, false);
  const Device dev = a_in.device();
  expect_matrix_like(grad, static_cast<int64_t>(p.out_shape.size()), false, op, "grad");
  expect_shape(grad, p.out_shape, op, "grad");
  expect_same_device(grad, dev, op, "grad");
  // grad viewed with the full (batch, m, n) shape: re-insert the removed unit dims.
  Tensor gf = grad;
  {
    Shape st(p.full_shape.size());
    const size_t nb = p.bshape.size();
    for (size_t d = 0; d < nb; ++d) st[d] = grad.strides[d];
    size_t gd = nb;
    st[nb] = a_in.ndim() > 1 ? grad.strides[gd++] : 0;
    st[nb + 1] = b_in.ndim() > 1 ? grad.strides[gd++] : 0;
    gf.shape = p.full_shape;
    gf.strides = st;
  }
  Tensor ga, gb;
  {
    py::gil_scoped_release nogil;
    // dA = dC @ B^T  (m x n) (n x k);  dB = A^T @ dC  (k x m) (m x n)
    ga = reduce_grad(p.a, p.bshape, gf, false, p.b, true, p.m, p.k, p.n, dev);
    gb = reduce_grad(p.b, p.bshape, p.a, true, gf, false, p.k, p.n, p.m, dev);
  }
  return py::make_tuple(wrap(reshape_like(ga, a_in.shape)), wrap(reshape_like(gb, b_in.shape)));
}

// ---- linear ---------------------------------------------------------------------------
// x (..., in) as an (M, in) matrix with row stride *rs if its leading dims collapse.
bool rows_collapse(const Tensor& x, int64_t* rows, int64_t* rs) {
  // No rows (a zero-size leading dimension): any strides do. Without this a (0, 0, k) input
  // failed the stride test even after contiguous() and left rows / rs unset (ASan: SEGV in
  // gemm_pack_a with a garbage row count, tests/test_fuzz_layers.py).
  for (int64_t d = 0; d + 1 < x.ndim(); ++d) {
    if (x.shape[d] == 0) {
      *rows = 0;
      *rs = x.shape.back();
      return true;
    }
  }
  int64_t inner = 1, stride = 0;
  bool have = false;
  for (int64_t d = x.ndim() - 2; d >= 0; --d) {
    const int64_t s = x.shape[d];
    if (s == 1) continue;
    if (!have) {
      stride = x.strides[d];
      have = true;
    } else if (x.strides[d] != stride * inner) {
      return false;
    }
    inner *= s;
  }
  *rows = inner;
  *rs = have ? stride : x.shape.back();  // a single row: the stride is never used
  return true;
}

Tensor as_rows(const Tensor& x, const char* op) {  // (M, in) view, copying only if needed
  int64_t rows, rs;
  Tensor t = x;
  if (!rows_collapse(t, &rows, &rs)) {
    t = contiguous(x);
    rows_collapse(t, &rows, &rs);
  }
  Tensor r = t;
  r.shape = {rows, x.shape[x.ndim() - 1]};
  r.strides = {rs, t.strides[t.ndim() - 1]};
  return r;
}

void check_linear(const Tensor& x, const Tensor& w, const Tensor& bias, const char* op, bool lowp) {
  expect_matrix_like(x, 1, true, op, "x", lowp);
  expect_matrix_like(w, 2, false, op, "weight", lowp);
  expect_same_operand_dtype(x, w, op, "weight");
  expect_same_device(w, x.device(), op, "weight");
  FASTNN_CHECK(x.shape.back() == w.shape[1], ValueError, op,
               ": argument 'weight': inner dimensions do not match: x has shape ", shape_str(x.shape),
               " and weight has shape ", shape_str(w.shape), " (expected weight of shape (out_features, ",
               x.shape.back(), "))");
  if (bias.defined()) {
    expect_matrix_like(bias, 1, false, op, "bias");
    FASTNN_CHECK(bias.shape[0] == w.shape[0], ValueError, op, ": argument 'bias': expected length ", w.shape[0],
                 " (out_features), got shape ", shape_str(bias.shape));
    expect_same_device(bias, x.device(), op, "bias");
  }
}

py::object linear_py(py::handle x_obj, py::handle w_obj, py::handle bias_obj, py::handle act_obj) {
  const char* op = "linear";
  Tensor x = to_tensor(x_obj, op, "x");
  Tensor w = to_tensor(w_obj, op, "weight");
  Tensor bias = to_tensor_or_none(bias_obj, op, "bias");
  check_linear(x, w, bias, op, true);
  widen_cpu_operand(x), widen_cpu_operand(w);
  const Activation act = parse_activation(act_obj, op, "activation");
  const Device dev = x.device();
  if (bias.defined() && bias.shape[0] > 1 && bias.strides[0] != 1) bias = contiguous(bias);
  Shape out_shape = x.shape;
  out_shape.back() = w.shape[0];
  Tensor r = empty(out_shape, DType::float32, dev);
  Tensor xm = as_rows(x, op);
  Tensor rm = reshape_like(r, {xm.shape[0], w.shape[0]});
  GemmArgs g = matrix_args(xm, false, w, true, rm, xm.shape[0], w.shape[0], w.shape[1]);
  g.bias_col = bias.defined() ? bias.data_as<float>() : nullptr;
  g.activation = act;
  run_gemm_gil_aware(g, dev);
  return wrap(std::move(r));
}

py::tuple linear_backward_py(py::handle g_obj, py::handle x_obj, py::handle w_obj, bool need_bias) {
  const char* op = "linear_backward";
  Tensor x = to_tensor(x_obj, op, "x");
  Tensor w = to_tensor(w_obj, op, "weight");
  Tensor grad = to_tensor(g_obj, op, "grad");
  Tensor none;
  check_linear(x, w, none, op, false);
  const Device dev = x.device();
  Shape out_shape = x.shape;
  out_shape.back() = w.shape[0];
  expect_matrix_like(grad, x.ndim(), false, op, "grad");
  expect_shape(grad, out_shape, op, "grad");
  expect_same_device(grad, dev, op, "grad");
  Tensor xm = as_rows(x, op), gm = as_rows(grad, op);
  const int64_t rows = xm.shape[0], in_f = w.shape[1], out_f = w.shape[0];
  Tensor gx = empty(x.shape, DType::float32, dev);
  Tensor gw = empty(w.shape, DType::float32, dev);
  Tensor gb;
  if (need_bias) gb = empty({out_f}, DType::float32, dev);
  Tensor ones;  // the 1-element "row of ones" of db = 1^T dY
  if (need_bias) ones = empty({1}, DType::float32, dev);
  {
    py::gil_scoped_release nogil;
    if (need_bias) {
      // Written where it lives: on CUDA by the fill kernel on the stream, so a training step's
      // bias gradient makes no host->device copy (and no synchronisation).
      if (dev.type == DeviceType::cpu) *ones.data_as<float>() = 1.0f;
      else cuda_op("ewm_unary", UnaryArgs{UnaryOp::fill, 1, nullptr, ones.data_as<float>(), 1.0f}, dev.index);
    }
    // dX = dY @ W         (rows x out) (out x in)
    run_gemm(matrix_args(gm, false, w, false, reshape_like(gx, {rows, in_f}), rows, in_f, out_f), dev);
    // dW = dY^T @ X       (out x rows) (rows x in)
    run_gemm(matrix_args(gm, true, xm, false, gw, out_f, in_f, rows), dev);
    if (need_bias) {
      // db = 1^T dY: a (1 x rows) row of ones through a zero-stride A.
      GemmArgs g;
      g.m = 1, g.n = out_f, g.k = rows;
      g.a = ones.data_as<float>(), g.a_rs = 0, g.a_cs = 0;
      g.b = gm.data_as<float>(), g.b_rs = gm.strides[0], g.b_cs = gm.strides[1];
      g.c = gb.data_as<float>(), g.c_rs = out_f, g.c_cs = 1;
      run_gemm(g, dev);
    }
  }
  return py::make_tuple(wrap(gx), wrap(gw), need_bias ? wrap(gb) : py::none());
}

// ---- the public entry points as fastcall builtins (fastcall.h) --------------------------
PyObject* gemm_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return fastcall_guard([&] {
    const char* op = "gemm";
    static PyObject* const one = PyFloat_FromDouble(1.0);  // immortal defaults (never released)
    static PyObject* const zero = PyFloat_FromDouble(0.0);
    PyObject* v[10];
    parse_fastcall(op, args, nargs, kwnames,
                   {{"a", nullptr}, {"b", nullptr}, {"trans_a", Py_False}, {"trans_b", Py_False}, {"alpha", one},
                    {"beta", zero}, {"c", Py_None}, {"bias", Py_None}, {"activation", Py_None}, {"out", Py_None}},
                   2, v);
    const float alpha = arg_float(v[4], op, "alpha"), beta = arg_float(v[5], op, "beta");
    return gemm_py(v[0], v[1], arg_bool(v[2], op, "trans_a"), arg_bool(v[3], op, "trans_b"), alpha, beta, v[6],
                   v[7], v[8], v[9]);
  });
}

PyObject* matmul_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return fastcall_guard([&] {
    PyObject* v[3];
    parse_fastcall("matmul", args, nargs, kwnames, {{"a", nullptr}, {"b", nullptr}, {"out", Py_None}}, 2, v);
    return matmul_py(v[0], v[1], v[2]);
  });
}

PyObject* linear_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return fastcall_guard([&] {
    PyObject* v[4];
    parse_fastcall("linear", args, nargs, kwnames,
                   {{"x", nullptr}, {"weight", nullptr}, {"bias", Py_None}, {"activation", Py_None}}, 3, v);
    return linear_py(v[0], v[1], v[2], v[3]);
  });
}

// ---- CUDA GEMM configuration and plan ---------------------------------------------------
void set_gemm_tile(int tile) {
  FASTNN_CHECK(tile == 0 || tile == 64 || tile == 128, ValueError,
               "set_gemm_tile: argument 'tile': expected 0 (heuristic), 64 or 128, got ", tile);
  gemm_tile_setting().store(tile, std::memory_order_relaxed);
}

// (path, tile) the CUDA dispatcher picks for an (m x k) @ (k x n) product of `dtype`
// operands, `batch` times, under the current configuration.
py::tuple cuda_gemm_plan(int64_t m, int64_t n, int64_t k, int64_t batch, py::handle dtype_obj, py::handle dev_obj) {
  const char* op = "_cuda_gemm_plan";
  const DType dt = parse_dtype(dtype_obj, op, "dtype");
  FASTNN_CHECK(dt == DType::float32 || is_low_precision(dt), TypeError, op,
               ": argument 'dtype': expected float32, bfloat16 or float16, got ", dtype_name(dt));
  const Device dev = parse_device(dev_obj, op, "device");
  FASTNN_CHECK(dev.type == DeviceType::cuda, ValueError, op, ": argument 'device': expected a CUDA device, got ",
               dev.str());
  GemmPlanQuery q;
  q.args.m = m, q.args.n = n, q.args.k = k, q.args.batch = batch, q.args.ab_dtype = dt;
  q.args.allow_tf32 = allow_tf32_setting().load(std::memory_order_relaxed);
  q.args.tile = gemm_tile_setting().load(std::memory_order_relaxed);
  int path = -1, tile = 0;
  q.path = &path, q.tile = &tile;
  cuda_op("gemm_plan", q, dev.index);
  static const char* const names[] = {"fp32", "tf32", "bf16", "fp16"};
  return py::make_tuple(names[path], tile);
}

}  // namespace

FASTNN_BINDINGS(gemm) {
  // gemm / matmul / linear: fastcall builtins (no pybind11 dispatch, fastnn.ops re-exports
  // them as they are). The first docstring line is the signature inspect.signature reads.
  static PyMethodDef gemm_def = {
      "gemm", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&gemm_fastcall)),
      METH_FASTCALL | METH_KEYWORDS,
      "gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, activation=None, "
      "out=None)\n--\n\n"
      "act(alpha * op(a) @ op(b) + beta * c + bias), float32, BLAS semantics; op(x) is x.T when trans_x.\n"
      "bias has one entry per output column; activation: None, 'relu', 'gelu', 'gelu_tanh', 'sigmoid', 'tanh'.\n"
      "c is only read when beta != 0 and is never modified: the result is a new tensor unless out= is given\n"
      "(out may be c itself for an in-place update, but must not share memory with a, b or bias)."};
  static PyMethodDef matmul_def = {
      "matmul", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&matmul_fastcall)),
      METH_FASTCALL | METH_KEYWORDS,
      "matmul(a, b, *, out=None)\n--\n\n"
      "a @ b following numpy.matmul (broadcast batch dims, 1-D operands promoted then squeezed)."};
  static PyMethodDef linear_def = {
      "linear", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&linear_fastcall)),
      METH_FASTCALL | METH_KEYWORDS,
      "linear(x, weight, bias=None, *, activation=None)\n--\n\n"
      "act(x @ weight.T + bias); x: (..., in_features), weight: (out_features, in_features)."};
  add_fastcall(m, &gemm_def);
  add_fastcall(m, &matmul_def);
  add_fastcall(m, &linear_def);
  m.def("matmul_backward", &matmul_backward_py, py::arg("grad"), py::arg("a"), py::arg("b"),
        "(grad_a, grad_b) of matmul(a, b), reduced over broadcast dims.");
  m.def(
      "_gemm_releases_gil",
      [](double batch_mnk, py::handle dev) {
        return gemm_releases_gil(batch_mnk, parse_device(dev, "_gemm_releases_gil", "device"));
      },
      py::arg("batch_mnk"), py::arg("device") = "cpu",
      "Whether gemm / matmul / linear release the GIL for a product of batch_mnk multiply-adds on device.");
  m.def("linear_backward", &linear_backward_py, py::arg("grad"), py::arg("x"), py::arg("weight"),
        py::arg("need_bias") = true, "(grad_x, grad_weight, grad_bias or None) of linear (no activation).");
  m.def(
      "_set_allow_tf32", [](bool v) { allow_tf32_setting().store(v, std::memory_order_relaxed); }, py::arg("allow"),
      "CUDA GEMM and conv2d: let float32 products use TF32 tensor cores (default False).");
  m.def(
      "_get_allow_tf32", [] { return allow_tf32_setting().load(std::memory_order_relaxed); },
      "CUDA GEMM and conv2d: whether float32 products may use TF32 tensor cores.");
  m.def("_set_gemm_tile", &set_gemm_tile, py::arg("tile"),
        "CUDA GEMM block tile: 0 = heuristic (default), 64 or 128 = forced.");
  m.def(
      "_get_gemm_tile", [] { return gemm_tile_setting().load(std::memory_order_relaxed); },
      "CUDA GEMM block tile setting (0 = heuristic).");
  m.def("_cuda_gemm_plan", &cuda_gemm_plan, py::arg("m"), py::arg("n"), py::arg("k"), py::arg("batch"),
        py::arg("dtype"), py::arg("device") = "cuda",
        "(path, tile) the CUDA GEMM dispatcher picks for this product under the current configuration.");
}

}  // namespace fastnn::bindings
