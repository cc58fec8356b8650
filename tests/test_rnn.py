"""Recurrent cells (fastnn.ops.lstm_cell / gru_cell / rnn_cell and their backward) and layers
(fastnn.nn.RNN / LSTM / GRU).

References:
* cells: a float64 NumPy cell and its hand-derived backward; the backward formulas themselves
  are checked by central finite differences of the float64 cell (tiny shapes), so the float32
  kernels are compared with an independently verified float64 reference;
* layers: a float64 NumPy implementation of the whole stack (lengths included) differentiated
  by finite differences (tiny shapes), and torch.nn.LSTM/GRU/RNN in float32 with copied
  weights (outputs and every gradient, lengths through pack_padded_sequence).

Tolerances. Cells: the float32 kernels evaluate exp/tanh to ~2 ulp (train_vec.h) and combine
O(1) values in a handful of operations, so |err| <= ~10 eps32 ~ 1.2e-6 on values of size <= 1;
we use atol = 2e-6 + 2e-6 * |ref|. Layers vs float64: each step adds a length-H(+I) dot product
(error ~ k eps32 |w||h|) that propagates through T steps with contraction (|tanh'|, |sigmoid'| <=
1); with k <= 40, T <= 9 the bound 2e-5 * (1 + |ref|) holds with margin. Gradients sum T*B
terms more: 5e-5 * (1 + |ref|). Against torch (both float32, different summation orders) the
same bounds apply.

CUDA cases run on the emulator in the three resume orders (forward / reverse / random).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fastnn
from fastnn import nn, ops

from gradcheck_util import fd_grads

DEVICES = ["cpu"] + (["cuda"] if fastnn.cuda.is_available() else [])
MODES = ["lstm", "gru", "rnn_tanh", "rnn_relu"]
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}



def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---- float64 references ----------------------------------------------------------------------
def ref_cell(mode, gx, gh, h, c=None):
    """-> (h', c' or None)."""
    H = h.shape[-1]
    if mode == "lstm":
        a = gx + gh
        i, f, g, o = _sig(a[:, :H]), _sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), _sig(a[:, 3 * H:])
        cn = f * c + i * g
        return o * np.tanh(cn), cn
    if mode == "gru":
        r = _sig(gx[:, :H] + gh[:, :H])
        z = _sig(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        return (1 - z) * n + z * h, None
    pre = gx + gh
    return (np.tanh(pre) if mode == "rnn_tanh" else np.maximum(pre, 0.0)), None


def ref_cell_backward(mode, dh, dc, gx, gh, h, c=None):
    """Hand-derived backward -> (dgx, dgh, dh_prev_direct, dc_prev)."""
    H = h.shape[-1]
    if mode == "lstm":
        a = gx + gh
        i, f, g, o = _sig(a[:, :H]), _sig(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), _sig(a[:, 3 * H:])
        cn = f * c + i * g
        tc = np.tanh(cn)
        dcc = dc + dh * o * (1 - tc ** 2)
        d = np.concatenate([dcc * g * i * (1 - i), dcc * c * f * (1 - f), dcc * i * (1 - g ** 2),
                            dh * tc * o * (1 - o)], axis=1)
        return d, d, np.zeros_like(h), dcc * f
    if mode == "gru":
        r = _sig(gx[:, :H] + gh[:, :H])
        z = _sig(gx[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
        dnp = dh * (1 - z) * (1 - n ** 2)
        dzp = dh * (h - n) * z * (1 - z)
        drp = dnp * gh[:, 2 * H:] * r * (1 - r)
        return (np.concatenate([drp, dzp, dnp], 1), np.concatenate([drp, dzp, dnp * r], 1), dh * z, None)
    pre = gx + gh
    d = dh * (1 - np.tanh(pre) ** 2) if mode == "rnn_tanh" else dh * (pre > 0)
    return d, d, np.zeros_like(h), None


def _cell_inputs(rng, mode, B, H):
    G = GATES[mode]
    gx = rng.standard_normal((B, G * H)) * 1.5
    gh = rng.standard_normal((B, G * H)) * 1.5
    h = rng.standard_normal((B, H)) * 0.8
    c = rng.standard_normal((B, H)) if mode == "lstm" else None
    return gx, gh, h, c


def _close(got, ref, atol=2e-6, rtol=2e-6):
    got = got.cpu().numpy() if hasattr(got, "cpu") else np.asarray(got)
    np.testing.assert_allclose(got, ref, atol=atol, rtol=rtol)


# ---- the reference backward is right: finite differences of the float64 cell ---------------
@pytest.mark.parametrize("mode", MODES)
def test_reference_cell_backward_matches_finite_differences(mode, rng):
    B, H = 2, 3
    gx, gh, h, c = _cell_inputs(rng, mode, B, H)
    rh = rng.standard_normal((B, H))
    rc = rng.standard_normal((B, H)) if mode == "lstm" else None

    def loss_parts(gx_, gh_, h_, c_):
        hn, cn = ref_cell(mode, gx_, gh_, h_, c_)
        return hn, cn

    def f(gx_, gh_, h_, c_=None):
        hn, cn = loss_parts(gx_, gh_, h_, c_)
        out = np.sum(hn * rh)
        return out + (np.sum(cn * rc) if cn is not None else 0.0)

    args = [gx, gh, h] + ([c] if c is not None else [])
    fd = fd_grads(lambda *a: np.array(f(*a)), args, np.array(1.0))
    dgx, dgh, dhp, dcp = ref_cell_backward(mode, rh, rc, gx, gh, h, c)
    np.testing.assert_allclose(dgx, fd[0], atol=1e-7)
    np.testing.assert_allclose(dgh, fd[1], atol=1e-7)
    np.testing.assert_allclose(dhp, fd[2], atol=1e-7)
    if mode == "lstm":
        np.testing.assert_allclose(dcp, fd[3], atol=1e-7)


# ---- cells: float32 kernels vs the float64 reference -------------------------------------------
def _run_cell_case(mode, B, H, device, rng):
    gx, gh, h, c = _cell_inputs(rng, mode, B, H)
    t = lambda a: fastnn.tensor(a.astype(np.float32)).to(device)  # noqa: E731
    # the float64 reference sees exactly the float32-rounded inputs
    gx, gh, h = (a.astype(np.float32).astype(np.float64) for a in (gx, gh, h))
    c = c.astype(np.float32).astype(np.float64) if c is not None else None
    hn_ref, cn_ref = ref_cell(mode, gx, gh, h, c)
    dh = rng.standard_normal((B, H)).astype(np.float32).astype(np.float64)
    dc = rng.standard_normal((B, H)).astype(np.float32).astype(np.float64) if mode == "lstm" else None
    dgx_r, dgh_r, dhp_r, dcp_r = ref_cell_backward(mode, dh, dc, gx, gh, h, c)
    if mode == "lstm":
        hn, cn, saved = ops.lstm_cell(t(gx), t(gh), t(c))
        _close(hn, hn_ref)
        _close(cn, cn_ref)
        dg, dcp = ops.lstm_cell_backward(t(dh), t(dc), saved, t(c), cn)
        _close(dg, dgx_r, atol=5e-6)
        _close(dcp, dcp_r, atol=5e-6)
    elif mode == "gru":
        hn, saved = ops.gru_cell(t(gx), t(gh), t(h))
        _close(hn, hn_ref)
        dgx, dgh, dhp = ops.gru_cell_backward(t(dh), saved, t(h))
        _close(dgx, dgx_r, atol=5e-6)
        _close(dgh, dgh_r, atol=5e-6)
        _close(dhp, dhp_r, atol=5e-6)
    else:
        nl = mode[4:]
        hn = ops.rnn_cell(t(gx), t(gh), nl)
        _close(hn, hn_ref)
        dg = ops.rnn_cell_backward(t(dh), hn, nl)
        _close(dg, dgx_r, atol=5e-6)


CELL_SHAPES = [(1, 1), (3, 17), (2, 33), (4, 64), (2, 65), (1, 127), (2, 129)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,H", CELL_SHAPES)
def test_cell_cpu(mode, B, H, simd_level, threads, rng):
    _run_cell_case(mode, B, H, "cpu", rng)


@pytest.mark.skipif("cuda" not in DEVICES, reason="no cuda device (nor the emulator)")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("B,H", [(1, 1), (3, 17), (2, 129)])
def test_cell_cuda(mode, B, H, emu_order, rng):
    _run_cell_case(mode, B, H, "cuda", rng)


# ---- layers: float64 NumPy stack + finite differences ---------------------------------------
def ref_stack(mode, x, h0, c0, params, L, D, lengths):
    """float64 reference of nn.<mode> (T, B, I) without dropout -> (y, h_n, c_n)."""
    T, B, _ = x.shape
    H = params[1].shape[1]
    inp = x
    hn, cn = [], []
    for l in range(L):
        outs = []
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh = params[(l * D + d) * 4:(l * D + d + 1) * 4]
            h = h0[l * D + d].copy()
            c = c0[l * D + d].copy() if c0 is not None else None
            y = np.zeros((T, B, H))
            steps = range(T - 1, -1, -1) if d == 1 else range(T)
            for t in steps:
                act = (t < lengths)[:, None]
                hh, cc = ref_cell(mode, inp[t] @ w_ih.T + b_ih, h @ w_hh.T + b_hh, h, c)
                h = np.where(act, hh, h)
                if c is not None:
                    c = np.where(act, cc, c)
                y[t] = np.where(act, hh, 0.0)
            outs.append(y)
            hn.append(h)
            cn.append(c)
        inp = np.concatenate(outs, axis=2)
    return inp, np.stack(hn), (np.stack(cn) if c0 is not None else None)


def _fast_module(mode, I, H, L, bi):
    if mode == "lstm":
        return nn.LSTM(I, H, num_layers=L, bidirectional=bi)
    if mode == "gru":
        return nn.GRU(I, H, num_layers=L, bidirectional=bi)
    return nn.RNN(I, H, num_layers=L, nonlinearity=mode[4:], bidirectional=bi)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("device", DEVICES)
def test_layer_gradients_match_finite_differences(mode, device, rng):
    T, B, I, H, L, bi = 3, 2, 2, 3, 2, True
    D = 2
    fastnn.manual_seed(3)
    m = _fast_module(mode, I, H, L, bi)
    params = [p.numpy().astype(np.float64) for p in m.all_weights]
    x = rng.standard_normal((T, B, I))
    h0 = rng.standard_normal((L * D, B, H)) * 0.5
    c0 = rng.standard_normal((L * D, B, H)) * 0.5 if mode == "lstm" else None
    lengths = np.array([3, 2])
    ry = rng.standard_normal((T, B, D * H))
    rh = rng.standard_normal((L * D, B, H))
    rc = rng.standard_normal((L * D, B, H))
    lstm = mode == "lstm"

    def f(x_, h0_, *rest):
        c0_ = rest[0] if lstm else None
        ps = list(rest[1:] if lstm else rest)
        y, hn, cn = ref_stack(mode, x_, h0_, c0_, ps, L, D, lengths)
        v = np.sum(y * ry) + np.sum(hn * rh)
        return np.array(v + (np.sum(cn * rc) if lstm else 0.0))

    args = [x, h0] + ([c0] if lstm else []) + params
    fd = fd_grads(f, args, np.array(1.0))
    m.to(device)
    t = lambda a: fastnn.tensor(a.astype(np.float32)).to(device).requires_grad_()  # noqa: E731
    xt, h0t = t(x), t(h0)
    if lstm:
        c0t = t(c0)
        y, (hn, cn) = m(xt, (h0t, c0t), lengths=lengths)
        loss = (y * t(ry)).sum() + (hn * t(rh)).sum() + (cn * t(rc)).sum()
    else:
        y, hn = m(xt, h0t, lengths=lengths)
        loss = (y * t(ry)).sum() + (hn * t(rh)).sum()
    yr, hr, cr = ref_stack(mode, x, h0, c0, params, L, D, lengths)
    np.testing.assert_allclose(y.cpu().numpy(), yr, atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(hn.cpu().numpy(), hr, atol=2e-5, rtol=2e-5)
    loss.backward()
    got = [xt.grad, h0t.grad] + ([c0t.grad] if lstm else []) + [p.grad for p in m.all_weights]
    for gi, fi in zip(got, fd):
        np.testing.assert_allclose(gi.cpu().numpy(), fi, atol=5e-5, rtol=5e-5)


# ---- layers vs torch ------------------------------------------------------------------------
def _pair(mode, I, H, L, bi, batch_first=False, bias=True):
    kw = dict(num_layers=L, bidirectional=bi, batch_first=batch_first, bias=bias)
    if mode == "lstm":
        tm, fm = torch.nn.LSTM(I, H, **kw), nn.LSTM(I, H, **kw)
    elif mode == "gru":
        tm, fm = torch.nn.GRU(I, H, **kw), nn.GRU(I, H, **kw)
    else:
        tm = torch.nn.RNN(I, H, nonlinearity=mode[4:], **kw)
        fm = nn.RNN(I, H, nonlinearity=mode[4:], **kw)
    assert list(fm.state_dict().keys()) == list(tm.state_dict().keys())
    for n, p in tm.named_parameters():
        getattr(fm, n).copy_(fastnn.tensor(p.detach().numpy()))
    return tm, fm


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_layer_matches_torch(mode, bi, batch_first, use_lengths, rng):
    T, B, I, H, L = 9, 5, 7, 17, 2
    D = 2 if bi else 1
    torch.manual_seed(0)
    tm, fm = _pair(mode, I, H, L, bi, batch_first)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(np.float32)
    h0 = (rng.standard_normal((L * D, B, H)) * 0.5).astype(np.float32)
    c0 = (rng.standard_normal((L * D, B, H)) * 0.5).astype(np.float32)
    lengths = np.array([9, 3, 1, 9, 6]) if use_lengths else None
    ry = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H)).astype(np.float32)
    rh = rng.standard_normal((L * D, B, H)).astype(np.float32)
    lstm = mode == "lstm"

    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
    yt, st = tm(inp, (h0t, c0t) if lstm else h0t)
    if lengths is not None:
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=batch_first, total_length=T)
    ht = st[0] if lstm else st
    loss_t = (yt * torch.tensor(ry)).sum() + (ht * torch.tensor(rh)).sum() + (st[1].sum() if lstm else 0.0)
    loss_t.backward()

    xf = fastnn.tensor(x, requires_grad=True)
    h0f, c0f = fastnn.tensor(h0, requires_grad=True), fastnn.tensor(c0, requires_grad=True)
    yf, sf = fm(xf, (h0f, c0f) if lstm else h0f, lengths=lengths)
    hf = sf[0] if lstm else sf
    loss_f = (yf * fastnn.tensor(ry)).sum() + (hf * fastnn.tensor(rh)).sum() + (sf[1].sum() if lstm else 0.0)
    loss_f.backward()

    tol = dict(atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), **tol)
    np.testing.assert_allclose(hf.numpy(), ht.detach().numpy(), **tol)
    if lstm:
        np.testing.assert_allclose(sf[1].numpy(), st[1].detach().numpy(), **tol)
    gtol = dict(atol=5e-5, rtol=5e-5)
    np.testing.assert_allclose(xf.grad.numpy(), xt.grad.numpy(), **gtol)
    np.testing.assert_allclose(h0f.grad.numpy(), h0t.grad.numpy(), **gtol)
    if lstm:
        np.testing.assert_allclose(c0f.grad.numpy(), c0t.grad.numpy(), **gtol)
    for n, p in tm.named_parameters():
        np.testing.assert_allclose(getattr(fm, n).grad.numpy(), p.grad.numpy(), err_msg=n, **gtol)


@pytest.mark.parametrize("mode", MODES)
def test_layer_with_lengths_every_simd_level(mode, simd_level, rng):
    """Sequences that end early (the cells carry the state over, write zero output and no gate
    gradients for finished rows) at every SIMD level; the test above runs at the best level only."""
    test_layer_matches_torch(mode, True, False, True, rng)


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_layer_without_bias_and_default_states(mode, rng):
    tm, fm = _pair(mode, 4, 6, 1, False, bias=False)
    x = rng.standard_normal((5, 3, 4)).astype(np.float32)
    yt, _ = tm(torch.tensor(x))
    yf, _ = fm(fastnn.tensor(x))
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), atol=2e-5, rtol=2e-5)
    assert "bias_ih_l0" not in fm.state_dict()


def test_unbatched_input_matches_torch(rng):
    tm, fm = _pair("lstm", 3, 4, 2, True)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    yt, (ht, ct) = tm(torch.tensor(x))
    yf, (hf, cf) = fm(fastnn.tensor(x))
    assert tuple(yf.shape) == (6, 8) and tuple(hf.shape) == (4, 4)
    np.testing.assert_allclose(yf.numpy(), yt.detach().numpy(), atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(cf.numpy(), ct.detach().numpy(), atol=2e-5, rtol=2e-5)


def test_dropout_between_layers(rng):
    x = fastnn.tensor(rng.standard_normal((6, 4, 3)).astype(np.float32))
    fastnn.manual_seed(0)
    m = nn.LSTM(3, 8, num_layers=2, dropout=0.5)
    ref = nn.LSTM(3, 8, num_layers=2)
    ref.load_state_dict(m.state_dict())
    m.eval()
    np.testing.assert_array_equal(m(x)[0].numpy(), ref(x)[0].numpy())  # eval: no dropout
    m.train()
    fastnn.manual_seed(5)
    y1 = m(x)[0].numpy()
    fastnn.manual_seed(5)
    xg = fastnn.tensor(x.numpy(), requires_grad=True)
    y2 = m(xg)[0]
    np.testing.assert_array_equal(y1, y2.numpy())  # seeded
    assert np.abs(y1 - ref(x)[0].numpy()).max() > 1e-3  # the mask changed the output
    (y2 * y2).sum().backward()
    assert np.isfinite(xg.grad.numpy()).all() and np.abs(xg.grad.numpy()).sum() > 0
    # single layer: dropout has nothing to act on
    one = nn.GRU(3, 4, dropout=0.5)
    one.train()
    assert np.isfinite(one(x)[0].numpy()).all()


def test_dropout_gradient_is_the_masked_chain_rule(rng):
    """With dropout the node's backward must re-apply the same mask: check against finite
    differences of the fastnn forward itself, re-seeded identically per evaluation."""
    x = rng.standard_normal((3, 2, 2)).astype(np.float32)
    fastnn.manual_seed(1)
    m = nn.RNN(2, 3, num_layers=2, dropout=0.4)
    r = rng.standard_normal((3, 2, 3)).astype(np.float32)

    def f(xa):
        fastnn.manual_seed(9)
        with fastnn.no_grad():
            return float(np.sum(m(fastnn.tensor(xa.astype(np.float32)))[0].numpy().astype(np.float64) * r))

    fastnn.manual_seed(9)
    xt = fastnn.tensor(x, requires_grad=True)
    (m(xt)[0] * fastnn.tensor(r)).sum().backward()
    h = 1e-2
    fd = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        xp, xm = x.astype(np.float64), x.astype(np.float64)
        xp[idx] += h
        xm[idx] -= h
        fd[idx] = (f(xp) - f(xm)) / (2 * h)
    # float32 forward differenced with h = 1e-2: rounding ~ 1e-6 / 1e-2, truncation ~ h^2
    np.testing.assert_allclose(xt.grad.numpy(), fd, atol=2e-3, rtol=2e-3)


@pytest.mark.skipif("cuda" not in DEVICES, reason="no cuda device (nor the emulator)")
@pytest.mark.parametrize("mode", MODES)
def test_layer_cuda_matches_cpu(mode, emu_order, rng):
    fastnn.manual_seed(2)
    m = _fast_module(mode, 3, 5, 2, True)
    x = rng.standard_normal((4, 3, 3)).astype(np.float32)
    lengths = [4, 1, 3]
    xc = fastnn.tensor(x, requires_grad=True)
    y, _ = m(xc, lengths=lengths)
    (y * y).sum().backward()
    ref = {n: p.grad.numpy() for n, p in m.named_parameters()}
    m.zero_grad()
    m.to("cuda")
    xg = fastnn.tensor(x).to("cuda").requires_grad_()
    yg, _ = m(xg, lengths=lengths)
    (yg * yg).sum().backward()
    np.testing.assert_allclose(yg.cpu().numpy(), y.numpy(), atol=2e-6, rtol=2e-6)
    np.testing.assert_allclose(xg.grad.cpu().numpy(), xc.grad.numpy(), atol=1e-5, rtol=1e-5)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad.cpu().numpy(), ref[n], atol=1e-5, rtol=1e-5, err_msg=n)


# ---- error contract --------------------------------------------------------------------------
def test_errors(rng):
    m = nn.LSTM(3, 4, num_layers=2)
    x = fastnn.tensor(rng.standard_normal((5, 2, 3)).astype(np.float32))
    with pytest.raises(ValueError, match="input_size=3"):
        m(fastnn.tensor(np.zeros((5, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="hx"):
        m(x, (fastnn.zeros(1, 2, 4), fastnn.zeros(2, 2, 4)))
    with pytest.raises(ValueError, match="lengths.*values in \\[1, 5\\].*got 6"):
        m(x, lengths=[6, 1])
    with pytest.raises(ValueError, match="lengths.*got 0"):
        m(x, lengths=[0, 1])
    with pytest.raises(ValueError, match="lengths.*\\(2,\\)"):
        m(x, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="2-D.*3-D"):
        m(fastnn.zeros(2, 2, 2, 3))
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        nn.GRU(3, 4, dropout=1.5)
    with pytest.raises(ValueError, match="mode"):
        fastnn._C.rnn_cell("lstn", np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32),
                           np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="gates_h.*\\(2, 12\\)"):
        ops.gru_cell(np.zeros((2, 12), np.float32), np.zeros((2, 11), np.float32), np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        ops.lstm_cell(np.zeros((2, 16)), np.zeros((2, 16)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="c_prev"):
        fastnn._C.rnn_cell("lstm", np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32),
                           np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="nonlinearity"):
        ops.rnn_cell(np.zeros((1, 4), np.float32), np.zeros((1, 4), np.float32), "gelu")



@pytest.mark.skipif(not fastnn.cuda.is_available(), reason="no cuda device (nor the emulator)")
def test_rnn_layer_backward_bias_on_cuda_makes_no_host_copy():
    # the bias gradient's row of ones is filled on the device: asking for db_hh adds no host->device copy
    # (the lengths' validation round trip is the same with and without it)
    from op_cases import _f, _rnn_layer_inputs, dev
    from fastnn import _C
    rng = np.random.default_rng(0)
    xp, w, b, h0, c0, lengths = _rnn_layer_inputs(rng, "cuda")
    _, hs, cs, saved = ops.rnn_layer_forward("lstm", xp, w, b, h0, c0, lengths)
    gy, ghn, gcn = dev(_f(rng, 5, 3, 18), "cuda"), dev(_f(rng, 2, 3, 9), "cuda"), dev(_f(rng, 2, 3, 9), "cuda")

    def copies(need_bias):
        before = _C._cuda_host_device_copies()
        ops.rnn_layer_backward("lstm", gy, ghn, gcn, w, hs, cs, saved, lengths, need_bias)
        return _C._cuda_host_device_copies() - before

    copies(True), copies(False)  # warm-up (allocator, plan caches)
    assert copies(True) == copies(False), "rnn_layer_backward(need_bias) copied to the device"
