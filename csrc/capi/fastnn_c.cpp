// The C ABI of fastnn_c.h over the C++ kernel API (fastnn::cpu::*).
//
// Each entry point validates its sizes (the kernels trust their arguments), fills the
// kernel's argument struct and calls it inside `guarded`, which turns every C++ exception
// into a status code and the thread-local message returned by fastnn_last_error().
#include "fastnn/fastnn_c.h"

#include <cmath>
#include <new>
#include <string>

#include "fastnn/fastnn.h"

namespace {

thread_local std::string g_last_error;


template <class F>
fastnn_status guarded(const char* fn, F&& body) noexcept {
  g_last_error.clear();
  try {
    body();
    return FASTNN_OK;
  } catch (const fastnn::TypeError& e) {
    g_last_error = std::string(fn) + ": " + e.what();
    return FASTNN_ERROR_TYPE;
  } catch (const fastnn::IndexError& e) {
    g_last_error = std::string(fn) + ": " + e.what();
    return FASTNN_ERROR_INDEX;
  } catch (const std::invalid_argument& e) {  // fastnn::ValueError
    g_last_error = std::string(fn) + ": " + e.what();
    return FASTNN_ERROR_VALUE;
  } catch (const std::bad_alloc& e) {  // fastnn::OutOfMemory
    g_last_error = std::string(fn) + ": out of memory: " + e.what();
    return FASTNN_ERROR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    g_last_error = std::string(fn) + ": " + e.what();
    return FASTNN_ERROR_RUNTIME;
  } catch (...) {
    g_last_error = std::string(fn) + ": unknown C++ exception";
    return FASTNN_ERROR_RUNTIME;
  }
}

void expect_size(int64_t v, const char* arg, int64_t min = 0) {
  FASTNN_CHECK(v >= min, ValueError, "argument '", arg, "': expected a size >= ", min, ", got ", v);
}

// Data is required unless the array has no elements.
void expect_data(const void* p, int64_t numel, const char* arg) {
  FASTNN_CHECK(p != nullptr || numel == 0, TypeError, "argument '", arg, "': expected a pointer to ", numel,
               " floats, got NULL");
}

fastnn::Activation activation_of(int act) {
  FASTNN_CHECK(act >= FASTNN_ACTIVATION_NONE && act <= FASTNN_ACTIVATION_TANH, ValueError,
               "argument 'activation': expected a fastnn_activation in [0, 5], got ", act);
  return static_cast<fastnn::Activation>(act);
}

// An output matrix's strides must not send two elements to one address: with the dims sorted
// by |stride|, the larger stride must step over the whole extent of the smaller dimension.
void expect_no_self_overlap(int64_t rows, int64_t cols, int64_t rs, int64_t cs, const char* arg) {
  int64_t n0 = cols, s0 = std::llabs(cs), n1 = rows, s1 = std::llabs(rs);
  if (n0 <= 1 || (n1 > 1 && s1 < s0)) std::swap(n0, n1), std::swap(s0, s1);
  const bool ok = (n0 <= 1 || s0 >= 1) && (n1 <= 1 || s1 >= n0 * s0);
  FASTNN_CHECK(ok, ValueError, "argument '", arg, "': strides (", rs, ", ", cs, ") map two elements of a ", rows,
               " x ", cols, " matrix to the same address");
}

fastnn::Conv2dArgs conv_plan(const fastnn_conv2d_geometry* g) {
  FASTNN_CHECK(g != nullptr, TypeError, "argument 'geometry': expected a fastnn_conv2d_geometry, got NULL");
  const struct {
    int64_t value;
    const char* name;
    int64_t min;
  } sizes[] = {{g->batch, "batch", 0},        {g->in_channels, "in_channels", 1}, {g->in_h, "in_h", 0},
               {g->in_w, "in_w", 0},          {g->out_channels, "out_channels", 1}, {g->kernel_h, "kernel_h", 1},
               {g->kernel_w, "kernel_w", 1},  {g->stride_h, "stride_h", 1},       {g->stride_w, "stride_w", 1},
               {g->pad_h, "pad_h", 0},        {g->pad_w, "pad_w", 0},             {g->dil_h, "dil_h", 1},
               {g->dil_w, "dil_w", 1},        {g->groups, "groups", 1}};
  for (const auto& s : sizes) expect_size(s.value, s.name, s.min);
  FASTNN_CHECK(g->in_channels % g->groups == 0 && g->out_channels % g->groups == 0, ValueError,
               "argument 'groups': expected a divisor of in_channels (", g->in_channels, ") and out_channels (",
               g->out_channels, "), got ", g->groups);
  const int64_t nh = g->in_h + 2 * g->pad_h - g->dil_h * (g->kernel_h - 1) - 1;
  const int64_t nw = g->in_w + 2 * g->pad_w - g->dil_w * (g->kernel_w - 1) - 1;
  FASTNN_CHECK(nh >= 0 && nw >= 0, ValueError, "output size would be <= 0: input (", g->in_h, ", ", g->in_w,
               "), padding (", g->pad_h, ", ", g->pad_w, "), dilated kernel (", g->dil_h * (g->kernel_h - 1) + 1,
               ", ", g->dil_w * (g->kernel_w - 1) + 1, ")");
  fastnn::Conv2dArgs a;
  a.batch = g->batch, a.in_channels = g->in_channels, a.in_h = g->in_h, a.in_w = g->in_w;
  a.out_channels = g->out_channels, a.out_h = nh / g->stride_h + 1, a.out_w = nw / g->stride_w + 1;
  a.kernel_h = g->kernel_h, a.kernel_w = g->kernel_w, a.stride_h = g->stride_h, a.stride_w = g->stride_w;
  a.pad_h = g->pad_h, a.pad_w = g->pad_w, a.dil_h = g->dil_h, a.dil_w = g->dil_w, a.groups = g->groups;
  return a;
}

int64_t x_numel(const fastnn::Conv2dArgs& a) { return a.batch * a.in_channels * a.in_h * a.in_w; }
int64_t y_numel(const fastnn::Conv2dArgs& a) { return a.batch * a.out_channels * a.out_h * a.out_w; }
int64_t w_numel(const fastnn::Conv2dArgs& a) {
  return a.out_channels * (a.in_channels / a.groups) * a.kernel_h * a.kernel_w;
}

// Dense (B, H, N, D) strides for every attention operand.
fastnn::AttentionArgs attention_plan(int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t head_dim,
                                     const float* q, const float* k, const float* v, int causal, float scale) {
  expect_size(batch, "batch");
  expect_size(heads, "heads");
  expect_size(nq, "nq");
  expect_size(nk, "nk");
  expect_size(head_dim, "head_dim", 1);
  FASTNN_CHECK(std::isfinite(scale), ValueError, "argument 'scale': expected a finite number, got ", scale);
  const int64_t nq_el = batch * heads * nq * head_dim, nk_el = batch * heads * nk * head_dim;
  expect_data(q, nq_el, "q");
  expect_data(k, nk_el, "k");
  expect_data(v, nk_el, "v");
  fastnn::AttentionArgs a;
  a.batch = batch, a.heads = heads, a.nq = nq, a.nk = nk, a.head_dim = head_dim;
  a.causal = causal != 0;
  a.scale = scale > 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const int64_t q_sh = nq * head_dim, q_sb = heads * q_sh, k_sh = nk * head_dim, k_sb = heads * k_sh;
  a.q = q, a.q_sb = q_sb, a.q_sh = q_sh, a.q_sn = head_dim, a.q_sd = 1;
  a.k = k, a.k_sb = k_sb, a.k_sh = k_sh, a.k_sn = head_dim, a.k_sd = 1;
  a.v = v, a.v_sb = k_sb, a.v_sh = k_sh, a.v_sn = head_dim, a.v_sd = 1;
  a.o_sb = q_sb, a.o_sh = q_sh, a.o_sn = head_dim, a.o_sd = 1;
  a.go_sb = q_sb, a.go_sh = q_sh, a.go_sn = head_dim, a.go_sd = 1;
  a.dq_sb = q_sb, a.dq_sh = q_sh, a.dq_sn = head_dim, a.dq_sd = 1;
  a.dk_sb = k_sb, a.dk_sh = k_sh, a.dk_sn = head_dim, a.dk_sd = 1;
  a.dv_sb = k_sb, a.dv_sh = k_sh, a.dv_sn = head_dim, a.dv_sd = 1;
  a.lse_sb = heads * nq, a.lse_sh = nq, a.lse_sn = 1;
  return a;
}

}  // namespace

