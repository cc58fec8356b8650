// CPU front ends of the elementwise math kernels (fastnn/elementwise_math.h): ISA dispatch only.
#include "cpu/isa.h"
#include "fastnn/elementwise_math.h"

namespace fastnn::cpu {

#define FASTNN_EWM_OPS(X) \
  X(unary, UnaryArgs)     \
  X(compare, CompareArgs) \
  X(gather, GatherArgs)   \
  X(scatter_add, ScatterAddArgs)

#define FASTNN_EWM_DECL(name, Args) void name(const Args& a);
FASTNN_CPU_DECLARE_ALL_ISAS(FASTNN_EWM_OPS(FASTNN_EWM_DECL))

#define FASTNN_EWM_DEF(name, Args) \
  void name(const Args& a) { FASTNN_CPU_DISPATCH(name, a); }
FASTNN_EWM_OPS(FASTNN_EWM_DEF)

}  // namespace fastnn::cpu
