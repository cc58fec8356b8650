// The table behind FASTNN_CUDA_OP. A function-local static so registrations from
// other translation units' static initialisers never see it uninitialised.
#include "op_registry.h"

#include <cstring>
#include <map>
#include <string>

#include "backend.h"
#include "fastnn/errors.h"

namespace fastnn::cuda_backend_impl {
namespace {
struct Entry {
  size_t args_size;
  OpLauncher fn;
};
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
}  // namespace

OpRegistration::OpRegistration(const char* name, size_t args_size, OpLauncher fn) {
  table()[name] = Entry{args_size, fn};
}

OpLauncher find_op(const char* name, size_t* args_size) {
  auto it = table().find(name);
  if (it == table().end()) return nullptr;
  if (args_size) *args_size = it->second.args_size;
  return it->second.fn;
}

DeviceScratch::DeviceScratch(size_t nbytes, int device) : device_(device) {
  if (nbytes) ptr_ = backend().malloc(nbytes, device);
}

DeviceScratch::~DeviceScratch() {
  if (ptr_) backend().free(ptr_, device_);
}

}  // namespace fastnn::cuda_backend_impl
