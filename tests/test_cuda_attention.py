"""Fused attention on device 'cuda' (kernels/attention_forward.cu, kernels/attention_backward.cu)
against the CPU kernels and the float64 NumPy reference of tests/test_attention.py.

Runs on the CPU emulator of CUDA (conftest sets FASTNN_CUDA_EMULATE=1), every test in the three
thread-resume orders (forward, reverse, seeded random): the kernels' shared-memory tiles are
reused across key / query tiles and their rows are exchanged within warps, so a missing
__syncthreads / __syncwarp shows as a wrong answer in at least one order (and the emulator
poisons shared memory with NaN before each block, so an unwritten tile element shows too).

Tolerances: those of tests/test_attention.py (header there), i.e. a float32 bound
    atol = eps32 * (4 sqrt(D) smax + 4 sqrt(Nk) + 16) * vmax
against float64, which holds for the CUDA kernels for the same reason as for the CPU ones
(float32 D-term dot products, exp2f within 2 ulp, sums over Nk keys); the CUDA and CPU
results are each within it of the reference, so they are compared with twice that bound.
A wrong mask bit, a skipped key tile or a wrong rescale moves outputs by ~ vmax / Nk,
hundreds of times more. Dropout: CUDA and CPU must agree at that same tight tolerance, which
only holds when the keep masks agree element for element (one flipped keep decision moves
an output by ~ |v| / (Nk (1 - p)) ~ 1e-2 here).
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _C
from test_attention import make, ref_backward, ref_forward, tol

if not fastnn.cuda.is_available():
    pytest.skip("device 'cuda' not available (neither a GPU nor the emulator)", allow_module_level=True)
emu = pytest.importorskip("fastnn._cuda_emu")

@pytest.fixture(autouse=True)
def order(emu_order):
    """Every test once per emulator thread-resume order (conftest.emu_order)."""
    return emu_order


def dev(x):
    return fastnn.from_numpy(np.ascontiguousarray(x)).to("cuda")


def host(t):
    return np.asarray(t.to("cpu").numpy())


def fwd(q, k, v, on_cuda, **kw):
    """(out, lse) as NumPy arrays, from the CUDA kernels (device inputs) or the CPU ones."""
    if on_cuda:
        q, k, v = dev(q), dev(k), dev(v)
        if kw.get("key_padding_mask") is not None:
            kw["key_padding_mask"] = dev(kw["key_padding_mask"])
    out, lse = _C.attention_forward(q, k, v, return_lse=True, **kw)
    if on_cuda:
        assert str(out.device).startswith("cuda") and str(lse.device).startswith("cuda")
        return host(out), host(lse)
    return np.asarray(out.numpy()), np.asarray(lse.numpy())


def bwd(go, q, k, v, out, lse, on_cuda, **kw):
    args = (go, q, k, v, out, lse)
    if on_cuda:
        args = tuple(dev(x) for x in args)
        if kw.get("key_padding_mask") is not None:
            kw["key_padding_mask"] = dev(kw["key_padding_mask"])
    grads = _C.attention_backward(*args, **kw)
    return [host(g) if on_cuda else np.asarray(g.numpy()) for g in grads]


def logit_max(q, k, causal, mask, scale=None):
    s = ref_forward(q, k, k, causal, scale, mask)[3]
    return float(np.abs(s).max()) if s.size else 0.0


def padding_mask(rng, B, Nk, case):
    if not case:
        return None
    m = rng.random((B, Nk)) < 0.3
    m[-1, :] = True  # every key of the last batch masked: fully masked rows
    if Nk > 64:
        m[0, :64] = True  # a whole key tile padded: skipped (forward, dq) / zero gradients (dk, dv)
    return m


def check_case(rng, B, H, Nq, Nk, D, causal, masked, mag=1.0, backward=True):
    q, k, v = make(rng, B, H, Nq, Nk, D, mag)
    mask = padding_mask(rng, B, Nk, masked)
    kw = dict(causal=causal, key_padding_mask=mask)
    out, lse = fwd(q, k, v, True, **kw)
    cout, clse = fwd(q, k, v, False, **kw)
    ro, rl, _, _ = ref_forward(q, k, v, causal, None, mask)
    smax = logit_max(q, k, causal, mask)
    t = tol(D, Nk, smax, float(np.abs(v).max()))
    np.testing.assert_allclose(out, ro, rtol=0, atol=t, err_msg="out vs float64")
    np.testing.assert_allclose(out, cout, rtol=0, atol=2 * t, err_msg="out vs CPU")
    assert np.array_equal(np.isneginf(lse), np.isneginf(rl)), "lse = -inf exactly on fully masked rows"
    fin = np.isfinite(rl)
    lt = tol(D, Nk, smax, max(1.0, smax))
    np.testing.assert_allclose(lse[fin], rl[fin], rtol=0, atol=lt, err_msg="lse vs float64")
    np.testing.assert_allclose(lse[fin], clse[fin], rtol=0, atol=2 * lt, err_msg="lse vs CPU")
    dead = ~fin
    assert np.all(out[dead] == 0.0), "fully masked rows give 0"
    if not backward:
        return
    go = rng.standard_normal(q.shape).astype(np.float32)
    got = bwd(go, q, k, v, out, lse, True, **kw)
    cpu = bwd(go, q, k, v, cout, clse, False, **kw)
    ref = ref_backward(go, q, k, v, causal, None, mask)
    for name, g, c, w in zip(("dq", "dk", "dv"), got, cpu, ref):
        assert g.shape == w.shape, name
        gmax = float(np.abs(w).max()) if w.size else 1.0
        gt = tol(D, Nk + Nq, smax, max(gmax, float(np.abs(v).max()) * float(np.abs(go).max()) * 0.25))
        np.testing.assert_allclose(g, w, rtol=0, atol=gt, err_msg=f"{name} vs float64")
        np.testing.assert_allclose(g, c, rtol=0, atol=2 * gt, err_msg=f"{name} vs CPU backward")
    assert np.all(got[0][dead] == 0.0), "fully masked rows: dq = 0"
    if mask is not None:
        padded = np.broadcast_to(mask[:, None, :], k.shape[:3])
        assert np.all(got[1][padded] == 0.0) and np.all(got[2][padded] == 0.0), "padded keys: dk = dv = 0"


# (B, H, Nq, Nk, D, causal, masked): every instantiated head dim (16, 32, 64, 80, 128), the
# padded ones (24 -> 32, 100 -> 128), N in {1, 7, 17, 65, 129} and Nq != Nk both ways
# (causal with Nq > Nk: the first Nq - Nk rows see no key; whole query blocks with no key tile).
CASES = [
    (2, 2, 7, 7, 16, False, False),
    (1, 2, 17, 65, 16, True, True),
    (1, 2, 65, 17, 32, True, False),
    (2, 1, 129, 129, 32, False, True),
    (1, 1, 1, 129, 64, True, True),
    (1, 2, 65, 65, 64, True, False),
    (2, 1, 17, 129, 80, False, True),
    (1, 1, 129, 7, 80, True, True),
    (1, 1, 65, 129, 128, True, False),
    (2, 1, 7, 17, 128, False, True),
    (1, 1, 17, 33, 24, True, True),
    (1, 1, 33, 17, 100, False, False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + ("c" if c[5] else "") + ("m" if c[6] else ""))
def test_forward_backward_match_cpu_and_reference(case, rng):
    check_case(rng, *case)


def test_causal_nq_greater_than_nk_has_empty_blocks(rng):
    # Nq = 129 > Nk = 5: query block 0 (rows 0..63) and most of block 1 see no key at all
    check_case(rng, 1, 1, 129, 5, 16, True, False)


@pytest.mark.parametrize("mag", [30.0, 300.0])
def test_large_logits_are_stable(mag, rng):
    # logits up to ~ mag^2 * sqrt(D) / sqrt(D): exp2 of unshifted scores would overflow
    check_case(rng, 1, 2, 33, 65, 32, False, False, mag=mag)


@pytest.mark.parametrize("causal", [False, True])
def test_dropout_matches_cpu(causal, rng):
    B, H, Nq, Nk, D, p, seed = 2, 2, 33, 70, 32, 0.3, 2**40 + 17
    q, k, v = make(rng, B, H, Nq, Nk, D)
    mask = rng.random((B, Nk)) < 0.2
    kw = dict(causal=causal, key_padding_mask=mask, dropout_p=p, seed=seed)
    out, lse = fwd(q, k, v, True, **kw)
    cout, clse = fwd(q, k, v, False, **kw)
    smax = logit_max(q, k, causal, mask)
    t = tol(D, Nk, smax, float(np.abs(v).max()) / (1 - p))
    np.testing.assert_allclose(out, cout, rtol=0, atol=2 * t, err_msg="dropout out vs CPU (same masks)")
    np.testing.assert_allclose(lse, clse, rtol=0, atol=2 * tol(D, Nk, smax, smax))
    # dropout changed something (the comparison above is not a dropout-free one)
    nodrop, _ = fwd(q, k, v, True, causal=causal, key_padding_mask=mask)
    assert np.abs(out - nodrop).max() > 100 * t
    go = rng.standard_normal(q.shape).astype(np.float32)
    got = bwd(go, q, k, v, out, lse, True, **kw)
    cpu = bwd(go, q, k, v, cout, clse, False, **kw)
    for name, g, c in zip(("dq", "dk", "dv"), got, cpu):
        gt = tol(D, Nk + Nq, smax, max(float(np.abs(c).max()), float(np.abs(v).max() * np.abs(go).max()) * 0.25))
        np.testing.assert_allclose(g, c, rtol=0, atol=2 * gt / (1 - p), err_msg=f"dropout {name} vs CPU")


def test_dropout_mask_is_the_cpu_mask():
    # q = k = 0 (uniform weights) and v = identity (D = Nk) read the keep mask back:
    # out[b, h, i, j] = Z[b, h, i, j] / ((1 - p) Nk), the same float operations on both sides
    B, H, Nq, Nk, p, seed = 2, 2, 19, 40, 0.5, 2**33 + 77
    q = np.zeros((B, H, Nq, Nk), np.float32)
    k = np.zeros((B, H, Nk, Nk), np.float32)
    v = np.broadcast_to(np.eye(Nk, dtype=np.float32), (B, H, Nk, Nk)).copy()
    out, _ = fwd(q, k, v, True, dropout_p=p, seed=seed)
    cout, _ = fwd(q, k, v, False, dropout_p=p, seed=seed)
    np.testing.assert_array_equal(out, cout)
    keep = out > 0
    assert 0.35 < keep.mean() < 0.65
    other, _ = fwd(q, k, v, True, dropout_p=p, seed=seed + 1)
    assert not np.array_equal(other > 0, keep)


def test_strided_device_inputs(rng):
    # (B, N, H, D) from a fused QKV projection on the device, seen as (B, H, N, D)
    B, N, H, D = 1, 40, 2, 32
    qkv = rng.standard_normal((B, N, 3, H, D)).astype(np.float32)
    d = dev(qkv)
    q, k, v = (d[:, :, i].permute(0, 2, 1, 3) for i in range(3))
    out, lse = _C.attention_forward(q, k, v, causal=True, return_lse=True)
    qn, kn, vn = (np.ascontiguousarray(qkv[:, :, i].transpose(0, 2, 1, 3)) for i in range(3))
    cout, clse = fwd(qn, kn, vn, False, causal=True)
    t = tol(D, N, logit_max(qn, kn, True, None), float(np.abs(vn).max()))
    np.testing.assert_allclose(host(out), cout, rtol=0, atol=2 * t)
    go = rng.standard_normal((B, H, N, D)).astype(np.float32)
    got = _C.attention_backward(dev(go), q, k, v, out, lse, causal=True)
    cpu = bwd(go, qn, kn, vn, cout, clse, False, causal=True)
    for g, c in zip(got, cpu):
        np.testing.assert_allclose(host(g), c, rtol=0, atol=2 * tol(D, 2 * N, 10.0, float(np.abs(c).max()) + 1.0))


def test_no_host_round_trips_and_deterministic(rng):
    q, k, v = make(rng, 1, 2, 65, 70, 64)
    go = rng.standard_normal(q.shape).astype(np.float32)
    mask = rng.random((1, 70)) < 0.2
    dq_, dk_, dv_, dgo, dmask = dev(q), dev(k), dev(v), dev(go), dev(mask)
    kw = dict(causal=True, key_padding_mask=dmask, dropout_p=0.1, seed=5)
    before = _C._cuda_host_device_copies()
    out, lse = _C.attention_forward(dq_, dk_, dv_, return_lse=True, **kw)
    grads1 = _C.attention_backward(dgo, dq_, dk_, dv_, out, lse, **kw)
    grads2 = _C.attention_backward(dgo, dq_, dk_, dv_, out, lse, **kw)
    assert _C._cuda_host_device_copies() == before, "CUDA in -> CUDA out without host copies"
    assert all(str(g.device).startswith("cuda") for g in grads1)
    for a, b in zip(grads1, grads2):
        np.testing.assert_array_equal(host(a), host(b))  # no atomics: bitwise repeatable


@pytest.mark.parametrize("shape", [(0, 2, 5, 5, 16), (1, 2, 0, 5, 16), (1, 2, 5, 0, 16), (1, 2, 5, 5, 0)])
def test_zero_sizes(shape, rng):
    B, H, Nq, Nk, D = shape
    q, k, v = make(rng, B, H, Nq, Nk, D)
    out, lse = fwd(q, k, v, True)
    ro, rl, _, _ = ref_forward(q, k, v)
    assert out.shape == ro.shape and lse.shape == rl.shape
    np.testing.assert_allclose(out, ro, atol=1e-6)
    np.testing.assert_allclose(lse, rl, atol=1e-6)
    go = np.ones(q.shape, np.float32)
    for g, want in zip(bwd(go, q, k, v, out, lse, True), ref_backward(go, q, k, v)):
        assert g.shape == want.shape
        np.testing.assert_allclose(g, want, atol=1e-6)


def test_errors(rng):
    q, k, v = make(rng, 1, 1, 4, 4, 16)
    with pytest.raises(ValueError, match=r"argument 'k'.*expected.*cuda"):
        _C.attention_forward(dev(q), k, dev(v))
    with pytest.raises(ValueError, match="key_padding_mask"):
        _C.attention_forward(dev(q), dev(k), dev(v), key_padding_mask=np.zeros((1, 4), bool))
    big = np.zeros((1, 1, 2, 130), np.float32)
    with pytest.raises(ValueError, match=r"argument 'q': expected head dim D <= 128"):
        _C.attention_forward(dev(big), dev(big), dev(big))
    with pytest.raises(ValueError, match=r"argument 'q'"):
        _C._attention_forward_reference(dev(q), dev(k), dev(v))
    out, lse = _C.attention_forward(dev(q), dev(k), dev(v), return_lse=True)
    with pytest.raises(ValueError, match=r"argument 'lse'"):
        _C.attention_backward(dev(q), dev(q), dev(k), dev(v), out, host(lse))
