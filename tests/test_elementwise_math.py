"""Elementwise math kernels (fastnn/elementwise_math.h): _C.unary / _C.full, _C.compare,
_C.gather / _C.scatter_add — on the CPU at every SIMD level and on 'cuda' (the emulator, in the
three thread-resume orders) — and the Python layer's use of them (scalar arithmetic, comparisons,
advanced indexing with its scatter-add backward, kernel_status).

Tolerances, against float64 NumPy:
* exp, log: <= 2 ulp of the float32 result (the CPU's Cephes polynomials measure <= 1 ulp; glibc
  and CUDA's expf/logf are <= 2 / <= 1 ulp). ulp is that of the float64 reference rounded to
  float32, 2^-149 in the denormal range. Non-finite results (inf, NaN) must match exactly.
* sqrt, abs, sign, neg, add, mul, div, rsub, rdiv, fill, pow by 0/1/2/-1: one IEEE rounding,
  so <= 0.5 ulp; pow by 3, -2, +-0.5 two roundings (<= 1.5 ulp), rsqrt <= 2 ulp (CUDA rsqrtf);
  general pow / rpow (std::pow, CUDA powf <= 4 ulp): rtol 8 ulp = 8 * 2^-24 ~ 4.8e-7 -> 1e-6.
* compare and gather: exact. scatter_add: float32 sums of at most D duplicates of each index in
  index order -> |err| <= D * eps32 * sum|g| (checked as atol on that bound); CPU and CUDA sum
  in the same order, so they agree bitwise.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import _C
from fastnn import _kernels as K

HAS_CUDA = fastnn.cuda.is_available()
emu = None
if HAS_CUDA:
    try:
        from fastnn import _cuda_emu as emu
    except ImportError:  # a real GPU
        emu = None

_LEVELS = ["generic", "avx2", "avx512"]
SIMD_LEVELS = _LEVELS[: _LEVELS.index(_C.max_simd_level()) + 1]
PLACES = [("cpu", lv) for lv in SIMD_LEVELS] + ([("cuda", o) for o in ("forward", "reverse", "random")]
                                                if HAS_CUDA else [])
TAILS = [1, 17, 33, 65, 127, 129, 256]


@pytest.fixture(params=PLACES, ids=[f"{d}-{o}" for d, o in PLACES])
def place(request):
    """('cpu', simd level) or ('cuda', thread-resume order); yields the device name."""
    dev, opt = request.param
    if dev == "cpu":
        before = fastnn.get_simd_level()
        fastnn.set_simd_level(opt)
        yield "cpu"
        fastnn.set_simd_level(before)
    else:
        before = emu._get_order() if emu else None
        if emu:
            emu._set_order(opt, 4321)
        yield "cuda"
        if emu:
            emu._set_order(*before)


def to(a, dev):
    t = _C.from_numpy(np.ascontiguousarray(a))
    return t if dev == "cpu" else t._to(dev, None, False)


def host(t):
    return t.cpu().numpy() if t.is_cuda else t.numpy()


def ulp_err(y, ref64):
    """|y - ref| in units of the float32 spacing at the reference (2^-149 for denormals)."""
    r32 = ref64.astype(np.float32)
    spacing = np.maximum(np.spacing(np.abs(r32)).astype(np.float64), 2.0 ** -149)
    return np.abs(y.astype(np.float64) - ref64) / spacing


SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, 1e-40, 1.17e-38, 3.4e38, -3.4e38,
                    88.72, 88.73, -87.3, -103.0, -104.0, 0.5, 2.0, 1e-8], np.float32)


def _math_inputs(rng, n, op):
    if op == "exp":
        body = rng.uniform(-110, 90, n)
    else:  # log: positive values over the whole float range, denormals included
        body = np.exp2(rng.uniform(-149, 127, n)) * rng.uniform(1, 2, n)
    return np.concatenate([SPECIAL, body.astype(np.float32)])


@pytest.mark.parametrize("op", ["exp", "log"])
def test_exp_log_within_2_ulp(place, op, rng):
    n = 20000 if place == "cpu" else 3000
    x = _math_inputs(rng, n, op)
    y = host(_C.unary(to(x, place), op))
    with np.errstate(all="ignore"):
        ref = getattr(np, op)(x.astype(np.float64))
    r32 = ref.astype(np.float32)
    fin = np.isfinite(r32)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(r32))
    np.testing.assert_array_equal(y[~fin & ~np.isnan(r32)], r32[~fin & ~np.isnan(r32)])
    err = ulp_err(y[fin], ref[fin])
    assert err.max() <= 2.0, f"{op}: max error {err.max():.2f} ulp at x={x[fin][err.argmax()]!r}"


UNARY_CASES = [("sqrt", 0.0), ("rsqrt", 0.0), ("abs", 0.0), ("sign", 0.0), ("neg", 0.0), ("add", 1.5),
               ("mul", -2.5), ("div", 3.0), ("rsub", 0.25), ("rdiv", 2.0), ("fill", 7.0),
               ("pow", 0.0), ("pow", 1.0), ("pow", 2.0), ("pow", 3.0), ("pow", -1.0), ("pow", -2.0),
               ("pow", 0.5), ("pow", -0.5), ("pow", 1.7), ("pow", -3.0), ("rpow", 2.0), ("rpow", 0.5)]
_REF = {"sqrt": lambda x, s: np.sqrt(x), "rsqrt": lambda x, s: 1 / np.sqrt(x), "abs": lambda x, s: np.abs(x),
        "sign": lambda x, s: np.sign(x), "neg": lambda x, s: -x, "add": lambda x, s: x + s,
        "mul": lambda x, s: x * s, "div": lambda x, s: x / s, "rsub": lambda x, s: s - x,
        "rdiv": lambda x, s: s / x, "fill": lambda x, s: np.full_like(x, s), "pow": lambda x, s: np.power(x, s),
        "rpow": lambda x, s: np.power(s, x)}


@pytest.mark.parametrize("op,s", UNARY_CASES, ids=[f"{o}{s:g}" for o, s in UNARY_CASES])
def test_unary_ops(place, op, s, rng):
    for n in TAILS if place == "cpu" else [1, 33, 129]:
        x = np.concatenate([SPECIAL, rng.normal(0, 3, n).astype(np.float32)])
        if op == "rpow":
            x = np.clip(x, -60, 60)
        y = host(_C.unary(to(x, place), op, s))
        with np.errstate(all="ignore"):
            ref = _REF[op](x.astype(np.float64), np.float64(s))
        tol = 1e-6 if op in ("pow", "rpow", "rsqrt") else 1.2e-7
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref.astype(np.float32)), err_msg=op)
        ok = ~np.isnan(y)
        np.testing.assert_allclose(y[ok], ref[ok].astype(np.float32), rtol=tol, atol=0, err_msg=f"{op} {s}")


def test_unary_non_contiguous_and_empty(place):
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    t = to(x, place)._transpose(0, 1)
    np.testing.assert_array_equal(host(_C.unary(t, "mul", 2.0)), (x.T * 2))
    assert tuple(_C.unary(to(np.zeros((0, 3), np.float32), place), "exp").shape) == (0, 3)
    f = _C.full([3, 5], -1.25, place)
    assert str(f.device).startswith(place) and f.dtype == fastnn.float32
    np.testing.assert_array_equal(host(f), np.full((3, 5), -1.25, np.float32))


CMP = ["eq", "ne", "lt", "le", "gt", "ge"]
_NP_CMP = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
           "ge": np.greater_equal}


@pytest.mark.parametrize("op", CMP)
def test_compare_broadcast(place, op, rng):
    cases = [((3, 1, 5), (4, 5)), ((17,), (17,)), ((2, 33), (1,)), ((), (3, 2)), ((65, 1), (1, 3))]
    for sa, sb in cases:
        a = rng.integers(-2, 3, sa).astype(np.float32)
        b = rng.integers(-2, 3, sb).astype(np.float32)
        if a.size > 1:
            a.flat[0] = np.nan
        out = _C.compare(to(a, place), to(b, place), op)
        assert out.dtype == _C.DType.bool
        np.testing.assert_array_equal(host(out), _NP_CMP[op](a, b), err_msg=f"{sa} {sb}")
    for dt in (np.int64, np.int32):
        a = rng.integers(-3, 4, (5, 7)).astype(dt)
        b = rng.integers(-3, 4, (7,)).astype(dt)
        np.testing.assert_array_equal(host(_C.compare(to(a, place), to(b, place), op)), _NP_CMP[op](a, b))
        np.testing.assert_array_equal(host(_C.compare(to(a, place), 1.5, op)), _NP_CMP[op](a, 1.5))
    x = np.array([np.nan, -np.inf, 0.1, 1.0, 2.0], np.float32)
    # float32 tensors compare with a Python float in float32 (0.1 == 0.1f is True), as NumPy 2
    np.testing.assert_array_equal(host(_C.compare(to(x, place), 0.1, op)), _NP_CMP[op](x, np.float32(0.1)))


def test_compare_errors():
    a = _C.from_numpy(np.zeros((2, 3), np.float32))
    with pytest.raises(TypeError, match="argument 'b': expected dtype float32"):
        _C.compare(a, _C.from_numpy(np.zeros(3, np.int64)), "eq")
    with pytest.raises(TypeError, match="argument 'a': expected dtype float32, int64 or int32, got float64"):
        _C.compare(_C.from_numpy(np.zeros(3)), 1.0, "eq")
    with pytest.raises(ValueError, match=r"shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        _C.compare(a, _C.from_numpy(np.zeros(4, np.float32)), "lt")
    with pytest.raises(ValueError, match="argument 'op'"):
        _C.compare(a, 1.0, "lessthan")


def test_unary_errors():
    with pytest.raises(TypeError, match="unary: argument 'x': expected"):
        _C.unary(_C.from_numpy(np.zeros(3)), "exp")
    with pytest.raises(ValueError, match="argument 'op': expected one of"):
        _C.unary(_C.from_numpy(np.zeros(3, np.float32)), "expm1")


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16, np.uint8])
def test_gather(place, dtype, rng):
    x = (rng.normal(0, 10, (7, 5, 3))).astype(dtype)
    for k, bshape in ((1, (4,)), (1, (2, 3)), (2, (6,)), (3, (1,)), (1, (0,))):
        idx = [rng.integers(-x.shape[j], x.shape[j], bshape).astype(np.int64) for j in range(k)]
        out = _C.gather(to(x, place), [to(i, place) for i in idx])
        np.testing.assert_array_equal(host(out), x[tuple(idx)])


def test_scatter_add(place, rng):
    for shape, k, n in (((6, 129), 1, 40), ((5, 4, 17), 2, 33), ((9,), 1, 65), ((3, 2, 2), 3, 1)):
        idx = [rng.integers(-shape[j], shape[j], n).astype(np.int64) for j in range(k)]
        g = rng.normal(0, 1, (n,) + shape[k:]).astype(np.float32)
        out = host(_C.scatter_add(to(g, place), [to(i, place) for i in idx], list(shape)))
        ref = np.zeros(shape, np.float64)
        np.add.at(ref, tuple(idx), g.astype(np.float64))
        bound = n * np.finfo(np.float32).eps * np.abs(g).sum()
        np.testing.assert_allclose(out, ref, rtol=0, atol=bound)
        # deterministic: the same order everywhere -> bitwise equal to the serial CPU sum
        cpu = _C.scatter_add(_C.from_numpy(g), [_C.from_numpy(i) for i in idx], list(shape)).numpy()
        np.testing.assert_array_equal(out, cpu)


def test_gather_scatter_errors(place):
    x = to(np.zeros((3, 4), np.float32), place)
    bad = to(np.array([0, 1, 4, -5]), place)
    with pytest.raises(IndexError, match=r"gather: argument 'indices\[1\]': index 4 at flat position 2 is out of "
                                         r"bounds for dimension 1 with size 4"):
        _C.gather(x, [to(np.array([0, 1, 2, 2]), place), bad])
    with pytest.raises(IndexError, match=r"argument 'indices\[0\]': index -5 at flat position 3"):
        _C.scatter_add(to(np.zeros((4,), np.float32), place), [to(np.array([0, 1, 2, -5]), place)], [3])
    with pytest.raises(TypeError, match=r"argument 'indices\[0\]': expected dtype int64"):
        _C.gather(x, [to(np.array([0], np.int32), place)])
    with pytest.raises(ValueError, match=r"argument 'indices\[1\]': expected shape \(2,\)"):
        _C.gather(x, [to(np.array([0, 1]), place), to(np.array([0]), place)])
    with pytest.raises(ValueError, match="expected 1 to min"):
        _C.gather(x, [to(np.array([0]), place)] * 3)
    with pytest.raises(ValueError, match=r"scatter_add: argument 'grad_out': expected shape \(2, 4\)"):
        _C.scatter_add(to(np.zeros((3, 4), np.float32), place), [to(np.array([0, 1]), place)], [3, 4])


# ---- the Python layer ---------------------------------------------------------------------------
FANCY = [
    lambda i: (i["a"],),                       # x[[0, 2, 2]]
    lambda i: (slice(None), i["b"]),           # x[:, idx]
    lambda i: (i["a2"],),                      # 2-D index array
    lambda i: (i["a"], i["b3"]),               # two arrays, paired
    lambda i: (i["a"], slice(1, 3), i["c"]),   # non-adjacent arrays: broadcast dims first
    lambda i: (Ellipsis, i["c"]),              # x[..., idx]
    lambda i: (1, slice(None), i["c"]),        # an int with an array: NumPy treats it as an array
    lambda i: (None, i["a"]),                  # newaxis before
    lambda i: (i["mask"],),                    # boolean mask
    lambda i: (slice(None), [-1, 0]),          # a list, negative index
]


@pytest.mark.parametrize("form", range(len(FANCY)))
def test_fancy_indexing_forward_backward(device, form, rng):
    x = rng.normal(0, 1, (4, 5, 3)).astype(np.float32)
    ids = {"a": np.array([0, 2, 2]), "b": np.array([1, 1, 4, 0]), "a2": np.array([[3, 0], [0, 1]]),
           "b3": np.array([4, 4, 0]), "c": np.array([2, 0, 2]), "mask": x[:, 0, 0] > 0}
    idx_np = FANCY[form](ids)
    idx_t = tuple(fastnn.tensor(v).to(device) if isinstance(v, np.ndarray) else v for v in idx_np)
    t = fastnn.tensor(x, requires_grad=True, device=device)
    out = t[idx_t]
    ref = x[idx_np]
    np.testing.assert_array_equal(host(out), ref)
    w = rng.normal(0, 1, ref.shape).astype(np.float32)
    (out * fastnn.tensor(w).to(device)).sum().backward()
    gref = np.zeros(x.shape, np.float64)
    np.add.at(gref, idx_np, w.astype(np.float64))
    np.testing.assert_allclose(host(t.grad), gref, rtol=0, atol=4 * np.finfo(np.float32).eps * np.abs(w).sum())


def test_fancy_indexing_errors():
    t = fastnn.tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(IndexError, match="index 3 at flat position 1 is out of bounds for dimension 0 with size 3"):
        t[[0, 3]]
    with pytest.raises(IndexError, match="must be integer or bool"):
        t[fastnn.tensor(np.array([0.5], np.float32))]
    with pytest.raises(IndexError, match="too many indices"):
        t[[0], [0], [0]]


def test_scalar_ops_and_compare_in_layer(device, rng):
    x = rng.normal(0, 2, (5, 7)).astype(np.float32)
    t = fastnn.tensor(x, requires_grad=True, device=device)
    y = ((2.0 - t) / 4.0 + 1.0) * 3.0 - t / 2.0 + 1.0 / (t * t + 1.0) + 2.0 ** t * 0.01
    z = (t.abs() + 1.0).log() + (t * t).sqrt() + (t * 0.1).exp() + t ** 3 * 0.01 + (t.abs() + 1.0) ** -0.5
    (y.sum() + z.sum()).backward()
    x64 = x.astype(np.float64)
    yr = ((2.0 - x64) / 4.0 + 1.0) * 3.0 - x64 / 2.0 + 1.0 / (x64 * x64 + 1.0) + 2.0 ** x64 * 0.01
    zr = np.log(np.abs(x64) + 1) + np.abs(x64) + np.exp(0.1 * x64) + 0.01 * x64 ** 3 + (np.abs(x64) + 1) ** -0.5
    np.testing.assert_allclose(host(y), yr, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(host(z), zr, rtol=2e-6, atol=2e-6)
    g = (-0.75 - 0.5 - 2 * x64 / (x64 * x64 + 1) ** 2 + np.log(2) * 2.0 ** x64 * 0.01
         + np.sign(x64) / (np.abs(x64) + 1) + np.sign(x64) + 0.1 * np.exp(0.1 * x64) + 0.03 * x64 ** 2
         - 0.5 * np.sign(x64) * (np.abs(x64) + 1) ** -1.5)
    np.testing.assert_allclose(host(t.grad), g, rtol=1e-5, atol=1e-5)
    for op, ref in (("__gt__", np.greater), ("__le__", np.less_equal), ("__eq__", np.equal)):
        np.testing.assert_array_equal(host(getattr(t, op)(0.5)), ref(x, np.float32(0.5)))
        np.testing.assert_array_equal(host(getattr(t, op)(t[0])), ref(x, x[0]))


def test_full_max_backward_shares_ties(device):
    x = np.array([[1.0, 3.0, 3.0], [0.0, 3.0, -1.0]], np.float32)
    t = fastnn.tensor(x, requires_grad=True, device=device)
    (t.max() * 6.0).backward()
    np.testing.assert_array_equal(host(t.grad), np.array([[0, 2, 2], [0, 2, 0]], np.float32))
    assert int(host(t.argmax(dim=1))[0]) == 1


def test_kernel_status_cpu_has_no_fallback():
    st = K.kernel_status()
    assert st and all(v == "kernel" for v in st.values()), st


@pytest.mark.skipif(not HAS_CUDA, reason="no 'cuda' device")
def test_kernel_status_cuda_and_no_host_copies():
    st = K.kernel_status("cuda")
    for fam in ("scalar ops, exp/log/sqrt/abs/pow, fill", "compare (eq/ne/lt/le/gt/ge)",
                "fancy indexing (gather/scatter-add)", "matmul/linear", "optim (adam/sgd/clip)"):
        assert st[fam] == "kernel", (fam, st)
    t = fastnn.tensor(np.linspace(0.5, 2, 12, dtype=np.float32).reshape(3, 4), device="cuda")
    before = _C._cuda_host_device_copies()
    y = ((t * 2.0 + 1.0).exp().log().sqrt() ** 2.0) / 3.0 - 1.0
    m = y > 0.2
    f = K.fill_like(y, 1.0)
    assert _C._cuda_host_device_copies() == before
    assert m.is_cuda and f.is_cuda
