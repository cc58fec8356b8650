// fastnn::Tensor: a strided view (shape, strides in elements, offset) of a
// reference-counted Storage on one device. Knows nothing of Python: storage that
// belongs to someone else (a NumPy array, a DLPack producer) carries a release
// callback that gives it back.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fastnn {

enum class DType : uint8_t { float32, float64, float16, bfloat16, int32, int64, uint8, bool_ };
size_t itemsize(DType dt);
const char* dtype_name(DType dt);  // "float32", ...

enum class DeviceType : uint8_t { cpu, cuda };
struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;  // "cpu", "cuda:0"
};

struct Storage {
  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  std::function<void(void*)> release;  // may be empty (borrowed, never freed)
  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (release) release(data);
  }
};

using Shape = std::vector<int64_t>;

class Tensor {
 public:
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // elements from storage->data to element [0, ..., 0]
  Shape shape;
  Shape strides;  // elements; may be negative or zero
  DType dtype = DType::float32;

  Device device() const { return storage ? storage->device : Device{}; }
  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * itemsize(dtype); }
  void* data() const {
    return storage ? static_cast<char*>(storage->data) + offset * static_cast<int64_t>(itemsize(dtype))
                   : nullptr;
  }
  template <typename T>
  T* data_as() const { return static_cast<T*>(data()); }
  bool is_contiguous() const;  // C order (size-1 dims ignored)
  bool defined() const { return storage != nullptr; }
};

Shape contiguous_strides(const Shape& shape);
// Throws ValueError naming `arg` when a dimension is negative or the element count overflows.
int64_t checked_numel(const Shape& shape, const char* arg);
std::string shape_str(const Shape& shape);  // "(2, 3)"

// Uninitialised tensor from the device's caching allocator.
Tensor empty(const Shape& shape, DType dtype, Device device);
Tensor zeros(const Shape& shape, DType dtype, Device device);
// Copies src into dst (same shape; any strides, dtypes and devices).
void copy_(const Tensor& dst, const Tensor& src);
Tensor contiguous(const Tensor& t);
Tensor to_device(const Tensor& t, Device device);
Tensor to_dtype(const Tensor& t, DType dtype);

}  // namespace fastnn
