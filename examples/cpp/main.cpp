// fastnn's kernels from a C++ program: GEMM, 2-D convolution and attention through the C++ API
// (fastnn/fastnn.h), GEMM once more through the C ABI (fastnn/fastnn_c.h); each result is
// checked against a plain double-precision loop. Prints "fastnn example: OK" and exits 0 on
// success, else names the failing check and exits 1.
#include <fastnn/fastnn.h>
#include <fastnn/fastnn_c.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

std::vector<float> random_vector(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// float32 results against a double reference: relative 1e-4 of the reference's magnitude
// (sums of at most a few hundred O(1) products; float32 error is ~1e-6 of that).
bool close(const std::vector<float>& got, const std::vector<double>& want, const char* what) {
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - want[i]) / (1.0 + std::abs(want[i])));
  std::printf("%-28s max rel. error %.2e\n", what, worst);
  return worst < 1e-4;
}

bool check_gemm() {
  const int64_t m = 37, n = 29, k = 53;
  auto a = random_vector(m * k, 1), b = random_vector(k * n, 2), bias = random_vector(n, 3);
  std::vector<float> c(m * n);
  fastnn::GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.a = a.data(), g.a_rs = k, g.a_cs = 1;  // row-major A
  g.b = b.data(), g.b_rs = 1, g.b_cs = k;  // B given transposed (n x k row-major): swap the strides
  g.c = c.data(), g.c_rs = n, g.c_cs = 1;
  g.bias_col = bias.data();
  g.activation = fastnn::Activation::relu;
  fastnn::cpu::gemm(g);
  std::vector<double> want(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = bias[j];
      for (int64_t p = 0; p < k; ++p) s += double(a[i * k + p]) * b[j * k + p];
      want[i * n + j] = s > 0 ? s : 0;
    }
  bool ok = close(c, want, "fastnn::cpu::gemm");

  // The C ABI: same product, row-major B this time, without bias or activation.
  std::vector<float> b2(k * n), c2(m * n);
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < n; ++j) b2[p * n + j] = b[j * k + p];
  if (fastnn_gemm(m, n, k, 1.0f, a.data(), k, 1, b2.data(), n, 1, 0.0f, c2.data(), n, 1, nullptr,
                  FASTNN_ACTIVATION_NONE) != FASTNN_OK) {
    std::printf("fastnn_gemm failed: %s\n", fastnn_last_error());
    return false;
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(a[i * k + p]) * b[j * k + p];
      want[i * n + j] = s;
    }
  ok = close(c2, want, "fastnn_gemm (C ABI)") && ok;
  // The error path: a negative size is refused with a message, nothing is computed.
  if (fastnn_gemm(-1, n, k, 1.0f, a.data(), k, 1, b2.data(), n, 1, 0.0f, c2.data(), n, 1, nullptr, 0) !=
      FASTNN_ERROR_VALUE) {
    std::printf("fastnn_gemm accepted m = -1\n");
    return false;
  }
  std::printf("%-28s \"%s\"\n", "fastnn_gemm(m = -1)", fastnn_last_error());
  return ok;
}

bool check_conv2d() {
  fastnn::Conv2dArgs a;
  a.batch = 2, a.in_channels = 3, a.in_h = 11, a.in_w = 9;
  a.out_channels = 5, a.kernel_h = 3, a.kernel_w = 3, a.stride_h = 2, a.stride_w = 1, a.pad_h = 1, a.pad_w = 1;
  a.out_h = (a.in_h + 2 * a.pad_h - a.kernel_h) / a.stride_h + 1;
  a.out_w = (a.in_w + 2 * a.pad_w - a.kernel_w) / a.stride_w + 1;
  auto x = random_vector(a.batch * a.in_channels * a.in_h * a.in_w, 4);
  auto w = random_vector(a.out_channels * a.in_channels * a.kernel_h * a.kernel_w, 5);
  std::vector<float> y(a.batch * a.out_channels * a.out_h * a.out_w);
  a.x = x.data(), a.weight = w.data(), a.y = y.data();
  fastnn::cpu::conv2d_forward(a);
  std::vector<double> want(y.size());
  for (int64_t n = 0; n < a.batch; ++n)
    for (int64_t o = 0; o < a.out_channels; ++o)
      for (int64_t i = 0; i < a.out_h; ++i)
        for (int64_t j = 0; j < a.out_w; ++j) {
          double s = 0;
          for (int64_t c = 0; c < a.in_channels; ++c)
            for (int64_t r = 0; r < a.kernel_h; ++r)
              for (int64_t q = 0; q < a.kernel_w; ++q) {
                const int64_t h = i * a.stride_h - a.pad_h + r, ww = j * a.stride_w - a.pad_w + q;
                if (h < 0 || h >= a.in_h || ww < 0 || ww >= a.in_w) continue;
                s += double(w[((o * a.in_channels + c) * a.kernel_h + r) * a.kernel_w + q]) *
                     x[((n * a.in_channels + c) * a.in_h + h) * a.in_w + ww];
              }
          want[((n * a.out_channels + o) * a.out_h + i) * a.out_w + j] = s;
        }
  return close(y, want, "fastnn::cpu::conv2d_forward");
}

bool check_attention() {
  const int64_t heads = 2, n = 17, d = 8;
  auto q = random_vector(heads * n * d, 6), k = random_vector(heads * n * d, 7), v = random_vector(heads * n * d, 8);
  std::vector<float> out(heads * n * d);
  fastnn::AttentionArgs a;
  a.batch = 1, a.heads = heads, a.nq = n, a.nk = n, a.head_dim = d;
  a.scale = static_cast<float>(1.0 / std::sqrt(double(d)));
  a.causal = true;
  for (auto* s : {&a.q_sh, &a.k_sh, &a.v_sh, &a.o_sh}) *s = n * d;
  for (auto* s : {&a.q_sn, &a.k_sn, &a.v_sn, &a.o_sn}) *s = d;
  a.q = q.data(), a.k = k.data(), a.v = v.data(), a.out = out.data();
  fastnn::cpu::attention_forward(a);
  std::vector<double> want(out.size());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < n; ++i) {
      std::vector<double> p(i + 1);
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (int64_t e = 0; e < d; ++e) s += double(q[(h * n + i) * d + e]) * k[(h * n + j) * d + e];
        p[j] = s * a.scale;
        mx = std::max(mx, p[j]);
      }
      for (auto& x : p) sum += (x = std::exp(x - mx));
      for (int64_t e = 0; e < d; ++e) {
        double s = 0;
        for (int64_t j = 0; j <= i; ++j) s += p[j] / sum * v[(h * n + j) * d + e];
        want[(h * n + i) * d + e] = s;
      }
    }
  return close(out, want, "fastnn::cpu::attention_forward");
}

}  // namespace

int main() {
  std::printf("fastnn %s (C ABI v%d), SIMD level %s, %d threads\n", fastnn_version(), fastnn_c_api_version(),
              fastnn::simd_level_name(fastnn::simd_level()), fastnn::num_threads());
  const bool ok = check_gemm() & check_conv2d() & check_attention();
  std::printf("fastnn example: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
