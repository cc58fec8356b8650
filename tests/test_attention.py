"""Fused attention (fastnn.ops.attention / attention_backward) against a float64 NumPy
reference: masks (causal bottom-right, key padding, fully masked rows), Nq != Nk,
head dims 16..128, large logits, strided inputs, dropout (statistics, determinism,
gradients), finite differences, every SIMD level, 1 and 2 threads, error contract.

Tolerances. The kernel computes S = scale * q.k in float32 (D-term dot products), a
base-2 exponential with relative error < 2 ulp, running sums over Nk keys and O = P V.
With random inputs rounding errors grow like sqrt(terms) * eps, so we allow
    atol = eps32 * (4 * sqrt(D) * smax + 4 * sqrt(Nk) + 16) * vmax
where smax = max |scale * q.k| (the absolute error of a logit is relative to its size,
and it moves the softmax weights by the same relative amount) and vmax = max |v|.
That is > 50x the observed errors, and ~100x below what a wrong mask, a missing key
block or a wrong rescale produces (a single key of weight 1/Nk moves out by ~vmax/Nk).
Gradients get the same form with vmax replaced by the largest reference gradient and
sqrt(Nk + Nq) for the longer sums.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import _C
from fastnn.ops import attention, attention_backward

EPS = float(np.finfo(np.float32).eps)


# ---- float64 NumPy reference ------------------------------------------------------------
def _allowed(B, Nq, Nk, causal, mask):
    allow = np.ones((B, 1, Nq, Nk), bool)
    if causal:  # bottom-right aligned: key j visible from query i iff j <= i + Nk - Nq
        allow &= (np.arange(Nk)[None, :] <= np.arange(Nq)[:, None] + (Nk - Nq))[None, None]
    if mask is not None:
        allow &= ~np.asarray(mask, bool)[:, None, None, :]
    return allow


def ref_forward(q, k, v, causal=False, scale=None, mask=None, z=None):
    """Returns out, lse, P (softmax weights before dropout), S (scaled logits).
    z: optional dropout multipliers (0 or 1/(1-p)) of shape (B, H, Nq, Nk)."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    B, H, Nq, D = q.shape
    Nk = k.shape[2]
    scale = (1.0 / math.sqrt(D) if D else 1.0) if scale is None else scale
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    allow = _allowed(B, Nq, Nk, causal, mask)
    sm = np.where(allow, s, -np.inf)
    m = sm.max(-1, keepdims=True) if Nk else np.full((B, H, Nq, 1), -np.inf)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(allow, np.exp(sm - m), 0.0)
    l = e.sum(-1, keepdims=True)
    live = l > 0
    p = np.where(live, e / np.where(live, l, 1.0), 0.0)
    lse = np.where(live[..., 0], np.log(np.where(live, l, 1.0))[..., 0] + m[..., 0], -np.inf)
    pd = p if z is None else p * z
    return pd @ v, lse, p, np.where(allow, s, 0.0)


def ref_backward(go, q, k, v, causal=False, scale=None, mask=None, z=None):
    q, k, v, go = (np.asarray(x, np.float64) for x in (q, k, v, go))
    D = q.shape[-1]
    scale = (1.0 / math.sqrt(D) if D else 1.0) if scale is None else scale
    _, _, p, _ = ref_forward(q, k, v, causal, scale, mask, z)
    zz = np.ones_like(p) if z is None else z
    dv = np.swapaxes(p * zz, -1, -2) @ go
    dp = (go @ np.swapaxes(v, -1, -2)) * zz
    di = (p * dp).sum(-1, keepdims=True)
    ds = p * (dp - di)
    return scale * ds @ k, scale * np.swapaxes(ds, -1, -2) @ q, dv


