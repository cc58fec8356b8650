// fastnn's CUDA GEMM from C++ (fastnn/cuda.h, target fastnn::fastnn_cuda): on a machine with a
// GPU, computes C = A @ B on the device and checks it against a double loop on the host.
// Without a GPU it checks the error contract instead: the call throws fastnn::Error saying
// why (no device / no driver), it does not crash. Prints "fastnn CUDA example: OK" on success.
#include <cuda_runtime.h>
#include <fastnn/cuda.h>
#include <fastnn/errors.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
  const int64_t m = 33, n = 17, k = 65;
  std::vector<float> a(m * k), b(k * n), c(m * n);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.1f * i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = std::cos(0.2f * i);
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    fastnn::GemmArgs g;  // host pointers: no kernel can run, the launch must fail cleanly
    g.m = m, g.n = n, g.k = k, g.a = a.data(), g.a_rs = k, g.a_cs = 1, g.b = b.data(), g.b_rs = n, g.b_cs = 1;
    g.c = c.data(), g.c_rs = n, g.c_cs = 1;
    try {
      fastnn::cuda::gemm(g, nullptr);
      cudaError_t e = cudaStreamSynchronize(nullptr);
      std::printf("no GPU, yet fastnn::cuda::gemm did not fail (sync: %s)\n", cudaGetErrorString(e));
      return 1;
    } catch (const fastnn::Error& e) {
      std::printf("no GPU: fastnn::cuda::gemm threw fastnn::Error: %s\n", e.what());
    }
    try {  // a kernel reached by name: an unknown name is refused before any CUDA call
      fastnn::cuda::launch("no_such_kernel", g, nullptr);
      return 1;
    } catch (const fastnn::ValueError& e) {
      std::printf("%s\n", e.what());
    }
    std::printf("fastnn CUDA example: OK\n");
    return 0;
  }
  float *da, *db, *dc;
  cudaMalloc(&da, a.size() * 4), cudaMalloc(&db, b.size() * 4), cudaMalloc(&dc, c.size() * 4);
  cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  fastnn::GemmArgs g;
  g.m = m, g.n = n, g.k = k, g.a = da, g.a_rs = k, g.a_cs = 1, g.b = db, g.b_rs = n, g.b_cs = 1;
  g.c = dc, g.c_rs = n, g.c_cs = 1;
  fastnn::cuda::gemm(g, stream);
  cudaMemcpyAsync(c.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost, stream);
  cudaStreamSynchronize(stream);
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(a[i * k + p]) * b[p * n + j];
      worst = std::max(worst, std::abs(c[i * n + j] - s) / (1.0 + std::abs(s)));
    }
  cudaFree(da), cudaFree(db), cudaFree(dc), cudaStreamDestroy(stream);
  std::printf("fastnn::cuda::gemm max rel. error %.2e\n", worst);
  const bool ok = worst < 1e-4;  // float32 (or TF32-free FMA) sums of 65 terms
  std::printf("fastnn CUDA example: %s\n", ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
