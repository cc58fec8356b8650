// fastnn::Tensor bookkeeping: sizes, strides, allocation, cross-device copies.
#include "fastnn/tensor.h"

#include <atomic>
#include <cstring>
#include <limits>

#include "core/cuda_backend.h"
#include "cpu/copy.h"
#include "fastnn/allocator.h"
#include "fastnn/errors.h"

namespace fastnn {

size_t itemsize(DType dt) {
  switch (dt) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    case DType::float16: return 2;
    case DType::bfloat16: return 2;
    case DType::int32: return 4;
    case DType::int64: return 8;
    case DType::uint8: return 1;
    case DType::bool_: return 1;
  }
  return 1;
}

const char* dtype_name(DType dt) {
  switch (dt) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::float16: return "float16";
    case DType::bfloat16: return "bfloat16";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::uint8: return "uint8";
    case DType::bool_: return "bool";
  }
  return "?";
}

std::string Device::str() const {
  return type == DeviceType::cpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = ndim() - 1; d >= 0; --d) {
    if (shape[d] == 0) return true;
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    st[d] = s;
    s *= std::max<int64_t>(shape[d], 1);
  }
  return st;
}

int64_t checked_numel(const Shape& shape, const char* arg) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    FASTNN_CHECK(shape[d] >= 0, ValueError, "argument '", arg, "': expected non-negative sizes, got ",
                 shape_str(shape));
    if (shape[d] != 0 && n > std::numeric_limits<int64_t>::max() / 16 / shape[d])
      throw ValueError(detail::concat("argument '", arg, "': shape ", shape_str(shape),
                                      " has more elements than fastnn can address"));
    n *= shape[d];
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  const int64_t n = checked_numel(shape, "shape");
  const size_t nbytes = static_cast<size_t>(n) * itemsize(dtype);
  auto st = std::make_shared<Storage>();
  st->nbytes = nbytes;
  st->device = device;
  if (device.type == DeviceType::cpu) {
    st->data = cpu_allocator::allocate(nbytes);
    st->release = [](void* p) { cpu_allocator::release(p); };
  } else {
    CudaBackend& be = require_cuda_backend();
    const int dev = device.index;
    FASTNN_CHECK(dev >= 0 && dev < be.device_count(), ValueError, "device: expected cuda:0..cuda:",
                 be.device_count() - 1, ", got ", device.str());
    st->data = be.malloc(nbytes, dev);
    CudaBackend* bp = &be;
    st->release = [bp, dev](void* p) { bp->free(p, dev); };
  }
  Tensor t;
  t.storage = std::move(st);
  t.shape = shape;
  t.strides = contiguous_strides(shape);
  t.dtype = dtype;
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (t.nbytes() == 0) return t;
  if (device.type == DeviceType::cpu) std::memset(t.data(), 0, t.nbytes());
  else require_cuda_backend().memset(t.data(), 0, t.nbytes(), device.index);
  return t;
}

namespace {
CopyArgs copy_args(const Tensor& dst, const Tensor& src) {
  CopyArgs a;
  a.ndim = static_cast<int>(dst.ndim());
  a.shape = dst.shape.data();
  a.dst = dst.data();
  a.dst_strides = dst.strides.data();
  a.dst_dtype = dst.dtype;
  a.src = src.data();
  a.src_strides = src.strides.data();
  a.src_dtype = src.dtype;
  return a;
}
}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  FASTNN_CHECK(dst.shape == src.shape, ValueError, "copy: argument 'src': expected shape ", shape_str(dst.shape),
               ", got ", shape_str(src.shape));
  if (dst.numel() == 0) return;
  const Device dd = dst.device(), sd = src.device();
  if (dd == sd) {
    if (dd.type == DeviceType::cpu) cpu::copy(copy_args(dst, src));
    else require_cuda_backend().copy(copy_args(dst, src), dd.index);
    return;
  }
  // Across devices: bring a contiguous image of src (in src's dtype) to dst's device, then
  // convert / scatter there. Only contiguous bytes cross the bus.
  Tensor s = contiguous(src);
  if (dst.is_contiguous() && dst.dtype == src.dtype) {
    CudaBackend& be = require_cuda_backend();
    if (sd.type == DeviceType::cpu)
      be.memcpy(dst.data(), s.data(), s.nbytes(), MemcpyKind::host_to_device, dd.index);
    else if (dd.type == DeviceType::cpu)
      be.memcpy(dst.data(), s.data(), s.nbytes(), MemcpyKind::device_to_host, sd.index);
    else {
      Tensor staged = empty(src.shape, src.dtype, Device{});
      be.memcpy(staged.data(), s.data(), s.nbytes(), MemcpyKind::device_to_host, sd.index);
      be.memcpy(dst.data(), staged.data(), s.nbytes(), MemcpyKind::host_to_device, dd.index);
    }
    return;
  }
  Tensor staged = empty(src.shape, src.dtype, dd);
  copy_(staged, s);
  copy_(dst, staged);
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = empty(t.shape, t.dtype, t.device());
  copy_(out, t);
  return out;
}

Tensor to_device(const Tensor& t, Device device) {
  if (t.device() == device) return t;
  Tensor out = empty(t.shape, t.dtype, device);
  copy_(out, t);
  return out;
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  if (t.dtype == dtype) return t;
  Tensor out = empty(t.shape, dtype, t.device());
  copy_(out, t);
  return out;
}

// ---- CUDA backend registry -------------------------------------------------
namespace {
std::atomic<CudaBackend*> g_backend{nullptr};
}
void set_cuda_backend(CudaBackend* backend) { g_backend.store(backend); }
CudaBackend* cuda_backend() { return g_backend.load(); }
CudaBackend& require_cuda_backend() {
  CudaBackend* b = g_backend.load();
  if (b == nullptr)
    throw Error("fastnn: no CUDA backend is active (fastnn.cuda.is_available() is False; "
                "see fastnn.cuda.why_unavailable())");
  return *b;
}

}  // namespace fastnn
