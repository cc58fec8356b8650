// Bindings of the fused optimizers: _C.adam_, _C.sgd_, _C.clip_grad_norm_, _C.grad_norm.
// Tensor lists are validated element by element (messages name "params[3]" etc.).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/common.h"
#include "core/cuda_backend.h"
#include "fastnn/optim.h"
#include "fastnn/probe.h"

namespace fastnn::bindings {
namespace {

struct TensorList {
  std::vector<Tensor> ts;
  std::vector<float*> ptrs;
};

std::string idx_name(const char* arg, size_t i) { return detail::concat(arg, "[", i, "]"); }

// Converts and checks one list: float32, contiguous, on `device`, shapes equal to ref[i].
TensorList get_list(py::handle obj, const char* op, const char* arg, const std::vector<Tensor>* ref,
                    const char* ref_arg, Device* device) {
  TensorList l;
  l.ts = to_tensor_list(obj, op, arg);
  if (ref) {
    FASTNN_CHECK(l.ts.size() == ref->size(), ValueError, op, ": argument '", arg, "': expected a list of ",
                 ref->size(), " tensors (as many as '", ref_arg, "'), got ", l.ts.size());
  }
  l.ptrs.resize(l.ts.size());
  for (size_t i = 0; i < l.ts.size(); ++i) {
    const Tensor& t = l.ts[i];
    if (device->type == DeviceType::cpu && i == 0 && !ref && t.dtype == DType::float32) *device = t.device();
    l.ptrs[i] = t.data_as<float>();
    // The element's name ("params[3]") is formatted only for an error: an ostringstream per
    // element and list was most of the cost of a step over a few small tensors.
    if (t.dtype == DType::float32 && t.device() == *device && t.is_contiguous() && (!ref || t.shape == (*ref)[i].shape))
      continue;
    const std::string name = idx_name(arg, i);
    expect_float32(t, op, name.c_str());
    expect_same_device(t, *device, op, name.c_str());
    expect_contiguous(t, op, name.c_str());
    if (ref) {
      FASTNN_CHECK(t.shape == (*ref)[i].shape, ValueError, op, ": argument '", name, "': expected shape ",
                   shape_str((*ref)[i].shape), " (the shape of '", idx_name(ref_arg, i), "'), got ",
                   shape_str(t.shape));
    }
  }
  return l;
}

void expect_disjoint(const TensorList& a, const char* an, const TensorList& b, const char* bn, const char* op) {
  for (size_t i = 0; i < a.ts.size() && i < b.ts.size(); ++i) {
    if (a.ts[i].numel() == 0) continue;
    FASTNN_CHECK(!overlaps(a.ts[i], b.ts[i]), ValueError, op, ": argument '", idx_name(an, i),
                 "': expected memory disjoint from '", idx_name(bn, i), "', got overlapping tensors");
  }
}

float scalar_arg(py::handle obj, const char* op, const char* arg) {
  if (py::isinstance<py::bool_>(obj))
    throw TypeError(detail::concat(op, ": argument '", arg, "': expected a number, got bool"));
  if (py::isinstance<py::float_>(obj) || py::isinstance<py::int_>(obj)) return obj.cast<float>();
  Tensor t = to_tensor(obj, op, arg);
  FASTNN_CHECK(t.numel() == 1, ValueError, op, ": argument '", arg, "': expected a number or a 1-element tensor, got shape ",
               shape_str(t.shape));
  FASTNN_CHECK(t.device().type == DeviceType::cpu, ValueError, op, ": argument '", arg,
               "': expected a CPU tensor, got one on ", t.device().str());
  Tensor c = to_dtype(t, DType::float32);
  return *c.data_as<float>();
}

void check_finite_nonneg(double v, const char* op, const char* arg) {
  FASTNN_CHECK(std::isfinite(v) && v >= 0.0, ValueError, op, ": argument '", arg,
               "': expected a finite value >= 0, got ", v);
}

std::vector<int64_t> numels_of(const TensorList& l) {
  std::vector<int64_t> n(l.ts.size());
  for (size_t i = 0; i < l.ts.size(); ++i) n[i] = l.ts[i].numel();
  return n;
}

bool on_cuda(const Device& d) { return d.type == DeviceType::cuda; }

// Points an AdamArgs at the four lists of an Adam step (gp, numels: storage that outlives a).
void set_adam_lists(AdamArgs& a, const TensorList& p, const TensorList& m1, const TensorList& m2,
                    const std::vector<const float*>& gp, const std::vector<int64_t>& numels) {
  a.num_tensors = static_cast<int64_t>(p.ts.size());
  a.params = p.ptrs.data();
  a.grads = gp.data();
  a.exp_avgs = m1.ptrs.data();
  a.exp_avg_sqs = m2.ptrs.data();
  a.numels = numels.data();
}

}  // namespace

FASTNN_BINDINGS(optim) {
  m.def(
      "adam_",
      [](py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs, py::handle max_exp_avg_sqs,
         int64_t step, double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled,
         bool maximize, bool amsgrad, py::handle grad_scale, py::handle found_inf) {
        const char* op = "adam_";
        FASTNN_CHECK(step >= 1, ValueError, op, ": argument 'step': expected an integer >= 1, got ", step);
        check_finite_nonneg(lr, op, "lr");
        check_finite_nonneg(eps, op, "eps");
        check_finite_nonneg(weight_decay, op, "weight_decay");
        FASTNN_CHECK(beta1 >= 0.0 && beta1 < 1.0, ValueError, op, ": argument 'beta1': expected 0 <= beta1 < 1, got ", beta1);
        FASTNN_CHECK(beta2 >= 0.0 && beta2 < 1.0, ValueError, op, ": argument 'beta2': expected 0 <= beta2 < 1, got ", beta2);
        Device dev;
        TensorList p = get_list(params, op, "params", nullptr, nullptr, &dev);
        TensorList g = get_list(grads, op, "grads", &p.ts, "params", &dev);
        TensorList m1 = get_list(exp_avgs, op, "exp_avgs", &p.ts, "params", &dev);
        TensorList m2 = get_list(exp_avg_sqs, op, "exp_avg_sqs", &p.ts, "params", &dev);
        TensorList mx;
        if (amsgrad) {
          FASTNN_CHECK(!max_exp_avg_sqs.is_none(), ValueError, op,
                       ": argument 'max_exp_avg_sqs': expected a list of tensors when amsgrad=True, got None");
          mx = get_list(max_exp_avg_sqs, op, "max_exp_avg_sqs", &p.ts, "params", &dev);
        }
        expect_disjoint(p, "params", g, "grads", op);
        expect_disjoint(p, "params", m1, "exp_avgs", op);
        expect_disjoint(p, "params", m2, "exp_avg_sqs", op);
        expect_disjoint(m1, "exp_avgs", m2, "exp_avg_sqs", op);
        expect_disjoint(g, "grads", m1, "exp_avgs", op);
        expect_disjoint(g, "grads", m2, "exp_avg_sqs", op);
        if (amsgrad) {
          expect_disjoint(mx, "max_exp_avg_sqs", m2, "exp_avg_sqs", op);
          expect_disjoint(mx, "max_exp_avg_sqs", p, "params", op);
        }
        float gs = 1.0f;
        if (!grad_scale.is_none()) {
          gs = scalar_arg(grad_scale, op, "grad_scale");
          FASTNN_CHECK(std::isfinite(gs) && gs != 0.0f, ValueError, op,
                       ": argument 'grad_scale': expected a finite non-zero number, got ", gs);
        }
        Tensor fi;
        if (!found_inf.is_none()) {
          fi = to_tensor(found_inf, op, "found_inf");
          expect_float32(fi, op, "found_inf");
          FASTNN_CHECK(fi.numel() == 1, ValueError, op, ": argument 'found_inf': expected a 1-element tensor, got shape ",
                       shape_str(fi.shape));
          expect_same_device(fi, dev, op, "found_inf");
        }
        std::vector<int64_t> numels = numels_of(p);
        std::vector<const float*> gp(g.ptrs.begin(), g.ptrs.end());
        AdamArgs a;
        set_adam_lists(a, p, m1, m2, gp, numels);
        a.max_exp_avg_sqs = amsgrad ? mx.ptrs.data() : nullptr;
        a.lr = lr;
        a.beta1 = beta1;
        a.beta2 = beta2;
        a.eps = eps;
        a.weight_decay = weight_decay;
        // bias corrections in double, as torch computes them in Python floats
        const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
        const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
        a.step_size = lr / bc1;
        a.bias_correction2_sqrt = std::sqrt(bc2);
        a.decoupled = decoupled;
        a.maximize = maximize;
        a.amsgrad = amsgrad;
        a.grad_scale = gs;
        a.found_inf = fi.defined() ? fi.data_as<float>() : nullptr;
        without_gil([&] {
          if (on_cuda(dev)) require_cuda_backend().adam(a, dev.index);
          else cpu::adam(a);
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"),
      py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"),
      py::arg("decoupled"), py::arg("maximize"), py::arg("amsgrad"), py::arg("grad_scale"), py::arg("found_inf"));

  // `fastnn bench adam`'s limit, timed on the benchmark's own buffers (see fastnn/probe.h).
  m.def(
      "_probe_adam_pattern",
      [](py::handle params, py::handle grads, py::handle exp_avgs, py::handle exp_avg_sqs) {
        const char* op = "_probe_adam_pattern";
        Device dev;
        TensorList p = get_list(params, op, "params", nullptr, nullptr, &dev);
        TensorList g = get_list(grads, op, "grads", &p.ts, "params", &dev);
        TensorList m1 = get_list(exp_avgs, op, "exp_avgs", &p.ts, "params", &dev);
        TensorList m2 = get_list(exp_avg_sqs, op, "exp_avg_sqs", &p.ts, "params", &dev);
        FASTNN_CHECK(!on_cuda(dev), ValueError, op, ": argument 'params': expected CPU tensors, got tensors on ",
                     dev.str());
        std::vector<int64_t> numels = numels_of(p);
        std::vector<const float*> gp(g.ptrs.begin(), g.ptrs.end());
        AdamArgs a;
        set_adam_lists(a, p, m1, m2, gp, numels);
        without_gil([&] { cpu::probe_adam_pattern(a); });
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"));

  m.def(
      "sgd_",
      [](py::handle params, py::handle grads, py::handle momentum_buffers, double lr, double momentum,
         double dampening, bool nesterov, double weight_decay, bool maximize, bool first_step) {
        const char* op = "sgd_";
        check_finite_nonneg(lr, op, "lr");
        check_finite_nonneg(momentum, op, "momentum");
        FASTNN_CHECK(std::isfinite(dampening), ValueError, op, ": argument 'dampening': expected a finite value, got ",
                     dampening);
        check_finite_nonneg(weight_decay, op, "weight_decay");
        FASTNN_CHECK(!nesterov || (momentum > 0.0 && dampening == 0.0), ValueError, op,
                     ": argument 'nesterov': expected momentum > 0 and dampening == 0 with nesterov=True, got momentum=",
                     momentum, ", dampening=", dampening);
        Device dev;
        TensorList p = get_list(params, op, "params", nullptr, nullptr, &dev);
        TensorList g = get_list(grads, op, "grads", &p.ts, "params", &dev);
        TensorList b;
        if (momentum != 0.0) {
          FASTNN_CHECK(!momentum_buffers.is_none(), ValueError, op,
                       ": argument 'momentum_buffers': expected a list of tensors when momentum != 0, got None");
          b = get_list(momentum_buffers, op, "momentum_buffers", &p.ts, "params", &dev);
          expect_disjoint(p, "params", b, "momentum_buffers", op);
          expect_disjoint(g, "grads", b, "momentum_buffers", op);
        }
        expect_disjoint(p, "params", g, "grads", op);
        std::vector<int64_t> numels = numels_of(p);
        std::vector<const float*> gp(g.ptrs.begin(), g.ptrs.end());
        SgdArgs a;
        a.num_tensors = static_cast<int64_t>(p.ts.size());
        a.params = p.ptrs.data();
        a.grads = gp.data();
        a.momentum_buffers = momentum != 0.0 ? b.ptrs.data() : nullptr;
        a.numels = numels.data();
        a.lr = lr;
        a.momentum = momentum;
        a.dampening = dampening;
        a.weight_decay = weight_decay;
        a.nesterov = nesterov;
        a.maximize = maximize;
        a.first_step = first_step;
        without_gil([&] {
          if (on_cuda(dev)) require_cuda_backend().sgd(a, dev.index);
          else cpu::sgd(a);
        });
      },
      py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("lr"), py::arg("momentum"),
      py::arg("dampening"), py::arg("nesterov"), py::arg("weight_decay"), py::arg("maximize"), py::arg("first_step"));

  auto parse_norm = [](double norm_type, const char* op) {
    FASTNN_CHECK(std::isinf(norm_type) ? norm_type > 0 : (norm_type > 0.0 && std::isfinite(norm_type)), ValueError, op,
                 ": argument 'norm_type': expected a number > 0 or inf, got ", norm_type);
    return norm_type;
  };

  m.def(
      "clip_grad_norm_",
      [parse_norm](py::handle grads, double max_norm, double norm_type) {
        const char* op = "clip_grad_norm_";
        parse_norm(norm_type, op);
        FASTNN_CHECK(!std::isnan(max_norm) && max_norm >= 0.0, ValueError, op,
                     ": argument 'max_norm': expected a number >= 0, got ", max_norm);
        Device dev;
        TensorList g = get_list(grads, op, "grads", nullptr, nullptr, &dev);
        std::vector<int64_t> numels = numels_of(g);
        double norm = 0.0;
        without_gil([&] {
          if (!on_cuda(dev)) {
            norm = cpu::clip_grad_norm(g.ptrs.data(), numels.data(), static_cast<int64_t>(g.ts.size()), max_norm,
                                       norm_type);
            return;
          }
          // cpu::clip_grad_norm's steps on the device (coefficient rule kept identical).
          CudaBackend& be = require_cuda_backend();
          std::vector<const float*> gp(g.ptrs.begin(), g.ptrs.end());
          GradNormArgs na;
          na.num_tensors = static_cast<int64_t>(g.ts.size());
          na.grads = gp.data();
          na.numels = numels.data();
          na.norm_type = norm_type;
          norm = be.grad_norm(na, dev.index);
          const float coef = static_cast<float>(max_norm / (norm + 1e-6));
          if (coef < 1.0f || std::isnan(norm)) {
            ScaleArgs sa;
            sa.num_tensors = na.num_tensors;
            sa.tensors = g.ptrs.data();
            sa.numels = numels.data();
            sa.scale = coef < 1.0f ? coef : NAN;
            be.scale_(sa, dev.index);
          }
        });
        return norm;
      },
      py::arg("grads"), py::arg("max_norm"), py::arg("norm_type"));

  m.def(
      "grad_norm",
      [parse_norm](py::handle grads, double norm_type) {
        const char* op = "grad_norm";
        parse_norm(norm_type, op);
        Device dev;
        TensorList g = get_list(grads, op, "grads", nullptr, nullptr, &dev);
        std::vector<int64_t> numels = numels_of(g);
        std::vector<const float*> gp(g.ptrs.begin(), g.ptrs.end());
        GradNormArgs a;
        a.num_tensors = static_cast<int64_t>(g.ts.size());
        a.grads = gp.data();
        a.numels = numels.data();
        a.norm_type = norm_type;
        double norm = 0.0;
        without_gil([&] { norm = on_cuda(dev) ? require_cuda_backend().grad_norm(a, dev.index) : cpu::grad_norm(a); });
        return norm;
      },
      py::arg("grads"), py::arg("norm_type"));
}

}  // namespace fastnn::bindings
