// Kernels exercising the CUDA semantics the emulator must reproduce (barriers,
// warp operations, shared memory, atomics, wmma, cp.async pipelines, launch
// configuration). Some are wrong on purpose (missing or divergent barriers,
// deadlocks): the tests check that the emulator reports them. See selftest.h.
#include "cuda_compat.cuh"

#include <cstdint>
#include <vector>

#include "cuda_backend/check.h"
#include "cuda_backend/selftest.h"

namespace fastnn::cuda_selftest {
namespace {

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count, const T* init = nullptr) : n(count) {
    FASTNN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), count * sizeof(T) + 1));
    if (init) FASTNN_CUDA_CHECK(cudaMemcpy(p, init, count * sizeof(T), cudaMemcpyHostToDevice));
    else FASTNN_CUDA_CHECK(cudaMemset(p, 0, count * sizeof(T)));
  }
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    FASTNN_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

__global__ void shift_kernel(float* out, int with_barrier) {
  __shared__ float s[1024];
  const int t = threadIdx.x;
  s[t] = static_cast<float>(t);
  if (with_barrier) __syncthreads();
  out[t] = t > 0 ? s[t - 1] : -1.0f;
}

__global__ void warp_tree_kernel(float* out, int with_syncwarp) {
  __shared__ float s[32];
  const int lane = threadIdx.x;
  s[lane] = static_cast<float>(lane + 1);
  __syncthreads();
  for (int o = 16; o > 0; o >>= 1) {
    if (lane < o) s[lane] += s[lane + o];
    if (with_syncwarp) __syncwarp();
  }
  if (lane == 0) out[0] = s[0];
}

__global__ void divergent_kernel() {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

__global__ void deadlock_kernel() {
  if (threadIdx.x < 16) {
    __syncwarp(0xFFFFFFFFu);
  } else {
    __syncthreads();
  }
}

__global__ void exit_early_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void outside_mask_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  if (lane < 16) out[lane] = __shfl_sync(0x0000FFFFu, lane, 20);
}

__global__ void illegal_address_kernel(float* out) {
  float* bad = reinterpret_cast<float*>(uintptr_t{16});
  out[threadIdx.x] = bad[threadIdx.x];
}

#if defined(FASTNN_CUDA_EMULATED)
// Recursion with a 4 KiB frame: nvcc would (rightly) warn that the stack size cannot
// be determined statically, so this kernel exists on the emulator only.
__device__ int deep(volatile int* p, int d) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(d);
  return d > 0 ? deep(p, d - 1) + frame[0] : *p;
}
__global__ void overflow_kernel(int* out) { out[threadIdx.x] = deep(out, 1 << 20); }
__global__ void divide_kernel(int* out, int zero) { out[threadIdx.x] = static_cast<int>(threadIdx.x) / zero; }
#endif

__global__ void warp_ops_kernel(int64_t* out, int width, int arg) {
  const int t = threadIdx.x, n = blockDim.x;
  const int v = 10 * t + 1;
  out[0 * n + t] = __shfl_sync(0xFFFFFFFFu, v, arg, width);
  out[1 * n + t] = __shfl_up_sync(0xFFFFFFFFu, v, static_cast<unsigned>(arg), width);
  out[2 * n + t] = __shfl_down_sync(0xFFFFFFFFu, v, static_cast<unsigned>(arg), width);
  out[3 * n + t] = __shfl_xor_sync(0xFFFFFFFFu, v, arg, width);
  out[4 * n + t] = __ballot_sync(0xFFFFFFFFu, t % 3 == 0);
  out[5 * n + t] = __any_sync(0xFFFFFFFFu, t == 5);
  out[6 * n + t] = __all_sync(0xFFFFFFFFu, t < 40);
  out[7 * n + t] = __syncthreads_count(t % 2 == 0);
}

__global__ void uninit_shared_kernel(uint32_t* out) {
  __shared__ uint32_t s[64];
  FASTNN_DYNAMIC_SHARED(uint32_t, d);
  const int t = threadIdx.x;
  if (blockIdx.x == 0) {
    out[t] = s[t];        // static, never written
    out[64 + t] = d[t];   // dynamic, never written
    __syncthreads();
    s[t] = 7u;            // written in block 0 ...
  } else {
    out[128 + t] = s[t];  // ... and must not leak into block 1
  }
}

__global__ void atomics_kernel(float* f, int* i, int* mx, int* cas_counter, int* exch, int* mn) {
  const int id = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(f, 1.0f);
  atomicAdd(i, 2);
  atomicMax(mx, id);
  atomicMin(mn, id - 5);
  int old = *cas_counter, assumed;
  do {
    assumed = old;
    old = atomicCAS(cas_counter, assumed, assumed + 1);
  } while (old != assumed);
  atomicExch(exch, id);
}