def np_(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def tol(D, Nk, smax, vmax):
    return EPS * (4 * math.sqrt(D) * smax + 4 * math.sqrt(max(Nk, 1)) + 16) * max(vmax, 1e-30)


def make(rng, B, H, Nq, Nk, D, mag=1.0):
    q = (rng.standard_normal((B, H, Nq, D)) * mag).astype(np.float32)
    k = (rng.standard_normal((B, H, Nk, D)) * mag).astype(np.float32)
    v = rng.standard_normal((B, H, Nk, D)).astype(np.float32)
    return q, k, v


def check_forward(q, k, v, causal=False, scale=None, mask=None):
    out, lse = attention(q, k, v, causal=causal, scale=scale, key_padding_mask=mask, return_lse=True)
    out, lse = np_(out), np_(lse)
    ro, rl, _, s = ref_forward(q, k, v, causal, scale, mask)
    assert out.shape == ro.shape and out.dtype == np.float32
    assert lse.shape == rl.shape and lse.dtype == np.float32
    D, Nk = q.shape[-1], k.shape[2]
    smax = float(np.abs(s).max()) if s.size else 0.0
    t = tol(D, Nk, smax, float(np.abs(v).max()) if v.size else 1.0)
    np.testing.assert_allclose(out, ro, rtol=0, atol=t)
    assert np.array_equal(np.isneginf(lse), np.isneginf(rl))
    fin = np.isfinite(rl)
    np.testing.assert_allclose(lse[fin], rl[fin], rtol=0, atol=tol(D, Nk, smax, max(1.0, smax)))
    return out, lse


def check_backward(q, k, v, causal=False, scale=None, mask=None, rng=None):
    out, lse = attention(q, k, v, causal=causal, scale=scale, key_padding_mask=mask, return_lse=True)
    go = (rng.standard_normal(q.shape)).astype(np.float32)
    dq, dk, dv = attention_backward(go, q, k, v, out, lse, causal=causal, scale=scale, key_padding_mask=mask)
    ref = ref_backward(go, q, k, v, causal, scale, mask)
    _, _, _, s = ref_forward(q, k, v, causal, scale, mask)
    smax = float(np.abs(s).max()) if s.size else 0.0
    D, Nq, Nk = q.shape[-1], q.shape[2], k.shape[2]
    for name, got, want in zip(("dq", "dk", "dv"), (dq, dk, dv), ref):
        got = np_(got)
        assert got.shape == want.shape, name
        gmax = float(np.abs(want).max()) if want.size else 1.0
        # dq/dk carry |v| * |go| through dP: scale by the inputs' size too
        t = tol(D, Nk + Nq, smax, max(gmax, float(np.abs(v).max()) * float(np.abs(go).max()) * 0.25))
        np.testing.assert_allclose(got, want, rtol=0, atol=t, err_msg=name)


# ---- forward -----------------------------------------------------------------------------
FWD_CASES = [
    # B, H, Nq, Nk, D, causal, masked
    (2, 3, 7, 7, 16, False, False),
    (1, 2, 1, 1, 32, True, False),
    (2, 2, 63, 63, 64, True, True),
    (1, 2, 65, 63, 80, True, False),  # Nq > Nk: the first two rows see no key
    (2, 1, 63, 65, 128, False, True),
    (1, 1, 7, 1000, 64, True, True),
    (1, 1, 1000, 7, 32, False, False),
    (1, 1, 130, 200, 16, True, False),
    # 20 queries: a 32-lane query block (the microkernel's 2-vector step) over two key blocks
    (1, 2, 20, 70, 64, False, False),
    # 9 queries (a 16-lane block: one vector per microkernel row) over three clean key blocks
    (1, 2, 9, 150, 32, False, False),
]


@pytest.mark.parametrize("case", FWD_CASES, ids=lambda c: "x".join(map(str, c[:5])) + ("c" if c[5] else "") + ("m" if c[6] else ""))
def test_forward_matches_reference(case, simd_level, threads, rng):
    B, H, Nq, Nk, D, causal, masked = case
    q, k, v = make(rng, B, H, Nq, Nk, D)
    mask = rng.random((B, Nk)) < 0.25 if masked else None
    check_forward(q, k, v, causal, None, mask)


def test_forward_large_n(simd_level, rng):
    q, k, v = make(rng, 1, 2, 1000, 1000, 64)
    check_forward(q, k, v, causal=True)


def test_causal_is_bottom_right():
    # Nq = 3, Nk = 5: query i sees keys j <= i + 2. With v = one-hot rows and q = 0
    # (uniform weights over the visible keys), out[i, j] = 1/(i+3) exactly on them.
    q = np.zeros((1, 1, 3, 5), np.float32)
    k = np.zeros((1, 1, 5, 5), np.float32)
    v = np.eye(5, dtype=np.float32)[None, None]
    out = np_(attention(q, k, v, causal=True))[0, 0]
    want = np.array([[1 / 3] * 3 + [0, 0], [1 / 4] * 4 + [0], [1 / 5] * 5])
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-7)


