// Recurrent layers: the CPU front ends of the fused cells (kernels/rnn_cells.cpp) and the
// sequence drivers (fastnn/rnn.h): per time step one recurrent GEMM and one fused cell
// launch, through RnnStepOps, so the CPU and the CUDA backend share this loop.
// CPU layers (cpu::rnn_layer_forward/backward) run every direction and block of batch rows
// as an independent single-threaded time loop inside one parallel region (see RowBlocks).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/isa.h"
#include "fastnn/allocator.h"
#include "fastnn/config.h"
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
// A float buffer from the caching CPU allocator (no fresh pages per call).
struct Scratch {
  float* p = nullptr;
  explicit Scratch(int64_t n)
      : p(static_cast<float*>(cpu_allocator::allocate(static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float)))) {}
  ~Scratch() { cpu_allocator::release(p); }
  Scratch(Scratch&& o) noexcept : p(o.p) { o.p = nullptr; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch& operator=(Scratch&&) = delete;
};

// Row offsets (in units of batch*hidden) of the state entering / leaving step t.
int64_t in_slot(const RnnSequenceArgs& a, int64_t t) { return a.reverse ? t + 1 : t; }
int64_t out_slot(const RnnSequenceArgs& a, int64_t t) { return a.reverse ? t : t + 1; }

// The batch rows [r0, r1) of one direction, the whole sequence. Rows of a batch never mix in
// the recurrence (only dW_hh sums over them), so row blocks run independently with no
// synchronisation per step. `gh` is (r1 - r0, G*H) scratch; `w_t`, if given, is W_hh^T
// (H, G*H) contiguous, which the small-GEMM path reads in place (W_hh itself has a strided
// column dimension and would be packed again at every step).
void sequence_forward_rows(const RnnSequenceArgs& a, const RnnStepOps& ops, int64_t r0, int64_t r1, float* gh,
                           const float* w_t) {
  const int64_t B = a.batch, H = a.hidden, GH = rnn_num_gates(a.mode) * H, S = rnn_num_saved(a.mode) * H;
  const int64_t R = r1 - r0;
  const bool lstm = a.mode == RnnMode::lstm;
  for (int64_t s = 0; s < a.seq_len; ++s) {
    const int64_t t = a.reverse ? a.seq_len - 1 - s : s;
    const float* h_prev = a.hs + in_slot(a, t) * B * H + r0 * H;
    // gh = h_prev @ W_hh^T + b_hh: m = R, n = GH, k = H
    GemmArgs g;
    g.m = R; g.n = GH; g.k = H;
    g.a = h_prev; g.a_rs = H; g.a_cs = 1;
    if (w_t) {
      g.b = w_t; g.b_rs = GH; g.b_cs = 1;
    } else {
      g.b = a.w_hh; g.b_rs = 1; g.b_cs = H;
    }
    g.c = gh; g.c_rs = GH; g.c_cs = 1;
    g.bias_col = a.b_hh;
    ops.gemm(g);
    RnnCellArgs c;
    c.mode = a.mode; c.batch = R; c.hidden = H;
    c.gx = a.xproj + (t * B + r0) * GH; c.gx_ld = GH;
    c.gh = gh; c.gh_ld = GH;
    c.h_prev = h_prev;
    c.h = a.hs + out_slot(a, t) * B * H + r0 * H;
    if (lstm) {
      c.c_prev = a.cs + in_slot(a, t) * B * H + r0 * H;
      c.c = a.cs + out_slot(a, t) * B * H + r0 * H;
    }
    c.y = a.y ? a.y + (t * B + r0) * a.y_ld : nullptr; c.y_ld = a.y_ld;
    c.saved = S ? a.saved + (t * B + r0) * S : nullptr;
    c.lengths = a.lengths ? a.lengths + r0 : nullptr; c.t = t;
    ops.cell(c);
  }
}

// BPTT of rows [r0, r1): fills dgx/dgh for every step and leaves dL/dh0 (dL/dc0) in dh (dc).
void sequence_backward_rows(const RnnSequenceArgs& a, const RnnStepOps& ops, int64_t r0, int64_t r1) {
  const int64_t T = a.seq_len, B = a.batch, H = a.hidden, GH = rnn_num_gates(a.mode) * H,
                S = rnn_num_saved(a.mode) * H;
  const int64_t R = r1 - r0;
  const bool lstm = a.mode == RnnMode::lstm;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = a.reverse ? s : T - 1 - s;  // the forward's steps, last first
    RnnCellBackwardArgs c;
    c.mode = a.mode; c.batch = R; c.hidden = H;
    c.dy = a.dy ? a.dy + (t * B + r0) * a.dy_ld : nullptr; c.dy_ld = a.dy_ld;
    c.dh = a.dh + r0 * H;
    c.dc = lstm ? a.dc + r0 * H : nullptr;
    c.saved = S ? a.saved + (t * B + r0) * S : nullptr;
    c.h_prev = a.hs + in_slot(a, t) * B * H + r0 * H;
    c.h = a.hs + out_slot(a, t) * B * H + r0 * H;
    if (lstm) {
      c.c_prev = a.cs + in_slot(a, t) * B * H + r0 * H;
      c.c = a.cs + out_slot(a, t) * B * H + r0 * H;
    }
    c.dgx = a.dgx + (t * B + r0) * GH; c.dgx_ld = GH;
    c.dgh = a.dgh + (t * B + r0) * GH; c.dgh_ld = GH;
    c.lengths = a.lengths ? a.lengths + r0 : nullptr; c.t = t;
    ops.cell_backward(c);
    // dh += dgh_t @ W_hh: m = R, n = H, k = GH (W_hh rows are unit-stride: read in place)
    GemmArgs g;
    g.m = R; g.n = H; g.k = GH;
    g.a = c.dgh; g.a_rs = GH; g.a_cs = 1;
    g.b = a.w_hh; g.b_rs = H; g.b_cs = 1;
    g.c = c.dh; g.c_rs = H; g.c_cs = 1;
    g.beta = 1.0f;
    ops.gemm(g);
  }
}

