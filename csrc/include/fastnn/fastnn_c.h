/* fastnn's C ABI: the CPU kernels as plain C functions, for C, ctypes, cffi, Rust, Go, ...
 *
 * Library: libfastnn.so (the same library as the C++ API; in a pip install under
 * <site-packages>/fastnn/lib, see `python -m fastnn --cmake-prefix-path`).
 *
 * Conventions
 *  - float32 only; tensors are raw pointers. Dense layouts unless strides are passed
 *    (in elements): conv2d NCHW / OIHW, attention (B, H, N, D).
 *  - Every function returns a fastnn_status. On failure nothing has been written and
 *    fastnn_last_error() holds a message naming the argument, the expected and the actual
 *    value. The message is per thread and describes the most recent call made on that
 *    thread ("" after a success); the pointer stays valid until that thread's next call.
 *  - Sizes are checked for consistency (negative sizes, bad strides, a geometry that gives
 *    no output, ...); the caller guarantees that every buffer holds the elements its sizes
 *    and strides address (a C API cannot check buffer lengths). NULL is accepted for an
 *    array of zero elements and for the arguments documented as optional.
 *  - Outputs must not overlap inputs. Threads: fastnn_set_num_threads (default: all cores).
 */
#ifndef FASTNN_FASTNN_C_H_
#define FASTNN_FASTNN_C_H_

#include <stdint.h>

#if defined(_WIN32)
#define FASTNN_C_API __declspec(dllexport)
#else
#define FASTNN_C_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define FASTNN_C_API_VERSION 1

typedef enum fastnn_status {
  FASTNN_OK = 0,
  FASTNN_ERROR_VALUE = 1,         /* a bad size, stride, flag or hyperparameter */
  FASTNN_ERROR_TYPE = 2,          /* a NULL pointer where data is required */
  FASTNN_ERROR_INDEX = 3,
  FASTNN_ERROR_OUT_OF_MEMORY = 4, /* a kernel's temporary buffer could not be allocated */
  FASTNN_ERROR_RUNTIME = 5        /* anything else */
} fastnn_status;

typedef enum fastnn_activation {
  FASTNN_ACTIVATION_NONE = 0,
  FASTNN_ACTIVATION_RELU = 1,
  FASTNN_ACTIVATION_GELU = 2,      /* x * Phi(x), erf form */
  FASTNN_ACTIVATION_GELU_TANH = 3,
  FASTNN_ACTIVATION_SIGMOID = 4,
  FASTNN_ACTIVATION_TANH = 5
} fastnn_activation;

FASTNN_C_API const char* fastnn_last_error(void);
FASTNN_C_API const char* fastnn_version(void);      /* "0.1.0" */
FASTNN_C_API int fastnn_c_api_version(void);        /* FASTNN_C_API_VERSION of the library */
FASTNN_C_API fastnn_status fastnn_set_num_threads(int n);  /* n >= 1 */
FASTNN_C_API int fastnn_get_num_threads(void);
FASTNN_C_API const char* fastnn_simd_level(void);   /* "avx512", "avx2" or "generic" */

/* C = act(alpha * A @ B + beta * C + bias), A m x k, B k x n, C m x n; element (i, j) of X
 * is x[i * x_rs + j * x_cs] (transpose = swap the strides; A and B strides may be 0 or
 * negative, C's must not map two elements to one place). beta == 0: C is not read.
 * bias: optional, n floats added to every row. */
FASTNN_C_API fastnn_status fastnn_gemm(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t a_rs,
                                       int64_t a_cs, const float* b, int64_t b_rs, int64_t b_cs, float beta, float* c,
                                       int64_t c_rs, int64_t c_cs, const float* bias, int activation);

/* 2-D convolution, PyTorch semantics: x (batch, in_channels, in_h, in_w), weight
 * (out_channels, in_channels / groups, kernel_h, kernel_w), y (batch, out_channels, out_h, out_w)
 * with out_h = (in_h + 2 pad_h - dil_h (kernel_h - 1) - 1) / stride_h + 1 (same for w). */
typedef struct fastnn_conv2d_geometry {
  int64_t batch, in_channels, in_h, in_w;
  int64_t out_channels, kernel_h, kernel_w;
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t groups;
} fastnn_conv2d_geometry;

FASTNN_C_API fastnn_status fastnn_conv2d_output_size(const fastnn_conv2d_geometry* g, int64_t* out_h,
                                                     int64_t* out_w);
/* y = act(conv2d(x, weight) + bias); bias optional (out_channels floats). */
FASTNN_C_API fastnn_status fastnn_conv2d_forward(const fastnn_conv2d_geometry* g, const float* x,
                                                 const float* weight, const float* bias, float* y, int activation);
/* Gradients of conv2d (no activation) given dy: dx, dw, db, each optional (NULL = not wanted),
 * overwritten (not accumulated). */
FASTNN_C_API fastnn_status fastnn_conv2d_backward(const fastnn_conv2d_geometry* g, const float* x,
                                                  const float* weight, const float* dy, float* dx, float* dw,
                                                  float* db);

/* out = softmax(scale * q k^T + causal mask) v over dense q (batch, heads, nq, head_dim),
 * k and v (batch, heads, nk, head_dim), out like q; causal: query i sees key j iff
 * j <= i + nk - nq. scale <= 0 means 1/sqrt(head_dim). lse (optional, batch*heads*nq floats)
 * receives each row's natural-log logsumexp; attention_backward needs it. */
FASTNN_C_API fastnn_status fastnn_attention_forward(int64_t batch, int64_t heads, int64_t nq, int64_t nk,
                                                    int64_t head_dim, const float* q, const float* k, const float* v,
                                                    int causal, float scale, float* out, float* lse);
FASTNN_C_API fastnn_status fastnn_attention_backward(int64_t batch, int64_t heads, int64_t nq, int64_t nk,
                                                     int64_t head_dim, const float* q, const float* k, const float* v,
                                                     const float* out, const float* lse, const float* grad_out,
                                                     int causal, float scale, float* dq, float* dk, float* dv);

/* One Adam (decoupled = 0) / AdamW (decoupled = 1) step, in place, exactly torch.optim.Adam(W),
 * over num_tensors tensors of numels[i] contiguous floats each. step: the 1-based step count
 * after this update. max_exp_avg_sqs: required when amsgrad, else ignored (may be NULL). */
FASTNN_C_API fastnn_status fastnn_adam(int64_t num_tensors, float* const* params, const float* const* grads,
                                       float* const* exp_avgs, float* const* exp_avg_sqs,
                                       float* const* max_exp_avg_sqs, const int64_t* numels, int64_t step, double lr,
                                       double beta1, double beta2, double eps, double weight_decay, int decoupled,
                                       int maximize, int amsgrad);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* FASTNN_FASTNN_C_H_ */