extern "C" {

const char* fastnn_last_error(void) { return g_last_error.c_str(); }
const char* fastnn_version(void) { return FASTNN_VERSION; }
int fastnn_c_api_version(void) { return FASTNN_C_API_VERSION; }

fastnn_status fastnn_set_num_threads(int n) {
  return guarded("fastnn_set_num_threads", [&] {
    FASTNN_CHECK(n >= 1, ValueError, "argument 'n': expected >= 1, got ", n);
    fastnn::set_num_threads(n);
  });
}
int fastnn_get_num_threads(void) { return fastnn::num_threads(); }
const char* fastnn_simd_level(void) { return fastnn::simd_level_name(fastnn::simd_level()); }

fastnn_status fastnn_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_rs, int64_t a_cs,
                          const float* b, int64_t b_rs, int64_t b_cs, float beta, float* c, int64_t c_rs, int64_t c_cs,
                          const float* bias, int activation) {
  return guarded("fastnn_gemm", [&] {
    expect_size(m, "m");
    expect_size(n, "n");
    expect_size(k, "k");
    expect_data(a, m * k, "a");
    expect_data(b, k * n, "b");
    expect_data(c, m * n, "c");
    expect_no_self_overlap(m, n, c_rs, c_cs, "c");
    fastnn::GemmArgs g;
    g.m = m, g.n = n, g.k = k;
    g.a = a, g.a_rs = a_rs, g.a_cs = a_cs;
    g.b = b, g.b_rs = b_rs, g.b_cs = b_cs;
    g.c = c, g.c_rs = c_rs, g.c_cs = c_cs;
    g.alpha = alpha, g.beta = beta;
    g.bias_col = bias;
    g.activation = activation_of(activation);
    fastnn::cpu::gemm(g);
  });
}