def test_fully_masked_rows(simd_level, threads, rng):
    B, H, Nq, Nk, D = 3, 2, 9, 70, 16
    q, k, v = make(rng, B, H, Nq, Nk, D)
    mask = rng.random((B, Nk)) < 0.5
    mask[1] = True  # batch 1: every key ignored
    mask[2, :] = True
    mask[2, 69] = False  # batch 2: only the last key, in the last key block
    out, lse = check_forward(q, k, v, False, None, mask)
    assert np.all(out[1] == 0.0) and np.all(np.isneginf(lse[1]))
    np.testing.assert_allclose(out[2], np.broadcast_to(v[2, :, 69:70, :], out[2].shape), rtol=1e-6, atol=1e-6)
    go = rng.standard_normal(q.shape).astype(np.float32)
    dq, dk, dv = (np_(t) for t in attention_backward(go, q, k, v, out, lse, key_padding_mask=mask))
    assert np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0)
    assert np.all(dk[:, :, mask[0]][0] == 0) and np.all(dv[:, :, mask[0]][0] == 0)
    check_backward(q, k, v, False, None, mask, rng)
    # causal with Nq > Nk: rows 0..Nq-Nk-1 see no key
    q2, k2, v2 = make(rng, 1, 1, 70, 3, 16)
    out2, lse2 = check_forward(q2, k2, v2, True)
    assert np.all(out2[0, 0, :67] == 0) and np.all(np.isneginf(lse2[0, 0, :67]))
    check_backward(q2, k2, v2, True, None, None, rng)


@pytest.mark.parametrize("mag", [30.0, 300.0])
def test_large_logits_are_stable(mag, simd_level, rng):
    # logits up to ~1e3 (mag=30) and ~1e5 (mag=300): a naive exp overflows; the online
    # softmax must stay finite and agree with the float64 reference within tol(smax).
    q, k, v = make(rng, 1, 2, 70, 90, 32, mag=mag)
    out, lse = check_forward(q, k, v, causal=True)
    assert np.isfinite(out).all() and np.isfinite(lse).all()


@pytest.mark.parametrize("jump", [6.0, 100.0])
def test_running_max_jumps(jump, simd_level, threads, rng):
    # A clean key block reuses the running maximum of the earlier blocks while its sums of
    # exp2(S - m) stay <= 2^20. Key 150 (third block) scaled by `jump` puts scores far above
    # that maximum: with 6x the sums exceed 2^20 (finite), with 100x exp2 overflows to inf.
    # Either way the block must be redone with the exact maximum (else out is inf / NaN or
    # off by the dropped rescale). 200 keys: blocks of 64, 64, 64 and 8.
    q, k, v = make(rng, 2, 2, 20, 200, 64)
    k[:, :, 150] *= jump
    out, lse = check_forward(q, k, v)
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    check_backward(q, k, v, False, None, None, rng)


def test_default_and_explicit_scale(rng):
    q, k, v = make(rng, 1, 2, 20, 30, 80)
    a = np_(attention(q, k, v))
    b = np_(attention(q, k, v, scale=1 / math.sqrt(80)))
    np.testing.assert_array_equal(a, b)
    check_forward(q, k, v, scale=0.37)


