// Recurrent layers: the CPU front ends of the fused cells (kernels/rnn_cells.cpp) and the
// device-agnostic sequence drivers (fastnn/rnn.h): per time step one recurrent GEMM and one
// fused cell launch, through RnnStepOps, so the CPU and the CUDA backend share this loop.
#include <cstdint>

#include "cpu/isa.h"
#include "fastnn/rnn.h"

namespace fastnn {
namespace cpu {

FASTNN_CPU_DECLARE_ALL_ISAS(void rnn_cell(const RnnCellArgs& a); void rnn_cell_backward(const RnnCellBackwardArgs& a);)

void rnn_cell(const RnnCellArgs& a) { FASTNN_CPU_DISPATCH(rnn_cell, a); }
void rnn_cell_backward(const RnnCellBackwardArgs& a) { FASTNN_CPU_DISPATCH(rnn_cell_backward, a); }

RnnStepOps rnn_step_ops() {
  RnnStepOps ops;
  ops.gemm = [](const GemmArgs& g) { gemm(g); };
  ops.cell = [](const RnnCellArgs& c) { rnn_cell(c); };
  ops.cell_backward = [](const RnnCellBackwardArgs& c) { rnn_cell_backward(c); };
  return ops;
}

}  // namespace cpu

namespace {
// Row offsets (in units of batch*hidden) of the state entering / leaving step t.
int64_t in_slot(const RnnSequenceArgs& a, int64_t t) { return a.reverse ? t + 1 : t; }
int64_t out_slot(const RnnSequenceArgs& a, int64_t t) { return a.reverse ? t : t + 1; }
}  // namespace

void rnn_sequence_forward(const RnnSequenceArgs& a, const RnnStepOps& ops) {
  const int64_t B = a.batch, H = a.hidden, GH = rnn_num_gates(a.mode) * H, S = rnn_num_saved(a.mode) * H;
  const bool lstm = a.mode == RnnMode::lstm;
  for (int64_t s = 0; s < a.seq_len; ++s) {
    const int64_t t = a.reverse ? a.seq_len - 1 - s : s;
    const float* h_prev = a.hs + in_slot(a, t) * B * H;
    // gh = h_prev @ W_hh^T + b_hh: m = B, n = GH, k = H; W_hh (GH, H) read transposed
    GemmArgs g;
    g.m = B; g.n = GH; g.k = H;
    g.a = h_prev; g.a_rs = H; g.a_cs = 1;
    g.b = a.w_hh; g.b_rs = 1; g.b_cs = H;
    g.c = a.gh; g.c_rs = GH; g.c_cs = 1;
    g.bias_col = a.b_hh;
    ops.gemm(g);
    RnnCellArgs c;
    c.mode = a.mode; c.batch = B; c.hidden = H;
    c.gx = a.xproj + t * B * GH; c.gx_ld = GH;
    c.gh = a.gh; c.gh_ld = GH;
    c.h_prev = h_prev;
    c.h = a.hs + out_slot(a, t) * B * H;
    if (lstm) {
      c.c_prev = a.cs + in_slot(a, t) * B * H;
      c.c = a.cs + out_slot(a, t) * B * H;
    }
    c.y = a.y ? a.y + t * B * a.y_ld : nullptr; c.y_ld = a.y_ld;
    c.saved = S ? a.saved + t * B * S : nullptr;
    c.lengths = a.lengths; c.t = t;
    ops.cell(c);
  }
}

void rnn_sequence_backward(const RnnSequenceArgs& a, const RnnStepOps& ops) {
  const int64_t T = a.seq_len, B = a.batch, H = a.hidden, GH = rnn_num_gates(a.mode) * H,
                S = rnn_num_saved(a.mode) * H;
  const bool lstm = a.mode == RnnMode::lstm;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = a.reverse ? s : T - 1 - s;  // the forward's steps, last first
    RnnCellBackwardArgs c;
    c.mode = a.mode; c.batch = B; c.hidden = H;
    c.dy = a.dy ? a.dy + t * B * a.dy_ld : nullptr; c.dy_ld = a.dy_ld;
    c.dh = a.dh;
    c.dc = a.dc;
    c.saved = S ? a.saved + t * B * S : nullptr;
    c.h_prev = a.hs + in_slot(a, t) * B * H;
    c.h = a.hs + out_slot(a, t) * B * H;
    if (lstm) {
      c.c_prev = a.cs + in_slot(a, t) * B * H;
      c.c = a.cs + out_slot(a, t) * B * H;
    }
    c.dgx = a.dgx + t * B * GH; c.dgx_ld = GH;
    c.dgh = a.dgh + t * B * GH; c.dgh_ld = GH;
    c.lengths = a.lengths; c.t = t;
    ops.cell_backward(c);
    // dh += dgh_t @ W_hh: m = B, n = H, k = GH
    GemmArgs g;
    g.m = B; g.n = H; g.k = GH;
    g.a = c.dgh; g.a_rs = GH; g.a_cs = 1;
    g.b = a.w_hh; g.b_rs = H; g.b_cs = 1;
    g.c = a.dh; g.c_rs = H; g.c_cs = 1;
    g.beta = 1.0f;
    ops.gemm(g);
  }
  // dW_hh = sum_t dgh_t^T h_{in(t)}: one GEMM over the T*B rows (the entering states are one
  // contiguous block in time order, see RnnSequenceArgs).
  const float* h_in = a.hs + (a.reverse ? B * H : 0);
  GemmArgs w;
  w.m = GH; w.n = H; w.k = T * B;
  w.a = a.dgh; w.a_rs = 1; w.a_cs = GH;
  w.b = h_in; w.b_rs = H; w.b_cs = 1;
  w.c = a.dw_hh; w.c_rs = H; w.c_cs = 1;
  ops.gemm(w);
  if (a.db_hh) {  // db_hh = 1^T dgh
    GemmArgs bb;
    bb.m = 1; bb.n = GH; bb.k = T * B;
    bb.a = a.ones; bb.a_rs = 0; bb.a_cs = 0;
    bb.b = a.dgh; bb.b_rs = GH; bb.b_cs = 1;
    bb.c = a.db_hh; bb.c_rs = GH; bb.c_cs = 1;
    ops.gemm(bb);
  }
}

}  // namespace fastnn
