// Recurrent cells (Elman RNN tanh/relu, LSTM, GRU), float32, PyTorch's gate layout.
//
// The two GEMMs are not part of the cell: the input projection gx = x W_ih^T + b_ih of a
// whole sequence is one GEMM done by the caller, the recurrent projection gh = h W_hh^T + b_hh
// is one GEMM per time step (fastnn's GEMM; the sequence driver below issues it). The cell is
// one fused elementwise kernel per time step over (batch, hidden):
//   RNN : h' = act(gx + gh)
//   LSTM: i,f,g,o = sig,sig,tanh,sig of (gx + gh) (gate order i|f|g|o, as torch);
//         c' = f c + i g;  h' = o tanh(c')
//   GRU : r = sig(gx_r + gh_r), z = sig(gx_z + gh_z), n = tanh(gx_n + r gh_n);
//         h' = (1 - z) n + z h                        (gate order r|z|n, as torch)
// Variable lengths: row b is active at time t iff lengths == nullptr || t < lengths[b]. An
// inactive row keeps its state (h' = h, c' = c), writes y = 0 and, in the backward, passes
// dh/dc through unchanged with zero gate gradients: final states are those at each
// sequence's last valid step, outputs beyond it are zeros (torch's pack_padded_sequence).
#pragma once
#include <cstdint>
#include <functional>

#include "fastnn/gemm.h"

namespace fastnn {

enum class RnnMode : int { rnn_tanh = 0, rnn_relu = 1, lstm = 2, gru = 3 };

constexpr int64_t rnn_num_gates(RnnMode m) { return m == RnnMode::lstm ? 4 : m == RnnMode::gru ? 3 : 1; }
// Floats saved per (row, hidden unit) for the backward: LSTM i,f,g,o; GRU r,z,n,gh_n; RNN none (h').
constexpr int64_t rnn_num_saved(RnnMode m) { return m == RnnMode::lstm || m == RnnMode::gru ? 4 : 0; }

// One time step, `batch` rows of `hidden` units. Row strides (ld) are in elements; h_prev,
// c_prev, h, c are contiguous (batch, hidden). `saved` is (batch, rnn_num_saved * hidden).
struct RnnCellArgs {
  RnnMode mode = RnnMode::lstm;
  int64_t batch = 0, hidden = 0;
  const float* gx = nullptr;  int64_t gx_ld = 0;  // (batch, G*hidden), includes b_ih
  const float* gh = nullptr;  int64_t gh_ld = 0;  // (batch, G*hidden), includes b_hh
  const float* h_prev = nullptr;
  const float* c_prev = nullptr;                  // LSTM only
  float* h = nullptr;
  float* c = nullptr;                             // LSTM only
  float* y = nullptr;         int64_t y_ld = 0;   // optional: the step's output row (0 if inactive)
  float* saved = nullptr;                         // LSTM / GRU
  const int64_t* lengths = nullptr;               // optional, (batch,)
  int64_t t = 0;
};

// Backward of one step. dh (batch, hidden) holds dL/dh' on entry (the recurrent part; dy is
// added here) and the direct part of dL/dh on exit (GRU: dh' z; inactive rows: dh'); the
// caller adds dgh W_hh. dc (LSTM) is dL/dc' on entry, dL/dc on exit. dgx/dgh are the
// gradients of the pre-activation projections (for LSTM/RNN they are equal: dgh may alias dgx).
struct RnnCellBackwardArgs {
  RnnMode mode = RnnMode::lstm;
  int64_t batch = 0, hidden = 0;
  const float* dy = nullptr;  int64_t dy_ld = 0;  // optional
  float* dh = nullptr;
  float* dc = nullptr;                            // LSTM only
  const float* saved = nullptr;                   // LSTM / GRU
  const float* h_prev = nullptr;                  // GRU
  const float* c_prev = nullptr;                  // LSTM
  const float* c = nullptr;                       // LSTM: c'
  const float* h = nullptr;                       // RNN: h'
  float* dgx = nullptr;       int64_t dgx_ld = 0;
  float* dgh = nullptr;       int64_t dgh_ld = 0;
  const int64_t* lengths = nullptr;
  int64_t t = 0;
};

// A whole sequence of one layer and one direction. All pointers on one device.
// States are stored in time order: for the forward direction hs[t] is the state entering
// step t and hs[t+1] the one leaving it (hs[0] = h0, hs[T] = final); for the reverse
// direction hs[t+1] enters step t and hs[t] leaves it (hs[T] = h0, hs[0] = final). The
// states entering steps 0..T-1 are then one contiguous (T*batch, hidden) block either way,
// which makes dW_hh a single GEMM over the whole sequence in the backward.
struct RnnSequenceArgs {
  RnnMode mode = RnnMode::lstm;
  int64_t seq_len = 0, batch = 0, hidden = 0;
  bool reverse = false;
  const float* xproj = nullptr;   // (T, batch, G*hidden) contiguous
  const float* w_hh = nullptr;    // (G*hidden, hidden)
  const float* b_hh = nullptr;    // (G*hidden) or nullptr
  const int64_t* lengths = nullptr;
  float* hs = nullptr;            // (T+1, batch, hidden); h0 pre-filled at its slot
  float* cs = nullptr;            // (T+1, batch, hidden) LSTM; c0 pre-filled
  float* y = nullptr;             int64_t y_ld = 0;  // (T, batch, y_ld) output, this direction's columns
  float* saved = nullptr;         // (T, batch, S*hidden)
  float* gh = nullptr;            // scratch (batch, G*hidden)
  // backward only
  const float* dy = nullptr;      int64_t dy_ld = 0;
  float* dh = nullptr;            // (batch, hidden): dL/dh_final in, dL/dh0 out
  float* dc = nullptr;            // LSTM: dL/dc_final in, dL/dc0 out
  float* dgx = nullptr;           // (T, batch, G*hidden) out
  float* dgh = nullptr;           // (T, batch, G*hidden) GRU scratch (== dgx for LSTM/RNN)
  float* dw_hh = nullptr;         // (G*hidden, hidden) out (overwritten)
  float* db_hh = nullptr;         // (G*hidden) out or nullptr
  const float* ones = nullptr;    // T*batch ones on the device when db_hh is wanted (or one 1.0 with stride 0)
};

// What the sequence driver needs from a device: its GEMM and its cell kernels.
struct RnnStepOps {
  std::function<void(const GemmArgs&)> gemm;
  std::function<void(const RnnCellArgs&)> cell;
  std::function<void(const RnnCellBackwardArgs&)> cell_backward;
};

// Device-agnostic drivers (csrc/cpu/rnn.cpp): T recurrent GEMMs + T fused cell launches.
void rnn_sequence_forward(const RnnSequenceArgs& a, const RnnStepOps& ops);
void rnn_sequence_backward(const RnnSequenceArgs& a, const RnnStepOps& ops);

namespace cpu {
void rnn_cell(const RnnCellArgs& args);
void rnn_cell_backward(const RnnCellBackwardArgs& args);
RnnStepOps rnn_step_ops();
// One layer on the CPU, all D directions (dirs[0..D), each as for rnn_sequence_*; `gh` is
// unused): every (direction, block of batch rows) is its own single-threaded time loop and
// all of them run in one parallel region, so no step waits on another thread. The backward
// then forms dW_hh / db_hh per direction with the (multi-threaded) GEMM.
void rnn_layer_forward(const RnnSequenceArgs* dirs, int64_t D);
void rnn_layer_backward(const RnnSequenceArgs* dirs, int64_t D);
}  // namespace cpu

}  // namespace fastnn