def test_strided_inputs(simd_level, rng):
    # (B, N, H, D) as produced by a fused QKV projection, seen as (B, H, N, D) without a
    # copy; plus a reversed (negative-stride) key axis and a fastnn.Tensor input.
    B, N, H, D = 2, 70, 3, 32
    qkv = rng.standard_normal((B, N, 3, H, D)).astype(np.float32)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    assert not q.flags.c_contiguous
    check_forward(q, k, v, causal=True)
    check_backward(q, k, v, True, None, None, rng)
    kr, vr = k[:, :, ::-1], v[:, :, ::-1]
    check_forward(q, kr, vr)
    out = np_(attention(fastnn.from_numpy(np.ascontiguousarray(q)), k, v))
    np.testing.assert_array_equal(out, np_(attention(np.ascontiguousarray(q), np.ascontiguousarray(k),
                                                     np.ascontiguousarray(v))))


def test_odd_and_strided_head_dim(simd_level, rng):
    # D = 20 (a partial vector in every transposed copy of Q/K/V/O/dK/dV), and a stride of 2
    # along D (the scalar packing path, also on AVX-512)
    q, k, v = make(rng, 1, 2, 37, 45, 20)
    check_forward(q, k, v, True)
    check_backward(q, k, v, True, None, None, rng)
    q2, k2, v2 = (x[..., ::2] for x in make(rng, 1, 2, 33, 17, 32))
    assert q2.strides[-1] == 8
    check_forward(q2, k2, v2)
    check_backward(q2, k2, v2, False, None, None, rng)


def test_deterministic(threads, rng):
    # bitwise repeatable for a given SIMD level and thread count: no atomics; a head's dq
    # pieces are summed in a fixed order (more threads: test_dq_bitwise_repeatable_...)
    q, k, v = make(rng, 2, 2, 100, 150, 64)
    out, lse = attention(q, k, v, causal=True, return_lse=True)
    go = rng.standard_normal(q.shape).astype(np.float32)
    runs = [[np_(t) for t in attention_backward(go, q, k, v, out, lse, causal=True)] for _ in range(3)]
    np.testing.assert_array_equal(np_(out), np_(attention(q, k, v, causal=True)))
    for r in runs[1:]:
        for a, b in zip(r, runs[0]):
            np.testing.assert_array_equal(a, b)


# B=1 with 1-2 heads of 4..11 key blocks: at 3-5 threads a head spans 2-5 ranges, so its dq
# is the sum of several private pieces (and at 5 threads > 2 cores the pieces finish, and are
# claimed, in an order that changes from run to run)
DQ_ORDER_CASES = [
    # H, N, causal, masked
    (1, 200, False, False),
    (2, 333, True, False),
    (1, 700, False, True),
    (2, 517, True, True),
]


@pytest.mark.parametrize("case", DQ_ORDER_CASES, ids=lambda c: "H%dN%d" % c[:2] + ("c" if c[2] else "") + ("m" if c[3] else ""))
def test_dq_bitwise_repeatable_at_any_thread_count(case, simd_level, rng):
    # dq's pieces are added in segment order after every thread is done, whatever the timing:
    # bitwise equal across repeats at each thread count. (Before, with >= 3 threads the pieces
    # were flushed in finishing order: 124 of 240 repeats of these cases differed.)
    H, N, causal, masked = case
    q, k, v = make(rng, 1, H, N, N, 64)
    mask = rng.random((1, N)) < 0.2 if masked else None
    out, lse = attention(q, k, v, causal=causal, key_padding_mask=mask, return_lse=True)
    go = rng.standard_normal(q.shape).astype(np.float32)
    want = ref_backward(go, q, k, v, causal, None, mask)[0]
    _, _, _, s = ref_forward(q, k, v, causal, None, mask)
    t = tol(64, 2 * N, float(np.abs(s).max()), max(float(np.abs(want).max()),
                                                   float(np.abs(v).max()) * float(np.abs(go).max()) * 0.25))
    before = fastnn.get_num_threads()
    try:
        for threads in (1, 2, 3, 4, 5):
            fastnn.set_num_threads(threads)
            runs = [np_(attention_backward(go, q, k, v, out, lse, causal=causal, key_padding_mask=mask)[0])
                    for _ in range(8)]
            np.testing.assert_allclose(runs[0], want, rtol=0, atol=t, err_msg="threads=%d" % threads)
            for r in runs[1:]:
                np.testing.assert_array_equal(r, runs[0], err_msg="threads=%d" % threads)
    finally:
        fastnn.set_num_threads(before)


