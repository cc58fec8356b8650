// fastnn::cpu::pool2d_*: front end of the CPU pooling kernels (kernels/pool_kernels.cpp).
#include <cstring>

#include "cpu/isa.h"
#include "fastnn/pool.h"

namespace fastnn::cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(void pool2d_forward_kernel(const Pool2dArgs& a);
                            void pool2d_backward_kernel(const Pool2dArgs& a);)

void pool2d_forward(const Pool2dArgs& a) {
  if (a.planes <= 0 || a.out_h <= 0 || a.out_w <= 0) return;
  FASTNN_CPU_DISPATCH(pool2d_forward_kernel, a);
}

void pool2d_backward(const Pool2dArgs& a) {
  if (a.planes <= 0 || a.in_h <= 0 || a.in_w <= 0) return;
  if (a.out_h <= 0 || a.out_w <= 0) {
    std::memset(a.dx, 0, static_cast<size_t>(a.planes * a.in_h * a.in_w) * sizeof(float));
    return;
  }
  FASTNN_CPU_DISPATCH(pool2d_backward_kernel, a);
}

}  // namespace fastnn::cpu
