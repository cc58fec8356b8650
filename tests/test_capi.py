"""The C ABI (fastnn/fastnn_c.h, in libfastnn.so) through ctypes with NumPy buffers: results
against float64 NumPy references (or bitwise against the Python bindings, which run the same
kernels and are checked against references in their own suites), and the error contract
(status code + thread-local message, nothing written)."""
from __future__ import annotations

import ctypes as C
import threading

import numpy as np
import pytest

import fastnn
from fastnn import _sdk

# float32 kernels against float64 references: K-term sums of O(1) values, K <= ~200 here.
RTOL, ATOL = 1e-4, 1e-4
OK, VALUE, TYPE = 0, 1, 2

i64, f32, f64, ci = C.c_int64, C.c_float, C.c_double, C.c_int
fp = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
P = C.c_void_p  # strided operands: raw addresses


class Conv2dGeometry(C.Structure):
    _fields_ = [(name, i64) for name in ("batch", "in_channels", "in_h", "in_w", "out_channels", "kernel_h", "kernel_w",
                                         "stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "groups")]


@pytest.fixture(scope="module")
def lib():
    lib = C.CDLL(_sdk.library_path())
    sigs = {
        "fastnn_last_error": (C.c_char_p, []),
        "fastnn_version": (C.c_char_p, []),
        "fastnn_c_api_version": (ci, []),
        "fastnn_set_num_threads": (ci, [ci]),
        "fastnn_get_num_threads": (ci, []),
        "fastnn_simd_level": (C.c_char_p, []),
        "fastnn_gemm": (ci, [i64, i64, i64, f32, P, i64, i64, P, i64, i64, f32, P, i64, i64, P, ci]),
        "fastnn_conv2d_output_size": (ci, [C.POINTER(Conv2dGeometry), C.POINTER(i64), C.POINTER(i64)]),
        "fastnn_conv2d_forward": (ci, [C.POINTER(Conv2dGeometry), P, P, P, P, ci]),
        "fastnn_conv2d_backward": (ci, [C.POINTER(Conv2dGeometry), P, P, P, P, P, P]),
        "fastnn_attention_forward": (ci, [i64, i64, i64, i64, i64, P, P, P, ci, f32, P, P]),
        "fastnn_attention_backward": (ci, [i64, i64, i64, i64, i64, P, P, P, P, P, P, ci, f32, P, P, P]),
        "fastnn_adam": (ci, [i64, P, P, P, P, P, P, i64, f64, f64, f64, f64, f64, ci, ci, ci]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def ptr(a):
    return None if a is None else a.ctypes.data


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def assert_same_kernel(got, ref):
    """The C ABI against the Python binding: the same kernels, but each library has its own
    configuration (thread count), and the backward reductions over the batch / tokens are split
    across threads, so the summation order -- hence the last bits -- may differ: float32 ulps."""
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def err(lib):
    return lib.fastnn_last_error().decode()


def test_version_and_settings(lib):
    assert lib.fastnn_version().decode() == fastnn.__version__
    assert lib.fastnn_c_api_version() == 1
    assert lib.fastnn_simd_level().decode() in ("generic", "avx2", "avx512")
    n = lib.fastnn_get_num_threads()
    assert lib.fastnn_set_num_threads(1) == OK and lib.fastnn_get_num_threads() == 1
    assert lib.fastnn_set_num_threads(0) == VALUE and "'n'" in err(lib)
    assert lib.fastnn_set_num_threads(n) == OK and err(lib) == ""


# ---- gemm -----------------------------------------------------------------------------------
def strides_of(a):
    return [s // a.itemsize for s in a.strides]


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (17, 33, 65), (64, 48, 32), (129, 1, 127)])
@pytest.mark.parametrize("layout", ["nn", "tn", "nt", "neg"])
def test_gemm(lib, m, n, k, layout):
    a = rand(k, m, seed=1).T if layout == "tn" else rand(m, k, seed=1)
    b = rand(n, k, seed=2).T if layout == "nt" else rand(k, n, seed=2)
    if layout == "neg":
        a = rand(m, k, seed=1)[::-1]  # negative row stride, read in place
    c0 = rand(m, n, seed=3)
    bias = rand(n, seed=4)
    c = c0.copy()
    st = lib.fastnn_gemm(m, n, k, 0.5, ptr(a), *strides_of(a), ptr(b),
                         *strides_of(b), 2.0, ptr(c), *strides_of(c), ptr(bias), 1)
    assert st == OK, err(lib)
    want = np.maximum(0.5 * (a.astype(np.float64) @ b) + 2.0 * c0 + bias, 0)
    np.testing.assert_allclose(c, want, rtol=RTOL, atol=ATOL)


def test_gemm_column_major_output_and_beta_zero_ignores_nan(lib):
    m, n, k = 5, 7, 3
    a, b = rand(m, k), rand(k, n)
    c = np.full((n, m), np.nan, np.float32)  # C stored column-major: element (i, j) at j*m + i
    assert lib.fastnn_gemm(m, n, k, 1.0, ptr(a), k, 1, ptr(b), n, 1, 0.0, ptr(c), 1, m, None, 0) == OK
    np.testing.assert_allclose(c.T, a.astype(np.float64) @ b, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("args,status,needle", [
    (dict(m=-1), VALUE, "argument 'm': expected a size >= 0, got -1"),
    (dict(k=-3), VALUE, "argument 'k'"),
    (dict(c_rs=1, c_cs=1), VALUE, "argument 'c': strides (1, 1)"),
    (dict(c_rs=0), VALUE, "argument 'c'"),
    (dict(activation=9), VALUE, "argument 'activation': expected a fastnn_activation in [0, 5], got 9"),
    (dict(a=None), TYPE, "argument 'a': expected a pointer to 12 floats, got NULL"),
])
def test_gemm_errors(lib, args, status, needle):
    a, b = rand(4, 3), rand(3, 5)
    c = np.full((4, 5), 7.0, np.float32)
    kw = dict(m=4, n=5, k=3, alpha=1.0, a=ptr(a), a_rs=3, a_cs=1, b=ptr(b), b_rs=5, b_cs=1, beta=0.0, c=ptr(c),
              c_rs=5, c_cs=1, bias=None, activation=0)
    kw.update(args)
    assert lib.fastnn_gemm(*kw.values()) == status
    assert err(lib).startswith("fastnn_gemm: ") and needle in err(lib), err(lib)
    assert (c == 7.0).all(), "a failed call wrote its output"
    # The message is cleared by the next successful call.
    assert lib.fastnn_gemm(4, 5, 3, 1.0, ptr(a), 3, 1, ptr(b), 5, 1, 0.0, ptr(c), 5, 1, None, 0) == OK
    assert err(lib) == ""


def test_last_error_is_per_thread(lib):
    assert lib.fastnn_gemm(-1, 1, 1, 1.0, None, 1, 1, None, 1, 1, 0.0, None, 1, 1, None, 0) == VALUE
    seen = []
    t = threading.Thread(target=lambda: seen.append(err(lib)))
    t.start()
    t.join()
    assert seen == [""] and "'m'" in err(lib)


# ---- conv2d ---------------------------------------------------------------------------------
def conv_ref(x, w, b, stride, pad, dil, groups):
    """float64 direct convolution (PyTorch semantics)."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for r in range(kh):
        for s in range(kw):
            patch = xp[:, :, r * dil[0]:r * dil[0] + stride[0] * (oh - 1) + 1:stride[0],
                       s * dil[1]:s * dil[1] + stride[1] * (ow - 1) + 1:stride[1]]
            for g in range(groups):
                y[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch[:, g * cg:(g + 1) * cg],
                                                       w[g * og:(g + 1) * og, :, r, s])
    return y + (0 if b is None else b[None, :, None, None])


@pytest.mark.parametrize("n,c,h,w,o,k,stride,pad,dil,groups", [
    (1, 1, 1, 1, 1, 1, 1, 0, 1, 1),
    (2, 3, 17, 13, 8, 3, 1, 1, 1, 1),
    (2, 4, 9, 9, 6, 3, 2, 0, 1, 2),
    (1, 5, 12, 11, 5, 3, 1, 2, 2, 5),
])
def test_conv2d(lib, n, c, h, w, o, k, stride, pad, dil, groups):
    x, wt, b = rand(n, c, h, w, seed=1), rand(o, c // groups, k, k, seed=2), rand(o, seed=3)
    g = Conv2dGeometry(n, c, h, w, o, k, k, stride, stride, pad, pad, dil, dil, groups)
    oh, ow = i64(), i64()
    assert lib.fastnn_conv2d_output_size(C.byref(g), C.byref(oh), C.byref(ow)) == OK
    y = np.empty((n, o, oh.value, ow.value), np.float32)
    assert lib.fastnn_conv2d_forward(C.byref(g), ptr(x), ptr(wt), ptr(b), ptr(y), 0) == OK, err(lib)
    want = conv_ref(x, wt, b, (stride, stride), (pad, pad), (dil, dil), groups)
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)

    dy = rand(*y.shape, seed=4)
    dx, dw, db = np.empty_like(x), np.empty_like(wt), np.empty_like(b)
    assert lib.fastnn_conv2d_backward(C.byref(g), ptr(x), ptr(wt), ptr(dy), ptr(dx), ptr(dw), ptr(db)) == OK
    gx, gw, gb = fastnn.ops.conv2d_backward(dy, x, wt, stride, pad, dil, groups)
    for got, ref in zip((dx, dw, db), (gx, gw, gb)):
        assert_same_kernel(got, ref.numpy())
    np.testing.assert_allclose(db, dy.astype(np.float64).sum((0, 2, 3)), rtol=RTOL, atol=ATOL)
    # Only the bias gradient: dx / dw may be NULL.
    db2 = np.zeros_like(b)
    assert lib.fastnn_conv2d_backward(C.byref(g), None, None, ptr(dy), None, None, ptr(db2)) == OK
    np.testing.assert_array_equal(db2, db)


@pytest.mark.parametrize("change,needle", [
    (dict(groups=2), "argument 'groups': expected a divisor of in_channels (3) and out_channels (4), got 2"),
    (dict(in_h=1, pad_h=0), "output size would be <= 0"),
    (dict(kernel_w=0), "argument 'kernel_w': expected a size >= 1, got 0"),
    (dict(stride_h=0), "argument 'stride_h'"),
    (dict(batch=-2), "argument 'batch'"),
])
def test_conv2d_errors(lib, change, needle):
    fields = dict(batch=1, in_channels=3, in_h=5, in_w=5, out_channels=4, kernel_h=3, kernel_w=3, stride_h=1,
                  stride_w=1, pad_h=0, pad_w=0, dil_h=1, dil_w=1, groups=1)
    fields.update(change)
    g = Conv2dGeometry(**fields)
    x, w = rand(1, 3, 5, 5), rand(4, 3, 3, 3)
    y = np.full((1, 4, 3, 3), 7.0, np.float32)
    assert lib.fastnn_conv2d_forward(C.byref(g), ptr(x), ptr(w), None, ptr(y), 0) == VALUE
    assert err(lib).startswith("fastnn_conv2d_forward: ") and needle in err(lib), err(lib)
    assert (y == 7.0).all()
    assert lib.fastnn_conv2d_forward(None, ptr(x), ptr(w), None, ptr(y), 0) == TYPE


# ---- attention ------------------------------------------------------------------------------
def attention_ref(q, k, v, causal, scale):
    q, k, v = (t.astype(np.float64) for t in (q, k, v))
    s = scale * q @ k.swapaxes(-1, -2)
    nq, nk = s.shape[-2:]
    if causal:
        s = np.where(np.arange(nk)[None, :] <= np.arange(nq)[:, None] + (nk - nq), s, -np.inf)
    mx = s.max(-1, keepdims=True)
    p = np.exp(s - mx)
    return (p / p.sum(-1, keepdims=True)) @ v, (np.log(p.sum(-1)) + mx[..., 0])


@pytest.mark.parametrize("b,h,nq,nk,d,causal", [(1, 1, 1, 1, 1, False), (2, 3, 17, 17, 16, True),
                                                (1, 2, 33, 65, 32, False), (1, 2, 17, 33, 8, True)])
def test_attention(lib, b, h, nq, nk, d, causal):
    q, k, v = rand(b, h, nq, d, seed=1), rand(b, h, nk, d, seed=2), rand(b, h, nk, d, seed=3)
    out, lse = np.empty_like(q), np.empty((b, h, nq), np.float32)
    assert lib.fastnn_attention_forward(b, h, nq, nk, d, ptr(q), ptr(k), ptr(v), int(causal), 0.0, ptr(out),
                                        ptr(lse)) == OK, err(lib)
    want, want_lse = attention_ref(q, k, v, causal, d ** -0.5)
    np.testing.assert_allclose(out, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(lse, want_lse, rtol=RTOL, atol=ATOL)

    go = rand(*q.shape, seed=4)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    assert lib.fastnn_attention_backward(b, h, nq, nk, d, ptr(q), ptr(k), ptr(v), ptr(out), ptr(lse), ptr(go),
                                         int(causal), 0.0, ptr(dq), ptr(dk), ptr(dv)) == OK, err(lib)
    ref = fastnn.ops.attention_backward(go, q, k, v, out, lse, causal=causal)
    for got, r in zip((dq, dk, dv), ref):
        assert_same_kernel(got, r.numpy())


def test_attention_errors(lib):
    q = rand(1, 1, 4, 8)
    out = np.full_like(q, 7.0)
    assert lib.fastnn_attention_forward(1, 1, 4, 4, 0, ptr(q), ptr(q), ptr(q), 0, 0.0, ptr(out), None) == VALUE
    assert "argument 'head_dim': expected a size >= 1, got 0" in err(lib)
    assert lib.fastnn_attention_forward(1, 1, 4, 4, 8, ptr(q), ptr(q), ptr(q), 0, float("nan"), ptr(out),
                                        None) == VALUE
    assert "argument 'scale'" in err(lib)
    assert lib.fastnn_attention_forward(1, 1, 4, 4, 8, ptr(q), None, ptr(q), 0, 0.0, ptr(out), None) == TYPE
    assert "argument 'k'" in err(lib)
    assert (out == 7.0).all()


# ---- adam -----------------------------------------------------------------------------------
def ptr_array(arrays):
    return (C.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


def adam_ref(p, g, m, v, step, lr, b1, b2, eps, wd):
    """torch.optim.Adam (L2 weight decay), float64."""
    g = g + wd * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** step) + eps
    return p - lr / (1 - b1 ** step) * m / denom, m, v


def test_adam(lib):
    sizes = [1, 17, 129]
    ps = [rand(n, seed=i) for i, n in enumerate(sizes)]
    gs = [rand(n, seed=10 + i) for i, n in enumerate(sizes)]
    ms, vs = [np.zeros(n, np.float32) for n in sizes], [np.zeros(n, np.float32) for n in sizes]
    ref = [(p.astype(np.float64), np.zeros(p.size), np.zeros(p.size)) for p in ps]
    numels = np.array(sizes, np.int64)
    for step in (1, 2, 3):
        assert lib.fastnn_adam(3, ptr_array(ps), ptr_array(gs), ptr_array(ms), ptr_array(vs), None, ptr(numels),
                               step, 1e-2, 0.9, 0.999, 1e-8, 0.1, 0, 0, 0) == OK, err(lib)
        ref = [adam_ref(p, g.astype(np.float64), m, v, step, 1e-2, 0.9, 0.999, 1e-8, 0.1)
               for (p, m, v), g in zip(ref, gs)]
    for p, (rp, _, _) in zip(ps, ref):
        np.testing.assert_allclose(p, rp, rtol=1e-5, atol=1e-6)  # 3 elementwise steps: a few float32 ulps


@pytest.mark.parametrize("change,status,needle", [
    (dict(step=0), VALUE, "argument 'step': expected an integer >= 1, got 0"),
    (dict(beta1=1.0), VALUE, "argument 'beta1'"),
    (dict(lr=float("nan")), VALUE, "argument 'lr'"),
    (dict(num_tensors=-1), VALUE, "argument 'num_tensors'"),
    (dict(amsgrad=1), TYPE, "argument 'max_exp_avg_sqs'"),
    (dict(grads=None), TYPE, "'grads'"),
])
def test_adam_errors(lib, change, status, needle):
    p = rand(5)
    before = p.copy()
    g, m, v = rand(5, seed=1), np.zeros(5, np.float32), np.zeros(5, np.float32)
    numels = np.array([5], np.int64)
    kw = dict(num_tensors=1, params=ptr_array([p]), grads=ptr_array([g]), exp_avgs=ptr_array([m]),
              exp_avg_sqs=ptr_array([v]), max_exp_avg_sqs=None, numels=ptr(numels), step=1, lr=1e-3, beta1=0.9,
              beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=0, maximize=0, amsgrad=0)
    kw.update(change)
    assert lib.fastnn_adam(*kw.values()) == status
    assert err(lib).startswith("fastnn_adam: ") and needle in err(lib), err(lib)
    np.testing.assert_array_equal(p, before)