@pytest.mark.parametrize("causal", [False, True])
def test_claimed_tasks_under_load(causal, rng):
    # A thread that has finished its range takes tasks (forward) or per-head pieces of a range
    # (backward) from the other's. A busy Python thread slows one of the two kernel threads,
    # so that claiming happens in most runs: results must equal the quiet ones bitwise (tasks
    # are independent; a head's dq still gets one flush per range). 5 heads: one is split
    # between the two ranges.
    import threading
    import time

    before = fastnn.get_num_threads()
    fastnn.set_num_threads(2)
    try:
        q, k, v = make(rng, 1, 5, 130, 200, 32)
        go = rng.standard_normal(q.shape).astype(np.float32)

        def run():
            out, lse = attention(q, k, v, causal=causal, return_lse=True)
            grads = attention_backward(go, q, k, v, out, lse, causal=causal)
            return [np_(t) for t in (out, lse, *grads)]

        quiet = run()
        check_backward(q, k, v, causal, None, None, rng)
        stop = [False]

        def spin():
            while not stop[0]:
                time.sleep(0)
                sum(range(2000))

        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            loaded = [run() for _ in range(6)]
        finally:
            stop[0] = True
            spinner.join()
        for r in loaded:
            for a, b in zip(r, quiet):
                np.testing.assert_array_equal(a, b)
    finally:
        fastnn.set_num_threads(before)


@pytest.mark.parametrize("shape", [(0, 2, 5, 5, 8), (1, 0, 5, 5, 8), (1, 2, 0, 5, 8), (1, 2, 5, 0, 8),
                                   (1, 2, 5, 5, 0)])
def test_zero_sizes(shape, rng):
    B, H, Nq, Nk, D = shape
    q, k, v = make(rng, B, H, Nq, Nk, D)
    out, lse = attention(q, k, v, return_lse=True)
    out, lse = np_(out), np_(lse)
    assert out.shape == (B, H, Nq, D) and lse.shape == (B, H, Nq)
    ro, rl, _, _ = ref_forward(q, k, v)
    np.testing.assert_allclose(out, ro, atol=1e-6)
    np.testing.assert_allclose(lse, rl, atol=1e-6)
    go = np.ones(q.shape, np.float32)
    grads = attention_backward(go, q, k, v, out, lse)
    for g, want in zip(grads, ref_backward(go, q, k, v)):
        np.testing.assert_allclose(np_(g), want, atol=1e-6)


# ---- backward ----------------------------------------------------------------------------
BWD_CASES = [
    (2, 2, 7, 7, 16, False, False),
    (1, 2, 63, 65, 64, True, True),
    (1, 2, 65, 63, 80, True, False),
    (1, 1, 1, 70, 128, False, True),
    (1, 1, 130, 129, 32, True, True),
    # 17 keys: a 32-lane key block (the microkernel's 2-vector step); causal with Nq > Nk
    (1, 2, 33, 17, 64, True, True),
]


@pytest.mark.parametrize("case", BWD_CASES, ids=lambda c: "x".join(map(str, c[:5])) + ("c" if c[5] else "") + ("m" if c[6] else ""))
def test_backward_matches_reference(case, simd_level, threads, rng):
    B, H, Nq, Nk, D, causal, masked = case
    q, k, v = make(rng, B, H, Nq, Nk, D)
    mask = rng.random((B, Nk)) < 0.25 if masked else None
    check_backward(q, k, v, causal, None, mask, rng)