fastnn_status fastnn_conv2d_output_size(const fastnn_conv2d_geometry* g, int64_t* out_h, int64_t* out_w) {
  return guarded("fastnn_conv2d_output_size", [&] {
    FASTNN_CHECK(out_h && out_w, TypeError, "arguments 'out_h', 'out_w': expected pointers, got NULL");
    const fastnn::Conv2dArgs a = conv_plan(g);
    *out_h = a.out_h, *out_w = a.out_w;
  });
}

fastnn_status fastnn_conv2d_forward(const fastnn_conv2d_geometry* g, const float* x, const float* weight,
                                    const float* bias, float* y, int activation) {
  return guarded("fastnn_conv2d_forward", [&] {
    fastnn::Conv2dArgs a = conv_plan(g);
    expect_data(x, x_numel(a), "x");
    expect_data(weight, w_numel(a), "weight");
    expect_data(y, y_numel(a), "y");
    a.x = x, a.weight = weight, a.bias = bias, a.y = y;
    a.activation = activation_of(activation);
    fastnn::cpu::conv2d_forward(a);
  });
}

fastnn_status fastnn_conv2d_backward(const fastnn_conv2d_geometry* g, const float* x, const float* weight,
                                     const float* dy, float* dx, float* dw, float* db) {
  return guarded("fastnn_conv2d_backward", [&] {
    fastnn::Conv2dArgs a = conv_plan(g);
    expect_data(dy, y_numel(a), "dy");
    if (dx) expect_data(weight, w_numel(a), "weight");
    if (dw) expect_data(x, x_numel(a), "x");
    a.x = x, a.weight = weight, a.dy = dy, a.dx = dx, a.dw = dw, a.db = db;
    if (dx) fastnn::cpu::conv2d_backward_input(a);
    if (dw) fastnn::cpu::conv2d_backward_weight(a);  // also fills db when it is set
    else if (db) fastnn::cpu::conv2d_backward_bias(a);
  });
}

fastnn_status fastnn_attention_forward(int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t head_dim,
                                       const float* q, const float* k, const float* v, int causal, float scale,
                                       float* out, float* lse) {
  return guarded("fastnn_attention_forward", [&] {
    fastnn::AttentionArgs a = attention_plan(batch, heads, nq, nk, head_dim, q, k, v, causal, scale);
    expect_data(out, batch * heads * nq * head_dim, "out");
    a.out = out;
    a.lse = lse;
    fastnn::cpu::attention_forward(a);
  });
}

