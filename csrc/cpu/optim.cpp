// CPU front ends of the fused optimizers (csrc/include/fastnn/optim.h): build the prefix
// offsets of the tensor list, then dispatch to the ISA variant (kernels/optim_kernels.cpp).
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "fastnn/optim.h"

namespace fastnn::cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(
    void adam(const AdamArgs& a, const int64_t* prefix);
    void sgd(const SgdArgs& a, const int64_t* prefix);
    double grad_norm(const GradNormArgs& a, const int64_t* prefix);
    void scale_(const ScaleArgs& a, const int64_t* prefix);)

void adam(const AdamArgs& a) {
  auto p = list_prefix(a.numels, a.num_tensors);
  FASTNN_CPU_DISPATCH(adam, a, p.data());
}
void sgd(const SgdArgs& a) {
  auto p = list_prefix(a.numels, a.num_tensors);
  FASTNN_CPU_DISPATCH(sgd, a, p.data());
}
double grad_norm(const GradNormArgs& a) {
  auto p = list_prefix(a.numels, a.num_tensors);
  FASTNN_CPU_DISPATCH(grad_norm, a, p.data());
}
void scale_(const ScaleArgs& a) {
  auto p = list_prefix(a.numels, a.num_tensors);
  FASTNN_CPU_DISPATCH(scale_, a, p.data());
}

double clip_grad_norm(float* const* grads, const int64_t* numels, int64_t num_tensors, double max_norm,
                      double norm_type) {
  GradNormArgs na;
  na.num_tensors = num_tensors;
  na.grads = grads;
  na.numels = numels;
  na.norm_type = norm_type;
  const double norm = grad_norm(na);
  // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1 (computed in float32 there)
  const float coef = static_cast<float>(max_norm / (norm + 1e-6));
  if (coef < 1.0f) {  // false for NaN norms too; torch would then write NaN everywhere
    ScaleArgs sa;
    sa.num_tensors = num_tensors;
    sa.tensors = grads;
    sa.numels = numels;
    sa.scale = coef;
    scale_(sa);
  } else if (std::isnan(norm)) {
    ScaleArgs sa;
    sa.num_tensors = num_tensors;
    sa.tensors = grads;
    sa.numels = numels;
    sa.scale = NAN;
    scale_(sa);
  }
  return norm;
}

}  // namespace fastnn::cpu