def test_backward_large_n(rng):
    q, k, v = make(rng, 1, 1, 1000, 1000, 64)
    check_backward(q, k, v, True, None, None, rng)


def _fd_grad(f, x, h):
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("causal", [False, True])
def test_reference_backward_vs_finite_differences(causal, rng):
    # validates the analytic float64 reference itself (central differences, h = 1e-5:
    # truncation ~h^2 * |f'''| ~ 1e-10, rounding ~ eps64 / h ~ 1e-11)
    q, k, v = (x.astype(np.float64) for x in make(rng, 1, 2, 4, 6, 3))
    mask = np.array([[False, True, False, False, False, False]])
    go = rng.standard_normal(q.shape)
    grads = ref_backward(go, q, k, v, causal, 0.7, mask)
    for x, g in zip((q, k, v), grads):
        fd = _fd_grad(lambda: float((ref_forward(q, k, v, causal, 0.7, mask)[0] * go).sum()), x, 1e-5)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_kernel_backward_vs_finite_differences(dropout_p, simd_level, rng):
    # float32 forward, central differences with h = 1e-2: truncation ~h^2*|f'''| ~ 1e-4,
    # rounding ~ eps32 * |L| / h ~ 1e-4 for |L| ~ 10, hence atol 2e-3. With dropout the
    # mask is a function of the seed only, so L is smooth in (q, k, v).
    q, k, v = make(rng, 1, 2, 5, 6, 8)
    go = rng.standard_normal(q.shape).astype(np.float32)
    kw = dict(causal=True, dropout_p=dropout_p, seed=7)
    out, lse = attention(q, k, v, return_lse=True, **kw)
    grads = attention_backward(go, q, k, v, out, lse, **kw)
    for x, g in zip((q, k, v), grads):
        fd = _fd_grad(lambda: float((np_(attention(q, k, v, **kw)).astype(np.float64) * go).sum()), x, 1e-2)
        np.testing.assert_allclose(np_(g), fd, rtol=2e-2, atol=2e-3)


# ---- dropout -----------------------------------------------------------------------------
def _dropout_mask(B, H, Nq, Nk, p, seed, fn=None):
    """The kernel's keep mask, read back through the output: q = k = 0 gives uniform
    weights 1/Nk, and v = identity puts key j's weight in output column j, so
    out[b, h, i, j] = Z[b, h, i, j] / (1 - p) / Nk."""
    q = np.zeros((B, H, Nq, Nk), np.float32)
    k = np.zeros((B, H, Nk, Nk), np.float32)
    v = np.broadcast_to(np.eye(Nk, dtype=np.float32), (B, H, Nk, Nk))
    fn = fn or (lambda *a, **kw: attention(*a, **kw))
    out = np_(fn(q, k, v, dropout_p=p, seed=seed))
    scaled = out * Nk * (1 - p)
    keep = scaled > 0.5
    np.testing.assert_allclose(scaled[keep], 1.0, rtol=1e-5)
    np.testing.assert_array_equal(scaled[~keep], 0.0)
    return keep


