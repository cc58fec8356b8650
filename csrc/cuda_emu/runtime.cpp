// The CUDA runtime API, emulated: the real function names and signatures from
// <cuda_runtime_api.h>, so csrc/cuda_backend/ is the same code for both modules.
//
// One device, described as an H100 (132 SMs, 48 KiB shared memory per block by
// default, 227 KiB opt-in through cudaFuncSetAttribute). Device memory is host
// memory behind distinct pointers; allocations are tracked so that copies and
// memsets outside them fail with cudaErrorInvalidValue instead of corrupting the
// heap. Streams and events exist but everything is synchronous. Errors set the
// "last error" like the real runtime (launch-configuration errors are reported only
// through cudaGetLastError / cudaPeekAtLastError).
#define __STORAGE__ extern
#include <cuda_runtime.h>
#undef __STORAGE__

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>

#include "fastnn/errors.h"
#include "launch.h"
#include "scheduler.h"
#include "shared_memory.h"

namespace fastnn::emu {
namespace {

constexpr size_t kDefaultSharedPerBlock = 48 * 1024;
constexpr size_t kMaxSharedOptin = 227 * 1024;
constexpr size_t kTotalMemory = size_t{80} << 30;

struct Runtime {
  std::mutex mu;
  std::map<uintptr_t, size_t> allocations;  // base -> bytes (device memory)
  size_t allocated = 0;
  std::unordered_map<const void*, int> max_dynamic_smem;  // cudaFuncSetAttribute
  cudaError_t last_error = cudaSuccess;
  int device = 0;
};

Runtime& R() {
  static Runtime* r = new Runtime();
  return *r;
}

cudaError_t set_error(cudaError_t e) {
  if (e != cudaSuccess) R().last_error = e;
  return e;
}

// True when [p, p + n) lies inside one live device allocation.
bool is_device_range(const void* p, size_t n) {
  Runtime& r = R();
  std::lock_guard<std::mutex> lock(r.mu);
  auto a = reinterpret_cast<uintptr_t>(p);
  auto it = r.allocations.upper_bound(a);
  if (it == r.allocations.begin()) return false;
  --it;
  return a >= it->first && a + n <= it->first + std::max<size_t>(it->second, 1);
}

cudaError_t check_copy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (count == 0) return cudaSuccess;
  if (!dst || !src) return cudaErrorInvalidValue;
  const bool dd = is_device_range(dst, count), sd = is_device_range(src, count);
  switch (kind) {
    case cudaMemcpyHostToDevice: return dd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return sd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return dd && sd ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyHostToHost: return cudaSuccess;
    case cudaMemcpyDefault: return cudaSuccess;
  }
  return cudaErrorInvalidMemcpyDirection;
}

struct Event {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};

}  // namespace

bool check_launch(const LaunchSpec& s) {
  const dim3 b = s.block, g = s.grid;
  const unsigned long long threads = static_cast<unsigned long long>(b.x) * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || b.x > 1024 || b.y > 1024 || b.z > 64 || threads > 1024 || g.x == 0 ||
      g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
    set_error(cudaErrorInvalidConfiguration);
    return false;
  }
  size_t limit = kDefaultSharedPerBlock;
  {
    Runtime& r = R();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.max_dynamic_smem.find(s.kernel);
    if (it != r.max_dynamic_smem.end()) limit = std::max(limit, static_cast<size_t>(it->second));
  }
  if (s.dynamic_smem > limit) {
    set_error(cudaErrorInvalidValue);
    return false;
  }
  return true;
}

void launch(const LaunchSpec& spec, KernelThunk thunk, void* closure) {
  if (!check_launch(spec)) return;
  run_grid(spec, thunk, closure);
}

}  // namespace fastnn::emu

using fastnn::emu::R;
using fastnn::emu::set_error;

extern "C" {

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return set_error(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return set_error(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p) return set_error(cudaErrorInvalidValue);
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "NVIDIA H100 80GB HBM3 (fastnn CPU emulator)");
  p->totalGlobalMem = fastnn::emu::kTotalMemory;
  p->sharedMemPerBlock = fastnn::emu::kDefaultSharedPerBlock;
  p->sharedMemPerBlockOptin = fastnn::emu::kMaxSharedOptin;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = 65536;
  p->regsPerMultiprocessor = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  p->totalConstMem = 65536;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->maxThreadsPerMultiProcessor = 2048;
  p->maxBlocksPerMultiProcessor = 32;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->memoryBusWidth = 5120;
  p->unifiedAddressing = 1;
  p->concurrentKernels = 1;
  p->asyncEngineCount = 2;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value) return set_error(cudaErrorInvalidValue);
  if (device != 0) return set_error(cudaErrorInvalidDevice);
  cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = static_cast<int>(p.sharedMemPerMultiprocessor); break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    default: return set_error(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (!v) return set_error(cudaErrorInvalidValue);
  *v = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

cudaError_t cudaDeviceReset(void) {
  auto& r = R();
  std::lock_guard<std::mutex> lock(r.mu);
  r.max_dynamic_smem.clear();
  r.last_error = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t size) {
  if (!ptr) return set_error(cudaErrorInvalidValue);
  auto& r = R();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.allocated + size > fastnn::emu::kTotalMemory) {
      *ptr = nullptr;
      r.last_error = cudaErrorMemoryAllocation;
      return cudaErrorMemoryAllocation;
    }
  }
  // 256-byte alignment like cudaMalloc; never 0 bytes, so pointers stay distinct.
  void* p = std::aligned_alloc(256, ((size + 255) / 256) * 256 + (size == 0 ? 256 : 0));
  if (!p) {
    *ptr = nullptr;
    return set_error(cudaErrorMemoryAllocation);
  }
  std::lock_guard<std::mutex> lock(r.mu);
  r.allocations[reinterpret_cast<uintptr_t>(p)] = size;
  r.allocated += size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  auto& r = R();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.allocations.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == r.allocations.end()) {
      r.last_error = cudaErrorInvalidValue;
      return cudaErrorInvalidValue;
    }
    r.allocated -= it->second;
    r.allocations.erase(it);
  }
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  if (!ptr) return set_error(cudaErrorInvalidValue);
  *ptr = std::aligned_alloc(256, ((size + 255) / 256) * 256 + 256);
  return *ptr ? cudaSuccess : set_error(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  auto& r = R();
  std::lock_guard<std::mutex> lock(r.mu);
  if (free_bytes) *free_bytes = fastnn::emu::kTotalMemory - r.allocated;
  if (total) *total = fastnn::emu::kTotalMemory;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (cudaError_t e = fastnn::emu::check_copy(dst, src, count, kind)) return set_error(e);
  if (count) std::memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}

cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind) {
  if (width > dpitch || width > spitch) return set_error(cudaErrorInvalidPitchValue);
  for (size_t r = 0; r < height; ++r) {
    cudaError_t e = cudaMemcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                               width, kind);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy2D(dst, dpitch, src, spitch, width, height, kind);
}

// __constant__ / __device__ variables are ordinary globals here: the symbol's
// address is the memory.
cudaError_t cudaMemcpyToSymbol(const void* symbol, const void* src, size_t count, size_t offset, cudaMemcpyKind) {
  if (!symbol || (!src && count)) return set_error(cudaErrorInvalidSymbol);
  std::memcpy(static_cast<char*>(const_cast<void*>(symbol)) + offset, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemcpyToSymbolAsync(const void* symbol, const void* src, size_t count, size_t offset,
                                    cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpyToSymbol(symbol, src, count, offset, kind);
}

cudaError_t cudaMemcpyFromSymbol(void* dst, const void* symbol, size_t count, size_t offset, cudaMemcpyKind) {
  if (!symbol || (!dst && count)) return set_error(cudaErrorInvalidSymbol);
  std::memcpy(dst, static_cast<const char*>(symbol) + offset, count);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  if (count == 0) return cudaSuccess;
  if (!fastnn::emu::is_device_range(ptr, count)) return set_error(cudaErrorInvalidValue);
  std::memset(ptr, value, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) { return cudaMemset(ptr, value, count); }

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  if (!s) return set_error(cudaErrorInvalidValue);
  *s = reinterpret_cast<cudaStream_t>(new char(0));  // a distinct handle; work is synchronous
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) { return cudaStreamCreate(s); }

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete reinterpret_cast<char*>(s);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  if (!e) return set_error(cudaErrorInvalidValue);
  *e = reinterpret_cast<cudaEvent_t>(new fastnn::emu::Event());
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) { return cudaEventCreate(e); }

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete reinterpret_cast<fastnn::emu::Event*>(e);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle);
  auto* ev = reinterpret_cast<fastnn::emu::Event*>(e);
  ev->t = std::chrono::steady_clock::now();
  ev->recorded = true;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end) return set_error(cudaErrorInvalidValue);
  auto* a = reinterpret_cast<fastnn::emu::Event*>(start);
  auto* b = reinterpret_cast<fastnn::emu::Event*>(end);
  if (!a->recorded || !b->recorded) return set_error(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  auto& r = R();
  cudaError_t e = r.last_error;
  r.last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return R().last_error; }

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func) return set_error(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > fastnn::emu::kMaxSharedOptin) return set_error(cudaErrorInvalidValue);
    auto& r = R();
    std::lock_guard<std::mutex> lock(r.mu);
    r.max_dynamic_smem[func] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) {
    if (value < -1 || value > 100) return set_error(cudaErrorInvalidValue);
    return cudaSuccess;
  }
  return set_error(cudaErrorInvalidValue);
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void* func) {
  if (!attr || !func) return set_error(cudaErrorInvalidDeviceFunction);
  std::memset(attr, 0, sizeof *attr);
  attr->maxThreadsPerBlock = 1024;
  attr->sharedSizeBytes = fastnn::emu::static_shared_bytes();
  attr->maxDynamicSharedSizeBytes = static_cast<int>(fastnn::emu::kDefaultSharedPerBlock);
  {
    auto& r = R();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.max_dynamic_smem.find(func);
    if (it != r.max_dynamic_smem.end()) attr->maxDynamicSharedSizeBytes = it->second;
  }
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  return cudaSuccess;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
#define C(x) case x: return #x;
    C(cudaSuccess) C(cudaErrorInvalidValue) C(cudaErrorMemoryAllocation) C(cudaErrorInitializationError)
    C(cudaErrorInvalidConfiguration) C(cudaErrorInvalidPitchValue) C(cudaErrorInvalidSymbol)
    C(cudaErrorInvalidMemcpyDirection) C(cudaErrorInvalidDevice) C(cudaErrorInvalidDeviceFunction)
    C(cudaErrorInvalidResourceHandle) C(cudaErrorNoDevice) C(cudaErrorInsufficientDriver)
    C(cudaErrorLaunchOutOfResources) C(cudaErrorLaunchFailure) C(cudaErrorIllegalAddress)
    C(cudaErrorNotReady) C(cudaErrorNotSupported)
#undef C
    default: return "cudaErrorUnknown";
  }
}

// The real runtime's wording for the errors the emulator produces.
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidSymbol: return "invalid device symbol";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
  }
}

}  // extern "C"
