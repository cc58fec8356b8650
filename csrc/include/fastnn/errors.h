// Exception types of fastnn's C++ API. The Python bindings translate them:
// ValueError -> ValueError, TypeError -> TypeError, IndexError -> IndexError,
// Error -> RuntimeError, std::bad_alloc / OutOfMemory -> MemoryError.
// Messages name the argument, the expected and the actual value.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fastnn {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct IndexError : std::out_of_range {
  using std::out_of_range::out_of_range;
};
struct OutOfMemory : std::bad_alloc {
  explicit OutOfMemory(std::string msg) : msg_(std::move(msg)) {}
  const char* what() const noexcept override { return msg_.c_str(); }
 private:
  std::string msg_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace fastnn

// FASTNN_CHECK(cond, ValueError, "argument 'x': expected ..., got ", v);
#define FASTNN_CHECK(cond, ExcType, ...)                              \
  do {                                                                \
    if (!(cond)) throw ::fastnn::ExcType(::fastnn::detail::concat(__VA_ARGS__)); \
  } while (0)