template <typename T>
__global__ void wmma_kernel(const T* a, const T* b, const float* c, float* d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

__global__ void wmma_tf32_kernel(const float* a, const float* b, const float* c, float* d) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
  for (int k0 = 0; k0 < 16; k0 += 8) {
    wmma::load_matrix_sync(fa, a + k0, 16);       // A row-major 16x16: columns k0..k0+7
    wmma::load_matrix_sync(fb, b + k0, 16);       // B col-major: column j at b + 16 j
    for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
    wmma::mma_sync(acc, fa, fb, acc);
  }
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

__global__ void pipeline_kernel(const float* src, float* out, int mode) {
  __shared__ __align__(16) float s[64];
  const int t = threadIdx.x;  // 32 threads
  __pipeline_memcpy_async(&s[t], &src[t], sizeof(float));
  __pipeline_commit();
  __pipeline_memcpy_async(&s[32 + t], &src[32 + t], sizeof(float));
  __pipeline_commit();
  if (mode == 0) __pipeline_wait_prior(0);
  if (mode == 2) __pipeline_wait_prior(1);
  __syncthreads();
  out[t] = s[t];
  out[32 + t] = s[32 + t];
  __syncthreads();
  __pipeline_wait_prior(0);
}

__global__ void flag_kernel(int* ran) {
  FASTNN_DYNAMIC_SHARED(int, d);
  d[threadIdx.x] = 1;
  if (threadIdx.x == 0) *ran = 1;
}

}  // namespace

