// Front ends of the fused attention kernels (csrc/cpu/kernels/attention.cpp) and the
// plain reference implementations of the same contract (fastnn/attention.h): one
// query row at a time, double accumulation, O(Nk) temporaries per row (O(Nk*D) for
// the backward's dk/dv accumulators), single-threaded. Slow on purpose; the fast
// kernels are checked against them and against NumPy.
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/attention_dropout.h"
#include "cpu/isa.h"
#include "fastnn/attention.h"

namespace fastnn::cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(void attention_forward(const AttentionArgs& args);
                            void attention_backward(const AttentionArgs& args);)

void attention_forward(const AttentionArgs& args) { FASTNN_CPU_DISPATCH(attention_forward, args); }
void attention_backward(const AttentionArgs& args) { FASTNN_CPU_DISPATCH(attention_backward, args); }

namespace {

// Softmax row i of head (b, h): p[j] (0 for masked keys), keep factors z[j]
// (0 or 1/(1-p)) and the natural-log lse; returns false when every key is masked.
bool reference_row(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, std::vector<double>& p,
                   std::vector<double>& z, double* lse) {
  const int64_t NK = a.nk, D = a.head_dim, off = a.nk - a.nq;
  const float* q = a.q + b * a.q_sb + h * a.q_sh + i * a.q_sn;
  const float* K = a.k + b * a.k_sb + h * a.k_sh;
  const double ninf = -std::numeric_limits<double>::infinity();
  double mx = ninf;
  for (int64_t j = 0; j < NK; ++j) {
    const bool masked = (a.causal && j > i + off) ||
                        (a.key_padding_mask && a.key_padding_mask[b * a.mask_sb + j * a.mask_sn]);
    if (masked) {
      p[j] = ninf;
      continue;
    }
    double s = 0;
    for (int64_t d = 0; d < D; ++d) s += static_cast<double>(q[d * a.q_sd]) * K[j * a.k_sn + d * a.k_sd];
    p[j] = s * a.scale;
    mx = std::max(mx, p[j]);
  }
  if (mx == ninf) {
    for (int64_t j = 0; j < NK; ++j) p[j] = z[j] = 0.0;
    *lse = ninf;
    return false;
  }
  double sum = 0;
  for (int64_t j = 0; j < NK; ++j) sum += (p[j] = std::exp(p[j] - mx));
  for (int64_t j = 0; j < NK; ++j) p[j] /= sum;
  *lse = mx + std::log(sum);
  const uint32_t thr = detail_attention::dropout_threshold(a.dropout_p);
  const double ks = a.dropout_p > 0.0f ? 1.0 / (1.0 - static_cast<double>(a.dropout_p)) : 1.0;
  const uint64_t row = static_cast<uint64_t>((b * a.heads + h) * a.nq + i) * static_cast<uint64_t>(NK);
  for (int64_t j = 0; j < NK; ++j)
    z[j] = a.dropout_p > 0.0f ? (detail_attention::dropout_keep(a.seed, a.offset, row + j, thr) ? ks : 0.0) : 1.0;
  return true;
}

}  // namespace

void attention_forward_reference(const AttentionArgs& a) {
  const int64_t D = a.head_dim;
  std::vector<double> p(a.nk), z(a.nk), o(D);
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.heads; ++h)
      for (int64_t i = 0; i < a.nq; ++i) {
        double lse;
        reference_row(a, b, h, i, p, z, &lse);
        std::fill(o.begin(), o.end(), 0.0);
        const float* V = a.v + b * a.v_sb + h * a.v_sh;
        for (int64_t j = 0; j < a.nk; ++j)
          if (p[j] * z[j] != 0.0)
            for (int64_t d = 0; d < D; ++d) o[d] += p[j] * z[j] * V[j * a.v_sn + d * a.v_sd];
        float* out = a.out + b * a.o_sb + h * a.o_sh + i * a.o_sn;
        for (int64_t d = 0; d < D; ++d) out[d * a.o_sd] = static_cast<float>(o[d]);
        if (a.lse) a.lse[b * a.lse_sb + h * a.lse_sh + i * a.lse_sn] = static_cast<float>(lse);
      }
}

void attention_backward_reference(const AttentionArgs& a) {
  // Uses its own softmax recomputation (not the lse input), so it checks the lse too
  // only indirectly; dS = P * (dP - sum_j P dP) with dP = dO . V_j * Z.
  const int64_t NK = a.nk, D = a.head_dim;
  std::vector<double> p(NK), z(NK), dp(NK), dk(NK * D), dv(NK * D), dq(D);
  for (int64_t b = 0; b < a.batch; ++b)
    for (int64_t h = 0; h < a.heads; ++h) {
      std::fill(dk.begin(), dk.end(), 0.0);
      std::fill(dv.begin(), dv.end(), 0.0);
      const float* K = a.k + b * a.k_sb + h * a.k_sh;
      const float* V = a.v + b * a.v_sb + h * a.v_sh;
      for (int64_t i = 0; i < a.nq; ++i) {
        double lse;
        const float* q = a.q + b * a.q_sb + h * a.q_sh + i * a.q_sn;
        const float* go = a.grad_out + b * a.go_sb + h * a.go_sh + i * a.go_sn;
        float* dqo = a.dq + b * a.dq_sb + h * a.dq_sh + i * a.dq_sn;
        if (!reference_row(a, b, h, i, p, z, &lse)) {
          for (int64_t d = 0; d < D; ++d) dqo[d * a.dq_sd] = 0.0f;
          continue;
        }
        double dsum = 0;
        for (int64_t j = 0; j < NK; ++j) {
          double g = 0;
          for (int64_t d = 0; d < D; ++d) g += static_cast<double>(go[d * a.go_sd]) * V[j * a.v_sn + d * a.v_sd];
          dp[j] = g * z[j];
          dsum += p[j] * dp[j];
        }
        std::fill(dq.begin(), dq.end(), 0.0);
        for (int64_t j = 0; j < NK; ++j) {
          const double ds = p[j] * (dp[j] - dsum) * a.scale;
          const double pz = p[j] * z[j];
          for (int64_t d = 0; d < D; ++d) {
            dq[d] += ds * K[j * a.k_sn + d * a.k_sd];
            dk[j * D + d] += ds * q[d * a.q_sd];
            dv[j * D + d] += pz * go[d * a.go_sd];
          }
        }
        for (int64_t d = 0; d < D; ++d) dqo[d * a.dq_sd] = static_cast<float>(dq[d]);
      }
      float* dko = a.dk + b * a.dk_sb + h * a.dk_sh;
      float* dvo = a.dv + b * a.dv_sb + h * a.dv_sh;
      for (int64_t j = 0; j < NK; ++j)
        for (int64_t d = 0; d < D; ++d) {
          dko[j * a.dk_sn + d * a.dk_sd] = static_cast<float>(dk[j * D + d]);
          dvo[j * a.dv_sn + d * a.dv_sd] = static_cast<float>(dv[j * D + d]);
        }
    }
}

}  // namespace fastnn::cpu