fastnn_status fastnn_attention_backward(int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t head_dim,
                                        const float* q, const float* k, const float* v, const float* out,
                                        const float* lse, const float* grad_out, int causal, float scale, float* dq,
                                        float* dk, float* dv) {
  return guarded("fastnn_attention_backward", [&] {
    fastnn::AttentionArgs a = attention_plan(batch, heads, nq, nk, head_dim, q, k, v, causal, scale);
    const int64_t nq_el = batch * heads * nq * head_dim, nk_el = batch * heads * nk * head_dim;
    expect_data(out, nq_el, "out");
    expect_data(lse, batch * heads * nq, "lse");
    expect_data(grad_out, nq_el, "grad_out");
    expect_data(dq, nq_el, "dq");
    expect_data(dk, nk_el, "dk");
    expect_data(dv, nk_el, "dv");
    a.out = const_cast<float*>(out);  // read-only in backward
    a.lse = const_cast<float*>(lse);
    a.grad_out = grad_out, a.dq = dq, a.dk = dk, a.dv = dv;
    fastnn::cpu::attention_backward(a);
  });
}

fastnn_status fastnn_adam(int64_t num_tensors, float* const* params, const float* const* grads,
                          float* const* exp_avgs, float* const* exp_avg_sqs, float* const* max_exp_avg_sqs,
                          const int64_t* numels, int64_t step, double lr, double beta1, double beta2, double eps,
                          double weight_decay, int decoupled, int maximize, int amsgrad) {
  return guarded("fastnn_adam", [&] {
    expect_size(num_tensors, "num_tensors");
    FASTNN_CHECK(step >= 1, ValueError, "argument 'step': expected an integer >= 1, got ", step);
    FASTNN_CHECK(std::isfinite(lr) && lr >= 0, ValueError, "argument 'lr': expected a finite number >= 0, got ", lr);
    FASTNN_CHECK(std::isfinite(eps) && eps >= 0, ValueError, "argument 'eps': expected a finite number >= 0, got ",
                 eps);
    FASTNN_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, ValueError,
                 "argument 'weight_decay': expected a finite number >= 0, got ", weight_decay);
    FASTNN_CHECK(beta1 >= 0 && beta1 < 1, ValueError, "argument 'beta1': expected 0 <= beta1 < 1, got ", beta1);
    FASTNN_CHECK(beta2 >= 0 && beta2 < 1, ValueError, "argument 'beta2': expected 0 <= beta2 < 1, got ", beta2);
    if (num_tensors == 0) return;
    FASTNN_CHECK(params && grads && exp_avgs && exp_avg_sqs && numels, TypeError,
                 "arguments 'params', 'grads', 'exp_avgs', 'exp_avg_sqs', 'numels': expected arrays of ",
                 num_tensors, " entries, got NULL");
    FASTNN_CHECK(!amsgrad || max_exp_avg_sqs, TypeError,
                 "argument 'max_exp_avg_sqs': expected an array of ", num_tensors, " tensors when amsgrad, got NULL");
    for (int64_t i = 0; i < num_tensors; ++i) {
      FASTNN_CHECK(numels[i] >= 0, ValueError, "argument 'numels[", i, "]': expected a size >= 0, got ", numels[i]);
      const bool ok = numels[i] == 0 || (params[i] && grads[i] && exp_avgs[i] && exp_avg_sqs[i] &&
                                         (!amsgrad || max_exp_avg_sqs[i]));
      FASTNN_CHECK(ok, TypeError, "tensor ", i, ": expected ", numels[i], " floats in every list, got a NULL pointer");
    }
    fastnn::AdamArgs a;
    a.num_tensors = num_tensors;
    a.params = params, a.grads = grads, a.exp_avgs = exp_avgs, a.exp_avg_sqs = exp_avg_sqs;
    a.max_exp_avg_sqs = amsgrad ? max_exp_avg_sqs : nullptr;
    a.numels = numels;
    a.lr = lr, a.beta1 = beta1, a.beta2 = beta2, a.eps = eps, a.weight_decay = weight_decay;
    // Bias corrections in double, as torch computes them with Python floats.
    a.step_size = lr / (1.0 - std::pow(beta1, static_cast<double>(step)));
    a.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, static_cast<double>(step)));
    a.decoupled = decoupled != 0, a.maximize = maximize != 0, a.amsgrad = amsgrad != 0;
    fastnn::cpu::adam(a);
  });
}

}  // extern "C"