std::vector<float> shift(int nthreads, bool with_barrier) {
  DeviceBuffer<float> out(static_cast<size_t>(nthreads));
  FASTNN_LAUNCH(shift_kernel, 1, nthreads, 0, nullptr)(out.p, with_barrier ? 1 : 0);
  FASTNN_CUDA_CHECK_LAUNCH("shift_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  return out.get();
}

float warp_tree_sum(bool with_syncwarp) {
  DeviceBuffer<float> out(1);
  FASTNN_LAUNCH(warp_tree_kernel, 1, 32, 0, nullptr)(out.p, with_syncwarp ? 1 : 0);
  FASTNN_CUDA_CHECK_LAUNCH("warp_tree_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  return out.get()[0];
}

void divergent_barrier() {
  FASTNN_LAUNCH(divergent_kernel, 1, 32, 0, nullptr)();
  FASTNN_CUDA_CHECK_LAUNCH("divergent_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
}

void deadlock() {
  FASTNN_LAUNCH(deadlock_kernel, 1, 64, 0, nullptr)();
  FASTNN_CUDA_CHECK_LAUNCH("deadlock_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
}

void exit_before_barrier() {
  DeviceBuffer<float> out(32);
  FASTNN_LAUNCH(exit_early_kernel, 1, 32, 0, nullptr)(out.p);
  FASTNN_CUDA_CHECK_LAUNCH("exit_early_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
}

void shuffle_outside_mask() {
  DeviceBuffer<int> out(32);
  FASTNN_LAUNCH(outside_mask_kernel, 1, 32, 0, nullptr)(out.p);
  FASTNN_CUDA_CHECK_LAUNCH("outside_mask_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
}

void illegal_address() {
  DeviceBuffer<float> out(32);
  FASTNN_LAUNCH(illegal_address_kernel, 1, 32, 0, nullptr)(out.p);
  FASTNN_CUDA_CHECK_LAUNCH("illegal_address_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
}

void emulator_fault(int which) {
#if defined(FASTNN_CUDA_EMULATED)
  DeviceBuffer<int> out(32);
  if (which == 0) {
    FASTNN_LAUNCH(overflow_kernel, 1, 4, 0, nullptr)(out.p);
  } else {
    FASTNN_LAUNCH(divide_kernel, 1, 4, 0, nullptr)(out.p, 0);
  }
  FASTNN_CUDA_CHECK_LAUNCH("emulator fault kernel");
#else
  (void)which;
  throw Error("emulator_fault: only available on the CUDA emulator");
#endif
}

std::vector<int64_t> warp_ops(int nthreads, int width, int arg) {
  DeviceBuffer<int64_t> out(static_cast<size_t>(8 * nthreads));
  FASTNN_LAUNCH(warp_ops_kernel, 1, nthreads, 0, nullptr)(out.p, width, arg);
  FASTNN_CUDA_CHECK_LAUNCH("warp_ops_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  return out.get();
}

std::vector<uint32_t> uninitialised_shared() {
  DeviceBuffer<uint32_t> out(192);
  FASTNN_LAUNCH(uninit_shared_kernel, 2, 64, 64 * sizeof(uint32_t), nullptr)(out.p);
  FASTNN_CUDA_CHECK_LAUNCH("uninit_shared_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  return out.get();
}

std::vector<double> atomics(int blocks, int threads) {
  DeviceBuffer<float> f(1);
  DeviceBuffer<int> i(1), mx(1), cas(1), exch(1), mn(1);
  const int big = 1 << 30;
  FASTNN_CUDA_CHECK(cudaMemcpy(mn.p, &big, sizeof big, cudaMemcpyHostToDevice));
  const int minus = -1;
  FASTNN_CUDA_CHECK(cudaMemcpy(exch.p, &minus, sizeof minus, cudaMemcpyHostToDevice));
  FASTNN_LAUNCH(atomics_kernel, blocks, threads, 0, nullptr)(f.p, i.p, mx.p, cas.p, exch.p, mn.p);
  FASTNN_CUDA_CHECK_LAUNCH("atomics_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  const int e = exch.get()[0];
  return {f.get()[0], static_cast<double>(i.get()[0]), static_cast<double>(mx.get()[0]),
          static_cast<double>(cas.get()[0]), (e >= 0 && e < blocks * threads) ? 1.0 : 0.0,
          static_cast<double>(mn.get()[0])};
}

std::vector<float> wmma_tile(int kind, const std::vector<float>& a, const std::vector<float>& b,
                             const std::vector<float>& c) {
  DeviceBuffer<float> dc(256, c.data()), dd(256);
  if (kind == 2) {
    DeviceBuffer<float> da(256, a.data()), db(256, b.data());
    FASTNN_LAUNCH(wmma_tf32_kernel, 1, 32, 0, nullptr)(da.p, db.p, dc.p, dd.p);
    FASTNN_CUDA_CHECK_LAUNCH("wmma_tf32_kernel");
  } else if (kind == 1) {
    std::vector<__nv_bfloat16> ha(256), hb(256);
    for (int i = 0; i < 256; ++i) {
      ha[i] = __float2bfloat16(a[i]);
      hb[i] = __float2bfloat16(b[i]);
    }
    DeviceBuffer<__nv_bfloat16> da(256, ha.data()), db(256, hb.data());
    auto* k = &wmma_kernel<__nv_bfloat16>;
    FASTNN_LAUNCH(k, 1, 32, 0, nullptr)(da.p, db.p, dc.p, dd.p);
    FASTNN_CUDA_CHECK_LAUNCH("wmma_kernel<bf16>");
  } else {
    std::vector<__half> ha(256), hb(256);
    for (int i = 0; i < 256; ++i) {
      ha[i] = __float2half(a[i]);
      hb[i] = __float2half(b[i]);
    }
    DeviceBuffer<__half> da(256, ha.data()), db(256, hb.data());
    auto* k = &wmma_kernel<__half>;
    FASTNN_LAUNCH(k, 1, 32, 0, nullptr)(da.p, db.p, dc.p, dd.p);
    FASTNN_CUDA_CHECK_LAUNCH("wmma_kernel<half>");
  }
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  return dd.get();
}

std::vector<float> pipeline(int mode) {
  std::vector<float> h(64);
  for (int i = 0; i < 64; ++i) h[i] = static_cast<float>(i);
  DeviceBuffer<float> src(64, h.data()), out(64);
  FASTNN_LAUNCH(pipeline_kernel, 1, 32, 0, nullptr)(src.p, out.p, mode);
  FASTNN_CUDA_CHECK_LAUNCH("pipeline_kernel");
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  return out.get();
}

LaunchResult launch_config(int case_id) {
  DeviceBuffer<int> ran(1);
  cudaGetLastError();
  dim3 grid(1), block(32);
  size_t smem = 32 * sizeof(int);
  cudaError_t attr = cudaSuccess;
  switch (case_id) {
    case 0: block = dim3(1025); break;                 // > 1024 threads
    case 1: block = dim3(1, 1, 65); break;             // z > 64
    case 2: grid = dim3(1, 65536); break;              // grid.y > 65535
    case 3: smem = 64 * 1024; break;                   // > 48 KiB without opt-in
    case 4:                                            // opt-in, then launch: fine
      attr = cudaFuncSetAttribute(flag_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
      smem = 64 * 1024;
      break;
    case 5:                                            // opt-in beyond 227 KiB
      attr = cudaFuncSetAttribute(flag_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024);
      break;
    case 6: block = dim3(0); break;                    // empty block
    default: break;                                    // a valid launch
  }
  if (attr != cudaSuccess) {
    cudaGetLastError();
    return {static_cast<int>(attr), cudaGetErrorString(attr), false};
  }
  FASTNN_LAUNCH(flag_kernel, grid, block, smem, nullptr)(ran.p);
  const cudaError_t e = cudaGetLastError();
  FASTNN_CUDA_CHECK(cudaDeviceSynchronize());
  if (case_id == 4) FASTNN_CUDA_CHECK(cudaFuncSetAttribute(flag_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 0));
  return {static_cast<int>(e), cudaGetErrorString(e), ran.get()[0] != 0};
}

}  // namespace fastnn::cuda_selftest
