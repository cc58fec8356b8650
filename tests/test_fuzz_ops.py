"""Fuzzing every public op with hypothesis: shapes (0 and 1 included), memory layouts (views,
transposes, negative steps, offsets, broadcast zero strides), dtypes (float64, ints, bool,
float16, big-endian, object) and values (NaN, +-Inf, huge, denormal, -0.0), on the CPU and on
the emulated CUDA device. Each call either raises a documented exception (ValueError, TypeError,
IndexError, MemoryError; on 'cuda' also the documented "no CUDA kernel yet" refusal) or returns
the float64 reference's value within the stated tolerance.

NaN / Inf semantics (docs/RELIABILITY.md): they propagate as in NumPy / PyTorch. A NaN input
gives NaN wherever the mathematical result depends on it (relu(NaN) = NaN, max over a slice with
a NaN is NaN, a matmul row with a NaN gives a NaN row, softmax of a row with a NaN is all NaN);
Inf follows IEEE float32 arithmetic (inf - inf = NaN, overflow gives +-Inf). Where a float32
intermediate overflows although the float64 reference does not (sums of squares, products of
huge values), only the absence of a crash is required: that is float32 arithmetic, not a bug.
Positions are compared with NaN == NaN and Inf == Inf of the same sign.

Example counts: the hypothesis profile ``fastnn-fuzz-<name>`` chosen by FASTNN_FUZZ_PROFILE:
``ci`` (default, 12 examples per test), ``dev`` (100), ``long`` (2000; by hand:
``FASTNN_FUZZ_PROFILE=long pytest tests/test_fuzz_ops.py``). Examples are derandomized in ``ci``
so CI is reproducible; ``dev`` / ``long`` explore new ones each run.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
torch = pytest.importorskip("torch")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn as fnn  # noqa: E402
from fastnn import ops  # noqa: E402

import op_cases as C  # noqa: E402
from conftest import DEVICES  # noqa: E402

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                     HealthCheck.function_scoped_fixture])
settings.register_profile("fastnn-fuzz-ci", max_examples=12, derandomize=True, **_COMMON)
settings.register_profile("fastnn-fuzz-dev", max_examples=100, **_COMMON)
settings.register_profile("fastnn-fuzz-long", max_examples=2000, **_COMMON)
FUZZ = settings(settings.get_profile("fastnn-fuzz-" + os.environ.get("FASTNN_FUZZ_PROFILE", "ci")))

DOCUMENTED = (ValueError, TypeError, IndexError, MemoryError)
F32 = np.finfo(np.float32)
SPECIALS = np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-40, -1e-42, 0.0, -0.0, 1e20, -1e-20], np.float32)
LAYOUTS = ["contiguous", "transposed", "negative", "strided", "offset", "broadcast"]


# ---- strategies --------------------------------------------------------------------------------
dims = st.sampled_from([0, 1, 1, 2, 3, 5, 17, 33])


@st.composite
def values(draw, shape, kinds=("normal", "special", "nonfinite", "huge", "denormal")):
    """A float32 array of `shape`: normal draws with a drawn fraction of special values."""
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(kinds))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(np.float32)
    if a.size and kind != "normal":
        pool = {"special": SPECIALS, "nonfinite": SPECIALS[:3], "huge": SPECIALS[3:5],
                "denormal": SPECIALS[5:7]}[kind]
        mask = rng.random(shape) < draw(st.sampled_from([0.05, 0.3, 1.0]))
        a[mask] = rng.choice(pool, int(mask.sum()))
    return a


def layout(a, how, rng_seed=0):
    """The same logical values as `a` in another memory layout (a NumPy view)."""
    if how == "contiguous" or a.ndim == 0:
        return np.ascontiguousarray(a)
    if how == "transposed":
        return np.ascontiguousarray(a.T).T
    if how == "negative":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if how == "strided":
        big = np.empty(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        big[..., 1::2] = np.nan  # the skipped elements must never be read
        return big[..., ::2]
    if how == "offset":
        flat = np.empty(a.size + 1, a.dtype)
        flat[1:] = a.reshape(-1)
        return flat[1:].reshape(a.shape)
    if how == "broadcast":  # zero strides where a dimension's values are all the same
        first = a[(slice(None),) * (a.ndim - 1) + (slice(0, 1),)]
        return np.broadcast_to(first, a.shape) if a.shape[-1] else a
    raise AssertionError(how)


def draw_input(data, kinds=("normal", "special", "nonfinite", "huge", "denormal"), max_dims=3):
    """(values, the view passed to the op, shape): a drawn array in a drawn layout; the values
    are those of the view (a broadcast layout repeats some)."""
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=max_dims)))
    view = layout(data.draw(values(shape, kinds=kinds)), data.draw(st.sampled_from(LAYOUTS)))
    return np.array(view), view, shape


def _tensor(a, device):
    t = fnn.from_numpy(a)
    return t if device == "cpu" else t.to(device)


def call_op(fn, device):
    """fn() -> outputs as NumPy, or None when it raised a documented exception."""
    try:
        return C.to_numpy(fn())
    except Exception as e:  # noqa: BLE001
        if device != "cpu" and C.not_on_device(e):
            pytest.skip(f"no {device} kernel yet: {e}")
        if isinstance(e, DOCUMENTED):
            return None
        raise


def assert_matches(got, ref, rtol, atol, check=None, what=""):
    """got (float32) against ref (float64 rounded to float32 so that float32 overflow counts as
    Inf in both); positions where `check` is False are only required to exist."""
    got = np.asarray(got, np.float64)
    ref32 = np.asarray(ref, np.float64).astype(np.float32).astype(np.float64)
    assert got.shape == ref32.shape, f"{what}: shape {got.shape}, expected {ref32.shape}"
    if check is not None:
        check = np.broadcast_to(check, got.shape)
        got, ref32 = np.where(check, got, 0.0), np.where(check, ref32, 0.0)
    np.testing.assert_allclose(got, ref32, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def T(a):
    return torch.from_numpy(np.asarray(a, np.float64))


# ---- element-wise activations ----------------------------------------------------------------
_ACT = {"relu": torch.relu, "gelu": lambda x: torch.nn.functional.gelu(x),
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": torch.nn.functional.silu}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(_ACT))
@FUZZ
@given(data=st.data())
def test_activation(name, device, data):
    x, xv, shape = draw_input(data)
    out = call_op(lambda: getattr(ops, name)(_tensor(xv, device)), device)
    assert out is not None, f"{name} refused a float32 input of shape {shape}"
    # float32 transcendental kernels: a few ulp (1e-6 relative) plus absolute slack near 0 / subnormals.
    assert_matches(out[0], _ACT[name](T(x)).numpy(), rtol=2e-5, atol=2e-6, what=name)
    gy = data.draw(values(shape, kinds=("normal",)))
    g = call_op(lambda: getattr(ops, name + "_backward")(_tensor(gy, device), _tensor(xv, device)), device)
    xt = T(x).requires_grad_()
    _ACT[name](xt).backward(T(gy))
    ref = xt.grad.numpy()
    # Derivatives of saturated inputs (huge |x|) are 0 in float64; float32 formulas may give
    # 0*inf = NaN there: checked only where |x| < 80 (exp does not overflow in float32). The
    # derivative at a NaN input is unspecified (PyTorch passes relu's grad through, fastnn gives 0).
    assert_matches(g[0], ref, rtol=5e-5, atol=5e-6, check=np.abs(x) < 80, what=name + "_backward")


# ---- softmax ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("log", [False, True])
@FUZZ
@given(data=st.data())
def test_softmax(log, device, data):
    x, xv, shape = draw_input(data, kinds=("normal", "nonfinite", "huge", "denormal"))
    fn = ops.log_softmax if log else ops.softmax
    out = call_op(lambda: fn(_tensor(xv, device)), device)
    assert out is not None
    ref = (torch.log_softmax if log else torch.softmax)(T(x), -1).numpy()
    # Row-wise max subtraction keeps exp in range: a few ulp per element, 1e-6 absolute for
    # probabilities; log-probabilities of magnitude L lose L*eps relative.
    assert_matches(out[0], ref, rtol=1e-5, atol=1e-6 if not log else 1e-5, what="softmax")


# ---- broadcast arithmetic ----------------------------------------------------------------------
@st.composite
def broadcast_pair(draw):
    shape = tuple(draw(st.lists(dims, min_size=1, max_size=3)))
    sb = list(shape[draw(st.integers(0, len(shape))):])
    sb = [1 if draw(st.booleans()) else s for s in sb]
    return shape, tuple(sb)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@FUZZ
@given(data=st.data())
def test_binary(name, device, data):
    sa, sb = data.draw(broadcast_pair())
    if data.draw(st.booleans()):
        sa, sb = sb, sa
    a, b = data.draw(values(sa)), data.draw(values(sb))
    av, bv = (layout(v, data.draw(st.sampled_from(LAYOUTS))) for v in (a, b))
    a, b = np.array(av), np.array(bv)
    out = call_op(lambda: getattr(ops, name)(_tensor(av, device), _tensor(bv, device)), device)
    assert out is not None
    with np.errstate(all="ignore"):
        ref = getattr(np, {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}[name])(
            a.astype(np.float64), b.astype(np.float64))
    # One correctly rounded float32 operation (division: double rounding may move 1 ulp).
    # Subnormal results may be flushed to zero: atol 2e-38.
    assert_matches(out[0], ref, rtol=2 * F32.eps, atol=2e-38, what=name)


def test_binary_incompatible_shapes_raise():
    with pytest.raises(ValueError):
        ops.add(np.ones((2, 3), np.float32), np.ones((4,), np.float32))


# ---- reductions --------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@FUZZ
@given(data=st.data())
def test_reduce(name, device, data):
    x, xv, shape = draw_input(data)
    axis = data.draw(st.sampled_from([None] + list(range(-len(shape), len(shape))) + [len(shape)]))
    out = call_op(lambda: getattr(ops, name)(_tensor(xv, device), axis=axis), device)
    x64 = x.astype(np.float64)
    if axis is not None and not -len(shape) <= axis < len(shape):
        assert out is None, f"{name}: axis {axis} of a {len(shape)}-d input accepted"
        return
    n = x.size if axis is None else shape[axis]
    if name == "max" and n == 0:
        # NumPy and PyTorch raise; an empty result (when the other dims are empty too) is as good.
        assert out is None or out[0].size == 0, "max of an empty slice must raise"
        return
    assert out is not None
    with np.errstate(all="ignore"):
        ref = {"sum": np.sum, "mean": np.mean, "max": np.max}[name](x64, axis=axis)
        mag = np.sum(np.abs(np.nan_to_num(x64, posinf=0, neginf=0)), axis=axis)
    # float32 accumulation of n terms: |err| <= n*eps*sum|x| (blocked sums do far better).
    tol = max(n, 1) * F32.eps * mag / (max(n, 1) if name == "mean" else 1)
    fin = mag < 1e37  # a float32 partial sum of huge values may overflow: only "no crash" there
    got = out[0]
    assert np.shape(got) == np.shape(ref)
    ok = np.isclose(got, np.float32(ref), rtol=0, atol=0, equal_nan=True) | (np.abs(got - ref) <= tol)
    assert np.all(ok | ~fin), f"{name}: mismatch"
    if name == "max" and axis is not None and n:
        idx = out[1].astype(np.int64)
        picked = np.take_along_axis(x64, np.expand_dims(idx, axis), axis).squeeze(axis)
        assert np.array_equal(picked, ref, equal_nan=True), "max: the index does not point at the maximum"


# ---- matrix products ---------------------------------------------------------------------------
def _mm_check(got, a, b, what, bias=None):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    bias64 = np.zeros(1) if bias is None else bias.astype(np.float64)
    with np.errstate(all="ignore"):
        ref = a64 @ b64 + bias64
        bound = np.abs(np.nan_to_num(a64, posinf=0, neginf=0)) @ np.abs(np.nan_to_num(b64, posinf=0, neginf=0))
    k = a.shape[-1]
    # gamma_k bound of a float32 dot product against float64 (conftest.f32_matmul_tol), one more
    # rounding for the bias; 1e-37 absolute: subnormal results may be flushed to zero.
    tol = 2.0 * (max(k, 1) + 1) * F32.eps * (bound + np.abs(bias64)) + 1e-37
    fin = bound < 1e37
    ok = np.isclose(got, np.float32(ref), rtol=0, atol=0, equal_nan=True) | (np.abs(got - ref) <= tol)
    assert np.all(ok | ~fin), f"{what}: mismatch at {np.argwhere(~(ok | ~fin))[:3].tolist()}"


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_matmul(device, data):
    m, k, n = data.draw(dims), data.draw(dims), data.draw(dims)
    batch = tuple(data.draw(st.lists(st.sampled_from([1, 2, 3]), max_size=2)))
    a, b = data.draw(values(batch + (m, k))), data.draw(values((k, n)))
    av, bv = (layout(v, data.draw(st.sampled_from(LAYOUTS))) for v in (a, b))
    a, b = np.array(av), np.array(bv)
    out = call_op(lambda: ops.matmul(_tensor(av, device), _tensor(bv, device)), device)
    assert out is not None
    _mm_check(out[0], a, b, "matmul")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_linear(device, data):
    m, k, n = data.draw(dims), data.draw(dims), data.draw(dims)
    x, w, bias = data.draw(values((m, k))), data.draw(values((n, k))), data.draw(values((n,), kinds=("normal",)))
    xv, wv = (layout(v, data.draw(st.sampled_from(LAYOUTS))) for v in (x, w))
    x, w = np.array(xv), np.array(wv)
    out = call_op(lambda: ops.linear(_tensor(xv, device), _tensor(wv, device), _tensor(bias, device)), device)
    assert out is not None
    _mm_check(out[0], x, w.T, "linear", bias=bias)


@pytest.mark.parametrize("device", DEVICES)
def test_matmul_shape_mismatch_raises(device):
    with pytest.raises(ValueError):
        ops.matmul(_tensor(np.ones((2, 3), np.float32), device), _tensor(np.ones((4, 2), np.float32), device))


# ---- losses, layer norm ----------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_cross_entropy(device, data):
    n, c = data.draw(dims), data.draw(st.sampled_from([1, 2, 5, 17]))
    x = data.draw(values((n, c), kinds=("normal", "nonfinite", "huge")))
    t = np.random.default_rng(data.draw(st.integers(0, 99))).integers(-1, c + 1, n).astype(np.int64)
    out = call_op(lambda: ops.cross_entropy(_tensor(x, device), _tensor(t, device), reduction="sum"), device)
    if (t < 0).any() and not (t == -100).all() or (t >= c).any():
        assert out is None, "an out-of-range class index was accepted"
        return
    assert out is not None
    ref = torch.nn.functional.cross_entropy(T(x), torch.from_numpy(t), reduction="sum").numpy()
    assert_matches(out[0], ref, rtol=1e-5 * max(n, 1), atol=1e-5 * max(n, 1), what="cross_entropy")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_mse_and_bce(device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=2)))
    x, y = data.draw(values(shape, kinds=("normal", "nonfinite", "denormal"))), data.draw(values(shape, kinds=("normal",)))
    n = max(x.size, 1)
    out = call_op(lambda: ops.mse_loss(_tensor(layout(x, "strided"), device), _tensor(y, device)), device)
    assert out is not None
    assert_matches(out[0], torch.nn.functional.mse_loss(T(x), T(y)).numpy(), rtol=1e-5 * n, atol=1e-6, what="mse")
    y01 = 1 / (1 + np.exp(-y))
    out = call_op(lambda: ops.binary_cross_entropy_with_logits(_tensor(x, device), _tensor(y01, device)), device)
    assert out is not None
    ref = torch.nn.functional.binary_cross_entropy_with_logits(T(x), T(y01)).numpy()
    assert_matches(out[0], ref, rtol=1e-5 * n, atol=1e-6, what="bce_with_logits")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_layer_norm(device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=3)))
    x = data.draw(values(shape, kinds=("normal", "nonfinite", "denormal")))
    d = shape[-1]
    w, b = data.draw(values((d,), kinds=("normal",))), data.draw(values((d,), kinds=("normal",)))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    out = call_op(lambda: ops.layer_norm(_tensor(xv, device), _tensor(w, device), _tensor(b, device)), device)
    if d == 0:
        return  # either refused or an empty result: both documented
    assert out is not None
    ref = torch.nn.functional.layer_norm(T(x), (d,), T(w), T(b), 1e-5).numpy()
    # mean / variance accumulated in float32 over d terms: relative d*eps on the normalised value.
    assert_matches(out[0], ref, rtol=1e-4, atol=4 * d * F32.eps * (1 + np.abs(b).max()), what="layer_norm")


# ---- convolution, pooling, attention ---------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_conv2d(device, data):
    n, c, o = data.draw(st.sampled_from([0, 1, 2])), data.draw(st.sampled_from([1, 3])), data.draw(st.sampled_from([1, 4]))
    h, w = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    kh, kw = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    stride, pad = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 2))
    x = data.draw(values((n, c, h, w), kinds=("normal", "nonfinite")))
    wt = data.draw(values((o, c, kh, kw), kinds=("normal",)))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    out = call_op(lambda: ops.conv2d(_tensor(xv, device), _tensor(wt, device), stride=stride, padding=pad), device)
    if h + 2 * pad < kh or w + 2 * pad < kw:
        assert out is None, "an empty output size was accepted"
        return
    assert out is not None
    ref = torch.nn.functional.conv2d(T(x), T(wt), stride=stride, padding=pad).numpy()
    k = c * kh * kw
    assert_matches(out[0], ref, rtol=1e-5, atol=2 * k * F32.eps * 4 * np.abs(wt).max(initial=0) * 4, what="conv2d")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["max", "avg"])
@FUZZ
@given(data=st.data())
def test_pool2d(kind, device, data):
    shape = (data.draw(st.sampled_from([0, 1, 2])), data.draw(st.sampled_from([1, 3])),
             data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)))
    x = data.draw(values(shape, kinds=("normal", "nonfinite", "denormal")))
    k, s = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3))
    p = data.draw(st.integers(0, k // 2))
    fn = ops.max_pool2d if kind == "max" else ops.avg_pool2d
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)  # the values actually passed (a broadcast layout repeats some)
    out = call_op(lambda: fn(_tensor(xv, device), k, stride=s, padding=p), device)
    if shape[2] + 2 * p < k or shape[3] + 2 * p < k:
        assert out is None
        return
    assert out is not None
    ref = getattr(torch.nn.functional, kind + "_pool2d")(T(x), k, stride=s, padding=p).numpy()
    assert_matches(out[0], ref, rtol=1e-6, atol=1e-6, what=kind + "_pool2d")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_attention(device, data):
    b, h, nq, nk = 1, data.draw(st.sampled_from([1, 2])), data.draw(dims), data.draw(dims)
    d = data.draw(st.sampled_from([1, 8, 17]))
    q = data.draw(values((b, h, nq, d), kinds=("normal", "nonfinite")))
    k, v = data.draw(values((b, h, nk, d), kinds=("normal",))), data.draw(values((b, h, nk, d), kinds=("normal",)))
    causal = data.draw(st.booleans())
    qv = layout(q, data.draw(st.sampled_from(LAYOUTS)))
    q = np.array(qv)
    out = call_op(lambda: ops.attention(_tensor(qv, device), _tensor(k, device), _tensor(v, device), causal=causal),
                  device)
    if out is None:
        assert nq == 0 or nk == 0 or d == 0, "attention refused a valid input"
        return
    s = T(q) @ T(k).transpose(-1, -2) / np.sqrt(d)
    if causal:
        mask = torch.ones(nq, nk, dtype=torch.bool).tril(nk - nq)
        s = s.masked_fill(~mask, -np.inf)
    p = torch.softmax(s, -1)
    ref = torch.nan_to_num(p, nan=0.0) @ T(v) if nk else torch.zeros(b, h, nq, d, dtype=torch.float64)
    if causal:  # rows with no visible key are 0 by the documented convention
        ref[..., ~mask.any(-1), :] = 0.0
    ref = ref.numpy()
    rows_nan = np.isnan(q).any(-1, keepdims=True) | np.isinf(q).any(-1, keepdims=True)
    ok_rows = ~np.broadcast_to(rows_nan, ref.shape)
    # Online softmax in float32: relative error ~ (nk + d) * eps on O(|v|) outputs.
    assert_matches(out[0], ref, rtol=1e-4, atol=(nk + d + 1) * F32.eps * 8 * np.abs(v).max(initial=1),
                   check=ok_rows, what="attention")
    if nk and rows_nan.any():  # a NaN / Inf query row: NaN (or the documented 0 for a fully masked row)
        bad = out[0][np.broadcast_to(rows_nan & np.isnan(q).any(-1, keepdims=True), ref.shape)]
        assert np.isnan(bad).all() or not bad.size or (bad == 0).all()


# ---- embedding, dropout, optimizers ----------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_embedding(device, data):
    num, dim = data.draw(st.sampled_from([1, 5, 17])), data.draw(dims)
    table = data.draw(values((num, dim)))
    idx = np.array(data.draw(st.lists(st.integers(-2, num + 1), max_size=20)), np.int64)
    out = call_op(lambda: ops.embedding(_tensor(idx, device), _tensor(table, device)), device)
    if ((idx < 0) | (idx >= num)).any():
        assert out is None, "an out-of-range index was accepted"
        return
    assert out is not None
    assert np.array_equal(out[0], table[idx], equal_nan=True)
    g = data.draw(values((len(idx), dim), kinds=("normal",)))
    gw = call_op(lambda: ops.embedding_backward(_tensor(g, device), _tensor(idx, device), num), device)
    ref = np.zeros((num, dim))
    np.add.at(ref, idx, g.astype(np.float64))
    assert_matches(gw[0], ref, rtol=1e-6, atol=len(idx) * F32.eps * np.abs(g).max(initial=0), what="embedding_backward")


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_dropout(device, data):
    shape = tuple(data.draw(st.lists(dims, min_size=1, max_size=2)))
    x = data.draw(values(shape))
    p = data.draw(st.sampled_from([0.0, 0.1, 0.5, 0.99, 1.0, -0.1, 1.5, float("nan")]))
    xv = layout(x, data.draw(st.sampled_from(LAYOUTS)))
    x = np.array(xv)
    out = call_op(lambda: ops.dropout(_tensor(xv, device), p, 7), device)
    if not 0.0 <= p <= 1.0:
        assert out is None, f"dropout accepted p={p}"
        return
    if out is None:
        assert p == 1.0, f"dropout refused p={p}"
        return
    y = out[0]
    kept = y != 0
    scale = np.float32(1.0) / np.float32(1.0 - p) if p < 1 else np.float32(0)
    with np.errstate(all="ignore"):
        assert np.array_equal(y[kept], (x * scale)[kept], equal_nan=True) or np.allclose(
            y[kept], (x.astype(np.float64) / (1 - p))[kept], rtol=2 * F32.eps, equal_nan=True)
    assert np.all((y == 0) | kept)


@pytest.mark.parametrize("device", DEVICES)
@FUZZ
@given(data=st.data())
def test_adam_sgd_norm(device, data):
    sizes = data.draw(st.lists(st.sampled_from([0, 1, 17, 33, 129]), min_size=1, max_size=4))
    arrs = [[data.draw(values((n,), kinds=("normal",))) for n in sizes] for _ in range(3)]
    p, g, m = arrs
    v = [np.abs(a) for a in m]
    wd, lr, step = data.draw(st.sampled_from([0.0, 0.1])), 1e-2, data.draw(st.integers(1, 5))
    tp, tg, tm, tv = ([_tensor(a.copy(), device) for a in lst] for lst in (p, g, m, v))
    if call_op(lambda: ops.adam_(tp, tg, tm, tv, step=step, lr=lr, weight_decay=wd, decoupled=True), device) is None:
        pytest.fail("adam_ refused valid input")
    b1, b2, eps = 0.9, 0.999, 1e-8
    for i in range(len(sizes)):
        p64, g64, m64, v64 = (a[i].astype(np.float64) for a in (p, g, m, v))
        p64 = p64 * (1 - lr * wd)
        m64 = b1 * m64 + (1 - b1) * g64
        v64 = b2 * v64 + (1 - b2) * g64 * g64
        p64 = p64 - lr / (1 - b1**step) * m64 / (np.sqrt(v64) / np.sqrt(1 - b2**step) + eps)
        # A handful of float32 operations per element: 1e-6 relative.
        assert_matches(tp[i].cpu().numpy(), p64, rtol=1e-5, atol=1e-7, what="adam_ param")
        assert_matches(tm[i].cpu().numpy(), m64, rtol=1e-6, atol=1e-7, what="adam_ exp_avg")
    n = call_op(lambda: ops.grad_norm([_tensor(a, device) for a in g]), device)[0]
    ref = np.sqrt(sum(float(np.sum(a.astype(np.float64) ** 2)) for a in g))
    assert np.isclose(n, ref, rtol=1e-10, atol=1e-30)
    tp = [_tensor(a.copy(), device) for a in p]
    ops.sgd_(tp, [_tensor(a, device) for a in g], lr=0.1)
    for i in range(len(sizes)):
        assert_matches(tp[i].cpu().numpy(), p[i].astype(np.float64) - 0.1 * g[i], rtol=2e-6, atol=1e-7, what="sgd_")


# ---- dtypes -----------------------------------------------------------------------------------
_DTYPE_OPS = {
    "relu": (lambda x: ops.relu(x), lambda x: np.maximum(x, 0)),
    "add": (lambda x: ops.add(x, x), lambda x: x + x),
    "sum": (lambda x: ops.sum(x), lambda x: np.sum(x)),
    "softmax": (lambda x: ops.softmax(x), None),
    "matmul": (lambda x: ops.matmul(x, x.T if hasattr(x, "T") else x), lambda x: x @ x.T),
    "layer_norm": (lambda x: ops.layer_norm(x), None),
    "mse_loss": (lambda x: ops.mse_loss(x, x), lambda x: 0.0),
}


@pytest.mark.parametrize("dtype", ["float64", "float16", "int32", "int64", "bool", ">f4", "object", "complex64"])
@pytest.mark.parametrize("name", sorted(_DTYPE_OPS))
def test_dtypes(name, dtype):
    """Non-float32 inputs: a documented TypeError / ValueError, or a correct result (an op may
    accept a dtype it converts, e.g. big-endian float32)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5))
    if dtype == "object":
        x = a.astype(object)
    elif dtype == "bool":
        x = a > 0
    else:
        x = (a * 10).astype(dtype)
    fn, ref = _DTYPE_OPS[name]
    try:
        out = fn(x)
    except (TypeError, ValueError):
        return
    got = C.to_numpy(out)[0]
    if ref is not None:
        np.testing.assert_allclose(got.astype(np.float64), np.asarray(ref(x.astype(np.float64)), np.float64),
                                   rtol=1e-3, atol=1e-3)


def test_nan_semantics_documented_examples():
    """The NaN/Inf rules of docs/RELIABILITY.md, spelled out."""
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    x = np.array([[1.0, nan, -2.0], [inf, -inf, 0.0]], np.float32)
    assert np.isnan(ops.relu(x).numpy()[0, 1])
    assert np.isnan(ops.max(x, axis=1)[0].numpy()[0])
    assert np.isnan(ops.softmax(x).numpy()[0]).all()
    assert np.isnan(ops.softmax(x).numpy()[1]).all()  # inf - inf in the row-max subtraction
    assert np.isnan(ops.sum(x).numpy())
    assert np.isnan(ops.add(x, np.float32(1)).numpy()[0, 1]) and ops.add(x, np.float32(1)).numpy()[1, 0] == inf
    m = ops.matmul(x, np.ones((3, 2), np.float32)).numpy()
    assert np.isnan(m).all()  # row 0 has a NaN, row 1 has inf + -inf
