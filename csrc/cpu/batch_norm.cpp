// CPU front end of batch normalisation (fastnn/batch_norm.h): ISA dispatch to
// kernels/batch_norm_kernels.cpp.
#include "cpu/isa.h"
#include "fastnn/batch_norm.h"

namespace fastnn::cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(void batch_norm(const BatchNormArgs& a);
                            void batch_norm_backward(const BatchNormBackwardArgs& a);)

void batch_norm(const BatchNormArgs& a) { FASTNN_CPU_DISPATCH(batch_norm, a); }
void batch_norm_backward(const BatchNormBackwardArgs& a) { FASTNN_CPU_DISPATCH(batch_norm_backward, a); }

}  // namespace fastnn::cpu
