// Fused recurrent cell kernels (RNN tanh/relu, LSTM, GRU): forward and backward of one time
// step, after the two GEMMs (see fastnn/rnn.h for the formulas and the lengths rule).
//
// Algorithm: rows (batch) are split across threads; each row is one pass over its hidden
// units in SIMD vectors (train_vec.h: vsigmoid/vtanh, masked tails), reading the G gate
// slices of gx and gh, writing the new state, the output row and the saved activations.
// Bound: memory / latency. Per step an LSTM reads 8H and writes ~7H floats per row (~60
// B/unit) with ~40 flops of exp-based math: for batch 64, hidden 256 that is 1 MB per step,
// L2-resident, ~10-20 us, an order below the step's recurrent GEMM (64x1024x256, 34 MFLOP).
// Reference: the ISA level 0 build is the plain scalar loop (std::exp / std::tanh); the
// tests compare every level against a float64 NumPy cell.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cpu/parallel.h"
#include "fastnn/rnn.h"

#include "cpu/isa_begin.h"
#include "cpu/kernels/train_vec.h"

namespace {

using fastnn::RnnCellArgs;
using fastnn::RnnCellBackwardArgs;
using fastnn::RnnMode;

// Rows per thread chunk: a second thread only pays off above a few thousand units.
int64_t row_grain(int64_t hidden) { return hidden >= 4096 ? 1 : 4096 / (hidden > 0 ? hidden : 1); }

bool active(const int64_t* lengths, int64_t b, int64_t t) { return lengths == nullptr || t < lengths[b]; }

void zero_row(float* p, int64_t n) {
  if (p) std::memset(p, 0, static_cast<size_t>(n) * sizeof(float));
}

// Four gate-major values of one vector of hidden units (saved LSTM i,f,g,o / GRU r,z,n,gh_n,
// or the four LSTM gate gradients).
template <typename M>
void store4(const M& m, float* sv, int64_t H, int64_t j, VF s0, VF s1, VF s2, VF s3) {
  m.st(sv + j, s0);
  m.st(sv + H + j, s1);
  m.st(sv + 2 * H + j, s2);
  m.st(sv + 3 * H + j, s3);
}

void cell_row(const RnnCellArgs& a, int64_t b) {
  const int64_t H = a.hidden;
  const float* gx = a.gx + b * a.gx_ld;
  const float* gh = a.gh + b * a.gh_ld;
  const float* hp = a.h_prev + b * H;
  float* h = a.h + b * H;
  float* y = a.y ? a.y + b * a.y_ld : nullptr;
  float* sv = a.saved ? a.saved + b * fastnn::rnn_num_saved(a.mode) * H : nullptr;
  if (!active(a.lengths, b, a.t)) {  // state carried over, output zero
    std::memcpy(h, hp, static_cast<size_t>(H) * sizeof(float));
    if (a.mode == RnnMode::lstm) std::memcpy(a.c + b * H, a.c_prev + b * H, static_cast<size_t>(H) * sizeof(float));
    zero_row(y, H);
    zero_row(sv, fastnn::rnn_num_saved(a.mode) * H);
    return;
  }
  switch (a.mode) {
    case RnnMode::lstm: {
      const float* cp = a.c_prev + b * H;
      float* c = a.c + b * H;
      vloop(0, H, [&](int64_t j, auto m) {
        VF i = vsigmoid(vadd(m.ld(gx + j), m.ld(gh + j)));
        VF f = vsigmoid(vadd(m.ld(gx + H + j), m.ld(gh + H + j)));
        VF g = vtanh(vadd(m.ld(gx + 2 * H + j), m.ld(gh + 2 * H + j)));
        VF o = vsigmoid(vadd(m.ld(gx + 3 * H + j), m.ld(gh + 3 * H + j)));
        VF cn = vfma(f, m.ld(cp + j), vmul(i, g));
        VF hn = vmul(o, vtanh(cn));
        m.st(c + j, cn);
        m.st(h + j, hn);
        if (y) m.st(y + j, hn);
        if (sv) store4(m, sv, H, j, i, f, g, o);
      });
      break;
    }
    case RnnMode::gru: {
      vloop(0, H, [&](int64_t j, auto m) {
        VF r = vsigmoid(vadd(m.ld(gx + j), m.ld(gh + j)));
        VF z = vsigmoid(vadd(m.ld(gx + H + j), m.ld(gh + H + j)));
        VF ghn = m.ld(gh + 2 * H + j);
        VF n = vtanh(vfma(r, ghn, m.ld(gx + 2 * H + j)));
        VF hn = vfma(z, vsub(m.ld(hp + j), n), n);  // (1 - z) n + z h
        m.st(h + j, hn);
        if (y) m.st(y + j, hn);
        if (sv) store4(m, sv, H, j, r, z, n, ghn);
      });
      break;
    }
    default: {
      const bool relu = a.mode == RnnMode::rnn_relu;
      vloop(0, H, [&](int64_t j, auto m) {
        VF pre = vadd(m.ld(gx + j), m.ld(gh + j));
        VF hn = relu ? vmax(vzero(), pre) : vtanh(pre);  // max(0, NaN) is NaN: the operand order matters
        m.st(h + j, hn);
        if (y) m.st(y + j, hn);
      });
    }
  }
}

void cell_backward_row(const RnnCellBackwardArgs& a, int64_t b) {
  const int64_t H = a.hidden, G = fastnn::rnn_num_gates(a.mode);
  float* dh = a.dh + b * H;
  float* dgx = a.dgx + b * a.dgx_ld;
  float* dgh = a.dgh + b * a.dgh_ld;
  const bool two = dgh != dgx;
  if (!active(a.lengths, b, a.t)) {  // dh, dc pass through; no gate gradients
    zero_row(dgx, G * H);
    if (two) zero_row(dgh, G * H);
    return;
  }
  const float* dy = a.dy ? a.dy + b * a.dy_ld : nullptr;
  const float* sv = a.saved ? a.saved + b * fastnn::rnn_num_saved(a.mode) * H : nullptr;
  auto dh_total = [&](int64_t j, auto m) { return dy ? vadd(m.ld(dh + j), m.ld(dy + j)) : m.ld(dh + j); };
  const VF one = vset(1.0f);
  switch (a.mode) {
    case RnnMode::lstm: {
      float* dc = a.dc + b * H;
      const float* cp = a.c_prev + b * H;
      const float* c = a.c + b * H;
      vloop(0, H, [&](int64_t j, auto m) {
        VF d = dh_total(j, m);
        VF i = m.ld(sv + j), f = m.ld(sv + H + j), g = m.ld(sv + 2 * H + j), o = m.ld(sv + 3 * H + j);
        VF tc = vtanh(m.ld(c + j));
        VF dcc = vfma(vmul(d, o), vfnma(tc, tc, one), m.ld(dc + j));
        VF di = vmul(vmul(dcc, g), vmul(i, vsub(one, i)));
        VF df = vmul(vmul(dcc, m.ld(cp + j)), vmul(f, vsub(one, f)));
        VF dg = vmul(vmul(dcc, i), vfnma(g, g, one));
        VF dout = vmul(vmul(d, tc), vmul(o, vsub(one, o)));
        store4(m, dgx, H, j, di, df, dg, dout);
        if (two) store4(m, dgh, H, j, di, df, dg, dout);
        m.st(dc + j, vmul(dcc, f));
        m.st(dh + j, vzero());
      });
      break;
    }
    case RnnMode::gru: {
      const float* hp = a.h_prev + b * H;
      vloop(0, H, [&](int64_t j, auto m) {
        VF d = dh_total(j, m);
        VF r = m.ld(sv + j), z = m.ld(sv + H + j), n = m.ld(sv + 2 * H + j), ghn = m.ld(sv + 3 * H + j);
        VF dnp = vmul(vmul(d, vsub(one, z)), vfnma(n, n, one));
        VF dzp = vmul(vmul(d, vsub(m.ld(hp + j), n)), vmul(z, vsub(one, z)));
        VF drp = vmul(vmul(dnp, ghn), vmul(r, vsub(one, r)));
        m.st(dgx + j, drp);
        m.st(dgx + H + j, dzp);
        m.st(dgx + 2 * H + j, dnp);
        m.st(dgh + j, drp);
        m.st(dgh + H + j, dzp);
        m.st(dgh + 2 * H + j, vmul(dnp, r));
        m.st(dh + j, vmul(d, z));
      });
      break;
    }
    default: {
      const bool relu = a.mode == RnnMode::rnn_relu;
      const float* hn = a.h + b * H;
      vloop(0, H, [&](int64_t j, auto m) {
        VF d = dh_total(j, m);
        VF hv = m.ld(hn + j);
        VF dp = relu ? vsel(vgt(hv, vzero()), d, vzero()) : vmul(d, vfnma(hv, hv, one));
        m.st(dgx + j, dp);
        if (two) m.st(dgh + j, dp);
        m.st(dh + j, vzero());
      });
    }
  }
}

}  // namespace

void rnn_cell(const RnnCellArgs& a) {
  fastnn::cpu::parallel_for(a.batch, row_grain(a.hidden), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) cell_row(a, b);
  });
}

void rnn_cell_backward(const RnnCellBackwardArgs& a) {
  fastnn::cpu::parallel_for(a.batch, row_grain(a.hidden), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) cell_backward_row(a, b);
  });
}

#include "cpu/isa_end.h"