def test_dropout_statistics_and_determinism(simd_level, threads):
    B, H, Nq, Nk, p = 2, 2, 100, 64, 0.3
    keep = _dropout_mask(B, H, Nq, Nk, p, seed=123)
    n = keep.size
    # keep rate: binomial, 5 standard deviations
    assert abs(keep.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    # no structure along rows / columns / heads: per-column and per-row rates are binomial too
    for axis_rates, m in ((keep.mean(axis=(0, 1, 2)), B * H * Nq), (keep.mean(axis=(0, 1, 3)), B * H * Nk)):
        assert np.abs(axis_rates - (1 - p)).max() < 5.5 * math.sqrt(p * (1 - p) / m)
    assert not np.array_equal(keep[0, 0], keep[0, 1]) and not np.array_equal(keep[0, 0], keep[1, 0])
    # same seed, same mask (also across SIMD levels and thread counts: see the fixtures);
    # another seed, another mask
    np.testing.assert_array_equal(keep, _dropout_mask(B, H, Nq, Nk, p, seed=123))
    other = _dropout_mask(B, H, Nq, Nk, p, seed=124)
    assert 0.3 < (other != keep).mean() < 0.55
    # matches the mask of the scalar C++ reference (same element-index definition)
    ref = _dropout_mask(B, H, Nq, Nk, p, seed=123, fn=lambda *a, **kw: _C._attention_forward_reference(*a, **kw))
    np.testing.assert_array_equal(keep, ref)


def test_dropout_mask_same_on_all_levels_and_threads():
    masks = []
    before_lvl, before_thr = fastnn.get_simd_level(), fastnn.get_num_threads()
    try:
        levels = ["generic", "avx2", "avx512"]
        for lvl in levels[: levels.index(_C.max_simd_level()) + 1]:
            for t in (1, 2):
                fastnn.set_simd_level(lvl)
                fastnn.set_num_threads(t)
                masks.append(_dropout_mask(1, 3, 70, 40, 0.5, seed=2**40 + 5))
    finally:
        fastnn.set_simd_level(before_lvl)
        fastnn.set_num_threads(before_thr)
    for m in masks[1:]:
        np.testing.assert_array_equal(m, masks[0])


@pytest.mark.parametrize("causal", [False, True])
def test_dropout_forward_backward_vs_reference(causal, simd_level, threads, rng):
    # general shapes: the scalar C++ reference (double accumulation) applies the same
    # mask; the float64 NumPy reference gets the mask read back from the kernel
    B, H, Nq, Nk, D, p, seed = 2, 2, 70, 67, 32, 0.2, 99
    q, k, v = make(rng, B, H, Nq, Nk, D)
    mask = rng.random((B, Nk)) < 0.2
    kw = dict(causal=causal, key_padding_mask=mask, dropout_p=p, seed=seed)
    out, lse = (np_(t) for t in attention(q, k, v, return_lse=True, **kw))
    rout, rlse = (np_(t) for t in _C._attention_forward_reference(q, k, v, return_lse=True, **kw))
    _, _, _, s = ref_forward(q, k, v, causal, None, mask)
    smax = float(np.abs(s).max())
    np.testing.assert_allclose(out, rout, rtol=0, atol=tol(D, Nk, smax, float(np.abs(v).max()) / (1 - p)))
    np.testing.assert_allclose(lse, rlse, rtol=0, atol=tol(D, Nk, smax, smax))
    go = rng.standard_normal(q.shape).astype(np.float32)
    got = attention_backward(go, q, k, v, out, lse, **kw)
    want = _C._attention_backward_reference(go, q, k, v, rout, rlse, **kw)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        g, w = np_(g), np_(w)
        t = tol(D, Nk + Nq, smax, max(float(np.abs(w).max()), float(np.abs(v).max() * np.abs(go).max()) * 0.25))
        np.testing.assert_allclose(g, w, rtol=0, atol=t / (1 - p), err_msg=name)


def test_dropout_expectation_matches_no_dropout(rng):
    # E[dropout(P)/(1-p)] = P: averaging over many seeds approaches the dropout-free output
    q, k, v = make(rng, 1, 1, 8, 16, 16)
    base = np_(attention(q, k, v))
    mean = np.mean([np_(attention(q, k, v, dropout_p=0.5, seed=s)) for s in range(400)], axis=0)
    # per element std of one sample <= max|v| * sqrt(sum p_j^2) ~ 1.5; of the mean / 20
    assert np.abs(mean - base).max() < 0.25


# ---- C++ reference agrees with NumPy (it is the oracle for dropout) --------------------
def test_cpp_reference_matches_numpy(rng):
    q, k, v = make(rng, 2, 2, 30, 40, 16)
    mask = rng.random((2, 40)) < 0.3
    out, lse = (np_(t) for t in _C._attention_forward_reference(q, k, v, causal=True, key_padding_mask=mask,
                                                                return_lse=True))
    ro, rl, _, _ = ref_forward(q, k, v, True, None, mask)
    np.testing.assert_allclose(out, ro, atol=1e-6)
    np.testing.assert_allclose(lse[np.isfinite(rl)], rl[np.isfinite(rl)], atol=1e-6)
    go = rng.standard_normal(q.shape).astype(np.float32)
    for g, w in zip(_C._attention_backward_reference(go, q, k, v, out, lse, causal=True, key_padding_mask=mask),
                    ref_backward(go, q, k, v, True, None, mask)):
        np.testing.assert_allclose(np_(g), w, atol=1e-5)


# ---- error contract ------------------------------------------------------------------------
def test_errors(rng):
    q, k, v = make(rng, 2, 3, 5, 6, 8)
    with pytest.raises(ValueError, match=r"argument 'k'.*\(2, 3, 6, 4\)"):
        attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"argument 'k'.*\(2, 3, 5, 8\).*\(1, 3, 6, 8\)"):
        attention(q, k[:1], v)
    with pytest.raises(ValueError, match=r"argument 'v'.*\(2, 3, 6, 8\).*\(2, 3, 7, 8\)"):
        attention(q, k, np.zeros((2, 3, 7, 8), np.float32))
    with pytest.raises(ValueError, match=r"argument 'q'.*4-D.*3-D"):
        attention(q[0], k, v)
    with pytest.raises(TypeError, match=r"argument 'q'.*float32.*float64"):
        attention(q.astype(np.float64), k, v)
    with pytest.raises(TypeError, match=r"argument 'q'"):
        attention("q", k, v)
    with pytest.raises(ValueError, match=r"argument 'key_padding_mask'.*\(2, 6\).*\(2, 5\)"):
        attention(q, k, v, key_padding_mask=np.zeros((2, 5), bool))
    with pytest.raises(TypeError, match=r"argument 'key_padding_mask'.*bool.*float32"):
        attention(q, k, v, key_padding_mask=np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match=r"argument 'dropout_p'.*1\.5"):
        attention(q, k, v, dropout_p=1.5)
    with pytest.raises(ValueError, match=r"argument 'dropout_p'"):
        attention(q, k, v, dropout_p=-0.1)
    with pytest.raises(ValueError, match=r"argument 'scale'"):
        attention(q, k, v, scale=float("nan"))
    out, lse = attention(q, k, v, return_lse=True)
    go = np.ones(q.shape, np.float32)
    with pytest.raises(ValueError, match=r"argument 'grad_out'.*\(2, 3, 5, 8\).*\(2, 3, 5, 7\)"):
        attention_backward(go[..., :7], q, k, v, out, lse)
    with pytest.raises(ValueError, match=r"argument 'lse'.*\(2, 3, 5\).*\(2, 3, 4\)"):
        attention_backward(go, q, k, v, out, np_(lse)[..., :4])
    with pytest.raises(ValueError, match=r"argument 'out'"):
        attention_backward(go, q, k, v, np_(out)[:1], lse)
    with pytest.raises(ValueError, match=r"argument 'seed'"):
        attention_backward(go, q, k, v, out, lse, dropout_p=0.1)


@pytest.mark.skipif(not hasattr(_C, "dropout"), reason="the dropout kernel is not in this build")
def test_dropout_mask_is_the_dropout_kernels():
    # element (b, h, i, j) of the attention mask is element ((b*H + h)*Nq + i)*Nk + j of
    # the dropout kernel's mask (fastnn/philox.h, offset 0) for a (B, H, Nq, Nk) tensor
    B, H, Nq, Nk, p, seed = 2, 3, 33, 40, 0.4, 2024
    keep = _dropout_mask(B, H, Nq, Nk, p, seed)
    dropped = np_(_C.dropout(np.ones((B, H, Nq, Nk), np.float32), p, seed, 0))
    np.testing.assert_array_equal(keep, dropped > 0)