// dW_hh = sum_t dgh_t^T h_{in(t)}: one GEMM over the T*B rows (the entering states are one
// contiguous block in time order, see RnnSequenceArgs); db_hh = 1^T dgh.
void weight_grads(const RnnSequenceArgs& a, const RnnStepOps& ops) {
  const int64_t T = a.seq_len, B = a.batch, H = a.hidden, GH = rnn_num_gates(a.mode) * H;
  const float* h_in = a.hs + (a.reverse ? B * H : 0);
  GemmArgs w;
  w.m = GH; w.n = H; w.k = T * B;
  w.a = a.dgh; w.a_rs = 1; w.a_cs = GH;
  w.b = h_in; w.b_rs = H; w.b_cs = 1;
  w.c = a.dw_hh; w.c_rs = H; w.c_cs = 1;
  ops.gemm(w);
  if (a.db_hh) {
    GemmArgs bb;
    bb.m = 1; bb.n = GH; bb.k = T * B;
    bb.a = a.ones; bb.a_rs = 0; bb.a_cs = 0;
    bb.b = a.dgh; bb.b_rs = GH; bb.b_cs = 1;
    bb.c = a.db_hh; bb.c_rs = GH; bb.c_cs = 1;
    ops.gemm(bb);
  }
}

// Work items of the CPU drivers: (direction, block of batch rows), as many as threads (each
// direction gets num_threads / D row blocks, at least one). One parallel region runs them all:
// no fork/join and no barrier per time step, which is what a per-step parallel GEMM + cell
// would cost (2 regions per step; on a loaded machine each waits for a descheduled thread).
struct RowBlocks {
  int64_t per_dir = 1, items = 1;
  RowBlocks(int64_t D, int64_t B) {
    per_dir = std::max<int64_t>(1, std::min<int64_t>(B, num_threads() / D));
    items = D * per_dir;
  }
  void rows(int64_t item, int64_t B, int64_t* r0, int64_t* r1) const {
    const int64_t k = item % per_dir;
    *r0 = B * k / per_dir;
    *r1 = B * (k + 1) / per_dir;
  }
};

template <typename Fn>
void run_items(int64_t items, Fn&& fn) {
  if (items == 1) {
    fn(int64_t{0});
    return;
  }
#pragma omp parallel for num_threads(static_cast<int>(items)) schedule(static, 1)
  for (int64_t i = 0; i < items; ++i) fn(i);
}
}  // namespace

void rnn_sequence_forward(const RnnSequenceArgs& a, const RnnStepOps& ops) {
  sequence_forward_rows(a, ops, 0, a.batch, a.gh, nullptr);
}

void rnn_sequence_backward(const RnnSequenceArgs& a, const RnnStepOps& ops) {
  sequence_backward_rows(a, ops, 0, a.batch);
  weight_grads(a, ops);
}

namespace cpu {

void rnn_layer_forward(const RnnSequenceArgs* dirs, int64_t D) {
  const int64_t B = dirs[0].batch, H = dirs[0].hidden, GH = rnn_num_gates(dirs[0].mode) * H;
  const RowBlocks blocks(D, B);
  // W_hh^T per direction, and per item a gh scratch of its rows.
  std::vector<Scratch> w_t, gh;
  for (int64_t d = 0; d < D; ++d) {
    w_t.emplace_back(H * GH);
    const float* w = dirs[d].w_hh;
    float* wt = w_t.back().p;
    for (int64_t j = 0; j < GH; ++j)
      for (int64_t k = 0; k < H; ++k) wt[k * GH + j] = w[j * H + k];
  }
  for (int64_t i = 0; i < blocks.items; ++i) {
    int64_t r0, r1;
    blocks.rows(i, B, &r0, &r1);
    gh.emplace_back((r1 - r0) * GH);
  }
  const RnnStepOps ops = rnn_step_ops();
  run_items(blocks.items, [&](int64_t i) {
    int64_t r0, r1;
    blocks.rows(i, B, &r0, &r1);
    const int64_t d = i / blocks.per_dir;
    sequence_forward_rows(dirs[d], ops, r0, r1, gh[i].p, w_t[d].p);
  });
}

void rnn_layer_backward(const RnnSequenceArgs* dirs, int64_t D) {
  const int64_t B = dirs[0].batch;
  const RowBlocks blocks(D, B);
  const RnnStepOps ops = rnn_step_ops();
  run_items(blocks.items, [&](int64_t i) {
    int64_t r0, r1;
    blocks.rows(i, B, &r0, &r1);
    sequence_backward_rows(dirs[i / blocks.per_dir], ops, r0, r1);
  });
  for (int64_t d = 0; d < D; ++d) weight_grads(dirs[d], ops);
}

}  // namespace cpu

}  // namespace fastnn
