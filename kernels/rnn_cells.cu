// Fused recurrent cells on CUDA (RNN tanh/relu, LSTM, GRU), forward and backward of one time
// step after the two GEMMs; the formulas, gate layouts and the lengths rule are those of
// fastnn/rnn.h and of the CPU kernels (csrc/cpu/kernels/rnn_cells.cpp).
//
// Algorithm: one thread per (row, hidden unit), a grid-stride loop over batch*hidden; each
// thread reads its G gate pre-activations from gx and gh (coalesced along the hidden unit),
// evaluates the activations and writes the new state, the output and the saved gates.
// Bound: memory. An LSTM step moves ~15 floats (60 B) per unit for ~40 flops (< 1 flop/B);
// batch 64 x hidden 256 is 1 MB per step, ~0.5 us of DRAM time on A100 (2 TB/s) / 0.3 us on
// H100 (3.35 TB/s), so at these sizes the launch latency (~3-5 us) dominates and the step's
// recurrent GEMM (34 MFLOP, ~2-5 us) is the real cost; the fusion saves the 5-8 separate
// elementwise launches (and their round trips to memory) an unfused cell would take.
#include "cuda_compat.cuh"

#include <cstdint>

#include "cuda_backend/check.h"
#include "rnn_cells.cuh"

namespace fastnn::cuda_kernels {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ __forceinline__ bool row_active(const int64_t* lengths, int64_t b, int64_t t) {
  return lengths == nullptr || t < lengths[b];
}

__global__ void rnn_cell_kernel(RnnCellArgs a) {
  const int64_t H = a.hidden, n = a.batch * H, S = rnn_num_saved(a.mode) * H;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    const float* gx = a.gx + b * a.gx_ld + j;
    const float* gh = a.gh + b * a.gh_ld + j;
    float* sv = a.saved ? a.saved + b * S + j : nullptr;
    float hn, cn = 0.0f;
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    const bool act = row_active(a.lengths, b, a.t);
    if (!act) {
      hn = a.h_prev[e];
      if (a.mode == RnnMode::lstm) cn = a.c_prev[e];
    } else if (a.mode == RnnMode::lstm) {
      s0 = sigmoid_f(gx[0] + gh[0]);
      s1 = sigmoid_f(gx[H] + gh[H]);
      s2 = tanhf(gx[2 * H] + gh[2 * H]);
      s3 = sigmoid_f(gx[3 * H] + gh[3 * H]);
      cn = s1 * a.c_prev[e] + s0 * s2;
      hn = s3 * tanhf(cn);
    } else if (a.mode == RnnMode::gru) {
      s0 = sigmoid_f(gx[0] + gh[0]);
      s1 = sigmoid_f(gx[H] + gh[H]);
      s3 = gh[2 * H];
      s2 = tanhf(gx[2 * H] + s0 * s3);
      hn = s2 + s1 * (a.h_prev[e] - s2);
    } else {
      const float pre = gx[0] + gh[0];
      hn = a.mode == RnnMode::rnn_relu ? (pre < 0.0f ? 0.0f : pre) : tanhf(pre);  // relu(NaN) = NaN (fmaxf drops it)
    }
    a.h[e] = hn;
    if (a.mode == RnnMode::lstm) a.c[e] = cn;
    if (a.y) a.y[b * a.y_ld + j] = act ? hn : 0.0f;
    if (sv) {
      sv[0] = s0;
      sv[H] = s1;
      sv[2 * H] = s2;
      sv[3 * H] = s3;
    }
  }
}

__global__ void rnn_cell_backward_kernel(RnnCellBackwardArgs a) {
  const int64_t H = a.hidden, n = a.batch * H, S = rnn_num_saved(a.mode) * H, G = rnn_num_gates(a.mode);
  const bool two = a.dgh != a.dgx;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / H, j = e % H;
    float* dgx = a.dgx + b * a.dgx_ld + j;
    float* dgh = a.dgh + b * a.dgh_ld + j;
    if (!row_active(a.lengths, b, a.t)) {  // dh, dc pass through unchanged
      for (int64_t g = 0; g < G; ++g) {
        dgx[g * H] = 0.0f;
        dgh[g * H] = 0.0f;
      }
      continue;
    }
    const float d = a.dh[e] + (a.dy ? a.dy[b * a.dy_ld + j] : 0.0f);
    const float* sv = a.saved ? a.saved + b * S + j : nullptr;
    if (a.mode == RnnMode::lstm) {
      const float i = sv[0], f = sv[H], g = sv[2 * H], o = sv[3 * H];
      const float tc = tanhf(a.c[e]);
      const float dcc = a.dc[e] + d * o * (1.0f - tc * tc);
      const float gi = dcc * g * (i * (1.0f - i));
      const float gf = dcc * a.c_prev[e] * (f * (1.0f - f));
      const float gg = dcc * i * (1.0f - g * g);
      const float go = d * tc * (o * (1.0f - o));
      dgx[0] = gi;
      dgx[H] = gf;
      dgx[2 * H] = gg;
      dgx[3 * H] = go;
      if (two) {
        dgh[0] = gi;
        dgh[H] = gf;
        dgh[2 * H] = gg;
        dgh[3 * H] = go;
      }
      a.dc[e] = dcc * f;
      a.dh[e] = 0.0f;
    } else if (a.mode == RnnMode::gru) {
      const float r = sv[0], z = sv[H], nn = sv[2 * H], ghn = sv[3 * H];
      const float dnp = d * (1.0f - z) * (1.0f - nn * nn);
      const float dzp = d * (a.h_prev[e] - nn) * (z * (1.0f - z));
      const float drp = dnp * ghn * (r * (1.0f - r));
      dgx[0] = drp;
      dgx[H] = dzp;
      dgx[2 * H] = dnp;
      dgh[0] = drp;
      dgh[H] = dzp;
      dgh[2 * H] = dnp * r;
      a.dh[e] = d * z;
    } else {
      const float hv = a.h[e];
      const float dp = a.mode == RnnMode::rnn_relu ? (hv > 0.0f ? d : 0.0f) : d * (1.0f - hv * hv);
      dgx[0] = dp;
      if (two) dgh[0] = dp;
      a.dh[e] = 0.0f;
    }
  }
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 4096 ? (b > 0 ? b : 1) : 4096);
}

}  // namespace

void rnn_cell(const RnnCellArgs& args, cudaStream_t stream) {
  const int64_t n = args.batch * args.hidden;
  if (n <= 0) return;
  FASTNN_LAUNCH(rnn_cell_kernel, blocks_for(n), kThreads, 0, stream)(args);
  FASTNN_CUDA_CHECK_LAUNCH("rnn_cell_kernel");
}

void rnn_cell_backward(const RnnCellBackwardArgs& args, cudaStream_t stream) {
  const int64_t n = args.batch * args.hidden;
  if (n <= 0) return;
  FASTNN_LAUNCH(rnn_cell_backward_kernel, blocks_for(n), kThreads, 0, stream)(args);
  FASTNN_CUDA_CHECK_LAUNCH("rnn_cell_backward_kernel");
}

}  // namespace fastnn::cuda_kernels
