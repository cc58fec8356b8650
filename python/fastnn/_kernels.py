"""The one place where the Python layer (autograd, nn, optim) calls compute.

Every function here takes and returns fastnn.Tensor (scalars where noted) and does one kernel
call (or a few). float32 tensors run on a fastnn kernel on the CPU and on CUDA; the plain NumPy
code beside each kernel call (marked ``# fallback``) runs only for

* other dtypes (float64 gradient checks, integer tensors in comparisons with mixed dtypes), and
* CUDA tensors given to a kernel that does not accept them yet: the binding raises "not
  implemented on cuda", the kernel's name is remembered in ``_CUDA_MISSING`` and the op runs
  its CPU kernel on host copies (``_via_host``; the results go back to the device) — that op
  alone, from then on. Detected, not hard-coded: a family landing later is used as soon as the
  ``_C`` function accepts CUDA tensors.

The NumPy code is also the "plain reference implementation beside the fast version". The
autograd and nn code never see the difference: switching an op to its kernel is a change to this
file only. ``kernel_status()`` reports which ops run on a fastnn kernel (per device).
"""
from __future__ import annotations

import builtins
import functools
import math

import numpy as np

from . import _C

Tensor = _C.Tensor
_F32 = _C.DType.float32
_I64, _I32 = _C.DType.int64, _C.DType.int32
_HAS_ATT = hasattr(_C, "attention_forward")

# _C function names that rejected a CUDA tensor with "not implemented on cuda" (learned at the
# first such call; a cache of a capability, not state of a computation).
_CUDA_MISSING = set()


class _CudaMissing(Exception):
    """Raised inside an op when its kernel has no CUDA version yet; the op's wrapper
    (_host_fallback) reruns it on host copies."""


def _ok(name, *ts):
    """Whether the kernel `name` takes these inputs (every tensor float32; None and Python
    scalars pass). Raises _CudaMissing for CUDA tensors when `name` is known to be CPU-only."""
    cuda = False
    for t in ts:
        if t.__class__ is Tensor:
            if t.dtype is not _F32:  # DType values are singletons (bind_tensor.cpp)
                return False
            if t.is_cuda:
                cuda = True
    if cuda and name in _CUDA_MISSING:
        raise _CudaMissing(name)
    return True


# How the bindings say "this kernel has no CUDA version yet" (bind_nn: RuntimeError "not
# implemented on cuda:0 yet"; bind_conv / bind_pool: ValueError "(no CUDA ... kernel yet)"; the
# backend: "has no op"; bind_attention: "expected a tensor on cpu, got one on cuda" — read as
# CPU-only only when every tensor argument is on CUDA, so a genuine device mix still raises).
_CPU_ONLY_MESSAGES = ("not implemented on", "has no op", "no CUDA", "expected a tensor on cpu, got one on cuda")


def _no_cuda(e, name, *ts):
    """In an ``except`` around kernel `name`: raises _CudaMissing when the kernel rejected CUDA
    tensors because its CUDA version has not landed; re-raises the error otherwise."""
    msg = str(e)
    on_cpu = builtins.any(t.__class__ is Tensor and not t.is_cuda for t in ts)
    if not on_cpu and _dev(*ts) is not None and builtins.any(m in msg for m in _CPU_ONLY_MESSAGES):
        _CUDA_MISSING.add(name)
        raise _CudaMissing(name) from e
    raise e


def _probe_cuda():
    """Runs each kernel family once on tiny CUDA tensors so _CUDA_MISSING is complete."""
    d = "cuda"
    x = _C.full([2, 3], 0.5, d)
    i = _C.zeros([2], _I64, d)
    w = _C.full([3, 3], 0.25, d)
    b = _C.full([3], 0.1, d)
    img = _C.full([1, 1, 4, 4], 1.0, d)
    ker = _C.full([1, 1, 3, 3], 1.0, d)
    probes = {
        "binary": lambda: add(x, x), "reduce": lambda: sum(x, (1,)), "max_backward": lambda: max_backward(
            _C.full([2], 1.0, d), x, 1, False, max(x, 1)[1]),
        "activation": lambda: relu(x), "activation_backward": lambda: relu_backward(x, x, x),
        "softmax": lambda: softmax(x), "softmax_backward": lambda: softmax_backward(x, x),
        "cross_entropy": lambda: cross_entropy(x, i), "bce_with_logits": lambda: bce_with_logits(x, x),
        "mse_loss": lambda: mse_loss(x, x), "layer_norm": lambda: layer_norm(x, 1, b, b, 1e-5),
        "layer_norm_backward": lambda: layer_norm_backward(x, x, 1, b, *layer_norm(x, 1, b, b, 1e-5)[1:]),
        "dropout": lambda: dropout(x, 0.5, 1), "embedding": lambda: embedding(i, w),
        "embedding_backward": lambda: embedding_backward(x, i, 3), "linear": lambda: linear(x, w, b),
        "linear_backward": lambda: linear_backward(x, x, w), "matmul": lambda: matmul(x, w),
        "matmul_backward": lambda: matmul_backward(x, x, w), "conv2d": lambda: conv2d(img, ker, None, (1, 1), (0, 0)),
        "conv2d_backward": lambda: conv2d_backward(_C.full([1, 1, 2, 2], 1.0, d), img, ker, (1, 1), (0, 0)),
        "max_pool2d": lambda: max_pool2d(img, (2, 2), (2, 2), (0, 0)),
        "max_pool2d_backward": lambda: max_pool2d_backward(_C.full([1, 1, 2, 2], 1.0, d), img,
                                                           max_pool2d(img, (2, 2), (2, 2), (0, 0))[1],
                                                           (2, 2), (2, 2), (0, 0)),
        "avg_pool2d": lambda: avg_pool2d(img, (2, 2), (2, 2), (0, 0)),
        "avg_pool2d_backward": lambda: avg_pool2d_backward(_C.full([1, 1, 2, 2], 1.0, d), img, (2, 2), (2, 2), (0, 0)),
        "adaptive_avg_pool2d": lambda: adaptive_avg_pool2d(img, (1, 1)),
        "adaptive_avg_pool2d_backward": lambda: adaptive_avg_pool2d_backward(_C.full([1, 1, 1, 1], 1.0, d), img,
                                                                             (1, 1)),
    }
    for fn in probes.values():
        fn()
    if _HAS_ATT:
        q = _C.full([1, 1, 2, 16], 0.1, d)
        attention(q, q, q)


def kernel_status(device: str = "cpu") -> dict:
    """{op family: status} for float32 tensors on `device` ('cpu' or 'cuda').

    'kernel': a fastnn kernel on that device. On the CPU every family is a kernel for float32
    (other dtypes — float64 gradient checks — always take the NumPy fallback). For 'cuda' each
    kernel is probed once on tiny tensors; a family whose CUDA kernel has not landed shows
    'cpu-kernel-via-host (no CUDA kernel yet: <kernels>)': its CPU kernel on host copies."""
    fams = {"add/sub/mul/div": ("binary",), "scalar ops, exp/log/sqrt/abs/pow, fill": ("unary",),
            "compare (eq/ne/lt/le/gt/ge)": ("compare",), "fancy indexing (gather/scatter-add)": ("gather",),
            "sum/mean/max/argmax, broadcast reductions": ("reduce",),
            "max backward (dim and full)": ("max_backward", "compare", "reduce"),
            "matmul/linear": ("matmul", "matmul_backward", "linear", "linear_backward"),
            "activations": ("activation", "activation_backward"), "softmax": ("softmax", "softmax_backward"),
            "losses": ("cross_entropy", "bce_with_logits", "mse_loss"),
            "layer_norm": ("layer_norm", "layer_norm_backward"), "dropout": ("dropout",),
            "embedding": ("embedding", "embedding_backward"), "conv2d": ("conv2d", "conv2d_backward"),
            "pooling": ("max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
                        "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward"),
            "attention": ("attention_forward",), "optim (adam/sgd/clip)": ("adam_",)}
    if device != "cpu":
        _probe_cuda()
    st = {}
    for fam, names in fams.items():
        missing = [n for n in names if n in _CUDA_MISSING] if device != "cpu" else []
        if not hasattr(_C, names[0]) or (fam == "attention" and not _HAS_ATT):
            st[fam] = "numpy-fallback"
        elif missing:
            st[fam] = "cpu-kernel-via-host (no CUDA kernel yet: " + ", ".join(missing) + ")"
        else:
            st[fam] = "kernel"
    return st


# ---- conversion helpers (zero-copy on the CPU) ----------------------------------------------
def np_(t):
    """NumPy view of a tensor (host copy for CUDA tensors); scalars pass through."""
    if isinstance(t, _C.Tensor):
        return t.numpy() if not t.is_cuda else t.cpu().numpy()
    return t


def t_(a, device=None):
    a = np.asarray(a)
    if not a.flags.c_contiguous or not a.flags.aligned:
        a = np.array(a, order="C")
    out = _C.from_numpy(a)
    if device is not None and device != "cpu":
        out = out._to(device, None, False)
    return out


def _dev(*ts):
    for t in ts:
        if isinstance(t, _C.Tensor) and t.is_cuda:
            return str(t.device)
    return None


def _binary(fn, a, b):
    return t_(fn(np_(a), np_(b)), _dev(a, b))


def _unary(fn, a):
    return t_(fn(np_(a)), _dev(a))


# ---- elementwise ------------------------------------------------------------------------------
def _un(a, op, s=0.0):
    """_C.unary on a float32 tensor (None when the fallback must run)."""
    if _ok("unary", a):
        try:
            return _C.unary(a, op, s)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "unary", a)
    return None


_SCALAR_OPS = {  # (op, tensor on the left) -> (unary op, scalar transform)
    ("add", True): ("add", None), ("add", False): ("add", None),
    ("sub", True): ("add", lambda s: -s), ("sub", False): ("rsub", None),
    ("mul", True): ("mul", None), ("mul", False): ("mul", None),
    ("div", True): ("div", None), ("div", False): ("rdiv", None)}


def _bin(op, npfn, a, b):
    if a.__class__ is Tensor and b.__class__ is Tensor:
        if _ok("binary", a, b):
            try:
                return _C.binary(a, b, op)
            except (RuntimeError, ValueError) as e:
                _no_cuda(e, "binary", a, b)
        return _binary(npfn, a, b)
    left = a.__class__ is Tensor
    t, s = (a, b) if left else (b, a)
    uop, tr = _SCALAR_OPS[(op, left)]
    r = _un(t, uop, float(tr(s) if tr else s))
    return r if r is not None else _binary(npfn, a, b)


def add(a, b):
    return _bin("add", np.add, a, b)


def sub(a, b):
    return _bin("sub", np.subtract, a, b)


def mul(a, b):
    return _bin("mul", np.multiply, a, b)


def div(a, b):
    return _bin("div", np.divide, a, b)


def _unary_op(op, npfn, a, s=0.0):
    r = _un(a, op, s)
    return r if r is not None else _unary(npfn, a)


def neg(a):
    return _unary_op("neg", np.negative, a)


def pow_scalar(a, p):
    return _unary_op("pow", lambda x: np.power(x, x.dtype.type(p)), a, float(p))


def pow_scalar_backward(g, a, p):
    """g * p * a**(p-1) (two unary kernels and a multiply)."""
    if _ok("unary", g, a):
        d = pow_scalar(a, p - 1) if p != 2 else a
        return mul(g, mul(d, float(p)))
    return t_(np_(g) * (p * np.power(np_(a), np_(a).dtype.type(p - 1))), _dev(g))


def rpow_scalar(base, a):
    """base ** a for a scalar base."""
    return _unary_op("rpow", lambda x: np.power(x.dtype.type(base), x), a, float(base))


def exp(a):
    return _unary_op("exp", np.exp, a)


def log(a):
    return _unary_op("log", np.log, a)


def sqrt(a):
    return _unary_op("sqrt", np.sqrt, a)


def rsqrt(a):
    return _unary_op("rsqrt", lambda x: 1 / np.sqrt(x), a)


def abs_(a):
    return _unary_op("abs", np.abs, a)


def sign(a):
    return _unary_op("sign", np.sign, a)


_CMP = {"equal": "eq", "not_equal": "ne", "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge"}


def compare(op, a, b):
    """a <op> b -> bool tensor; op a NumPy name ('equal', 'less', ...). float32/int64/int32
    tensors of one dtype (or a tensor and a number) run the kernel."""
    if a.__class__ is not Tensor or not a.is_cuda or "compare" not in _CUDA_MISSING:
        try:
            return _C.compare(a, b, _CMP[op])
        except TypeError:  # mixed or other dtypes: the fallback's NumPy promotion rules
            pass
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "compare", a, b)
    return _binary(getattr(np, op), a, b)


def fill_like(t, value):
    if _ok("unary", t):
        return _C.full(list(t.shape), float(value), str(t.device))
    return t_(np.full(t.shape, value, dtype=np_(t).dtype), _dev(t))


def zeros(shape, dtype, device=None):
    return _C.zeros(list(shape), dtype, device or "cpu")


def sum_to(g, shape):
    """Reduce a broadcast gradient back to ``shape`` (the input's)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    if _ok("reduce", g):
        try:
            lead = g.ndim - len(shape)
            x = g
            if lead > 0:
                x = _C.reduce(x._reshape([-1] + list(g.shape[lead:])), 0, False, "sum")[0]
            for i, s in enumerate(shape):
                if s == 1 and x.shape[i] != 1:
                    x = _C.reduce(x, i, True, "sum")[0]
            return x._reshape(list(shape))
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "reduce", g)
    x = np_(g)
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and x.shape[i + lead] != 1)
    return t_(np.sum(x, axis=axes, keepdims=True).reshape(shape), _dev(g))


def broadcast_to(g, shape):
    """Materialised broadcast (a zero-stride view copied by the C++ copy: any dtype, device)."""
    shape = list(shape)
    lead = len(shape) - g.ndim
    strides = [0] * lead + [0 if (gs == 1 and s != 1) else st
                            for gs, s, st in zip(g.shape, shape[lead:], g.strides)]
    return g._as_strided(shape, strides)._contiguous()


# ---- advanced indexing -------------------------------------------------------------------------
def gather(x, idx):
    """x[idx[0], ..., idx[k-1]] over the leading k dims; idx int64 tensors of one shape on x's
    device (any dtype of x)."""
    if not x.is_cuda or "gather" not in _CUDA_MISSING:
        try:
            return _C.gather(x, idx)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "gather", x)
    ni = tuple(np_(i) for i in idx)
    return t_(np_(x)[ni], _dev(x))


def scatter_add(g, idx, shape):
    """The backward of gather: zeros(shape), then [idx...] += g (deterministic order)."""
    if _ok("gather", g):
        try:
            return _C.scatter_add(g, idx, list(shape))
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "gather", g)
    z = np.zeros(shape, dtype=np_(g).dtype)
    np.add.at(z, tuple(np_(i) for i in idx), np_(g))
    return t_(z, _dev(g))


# ---- reductions -------------------------------------------------------------------------------
def _reduce_dims(x, dims, keepdim, op):
    if dims is None or x.ndim == 0:
        return _C.reduce(x, None, keepdim, op)[0]
    r = x
    for d in sorted(dims, reverse=True):  # one kernel pass per reduced axis (usually one)
        r = _C.reduce(r, d, True, op)[0]
    if not keepdim:
        r = r._reshape([s for i, s in enumerate(x.shape) if i not in dims])
    return r


def sum(x, dim=None, keepdim=False):
    if _ok("reduce", x):
        try:
            return _reduce_dims(x, dim, keepdim, "sum")
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "reduce", x)
    return t_(np.sum(np_(x), axis=dim, keepdims=keepdim), _dev(x))


def mean(x, dim=None, keepdim=False):
    if _ok("reduce", x):
        try:
            return _reduce_dims(x, dim, keepdim, "mean")
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "reduce", x)
    return t_(np.mean(np_(x), axis=dim, keepdims=keepdim), _dev(x))


def max(x, dim=None, keepdim=False):
    """Values and (for a dim) int64 indices of the maximum."""
    if _ok("reduce", x) and x.numel() > 0:
        try:
            vals, idx = _C.reduce(x, dim, keepdim, "max")
            return vals, (idx if dim is not None else None)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "reduce", x)
    a = np_(x)
    if dim is None:
        return t_(np.max(a), _dev(x)), None
    idx = np.argmax(a, axis=dim)
    vals = np.take_along_axis(a, np.expand_dims(idx, dim), axis=dim)
    if not keepdim:
        vals = np.squeeze(vals, dim)
    else:
        idx = np.expand_dims(idx, dim)  # torch: indices have the values' shape
    return t_(vals, _dev(x)), t_(idx.astype(np.int64), _dev(x))


def max_backward(g, x, dim, keepdim, idx, vals=None):
    """dim given: g routed to the argmax (one kernel). Full max: ties share g equally, as
    torch's: mask = (x == max) as float, g / count(mask) * mask (compare, reduce, 2 binary)."""
    if _ok("max_backward", g, x):
        try:
            if dim is not None and idx.dtype == _I64:
                return _C.max_backward(g, idx, list(x.shape), dim)
            if dim is None and vals is not None and _ok("reduce", x) and _ok("binary", g):
                m = _C.compare(x, vals, "eq")._to(None, _F32, False)
                cnt = _C.reduce(m, None, False, "sum")[0]
                return _C.binary(m, _C.binary(g, cnt, "div"), "mul")
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "max_backward", g, x)
    a = np_(x)
    out = np.zeros_like(a)
    gg = np_(g)
    if dim is None:
        m = a == a.max()
        out[m] = gg / m.sum()  # ties share the gradient, as torch's full max
        return t_(out, _dev(x))
    ii = np_(idx)
    if not keepdim:
        gg = np.expand_dims(gg, dim)
        ii = np.expand_dims(ii, dim)
    np.put_along_axis(out, ii, gg, axis=dim)
    return t_(out, _dev(x))


def argmax(x, dim=-1):
    if _ok("reduce", x) and x.numel() > 0:
        try:
            return _C.reduce(x, dim, False, "max")[1]
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "reduce", x)
    return t_(np.argmax(np_(x), axis=dim).astype(np.int64), _dev(x))


# ---- matmul / linear (kernels in _C: csrc/bindings/bind_gemm.cpp) -----------------------------
def matmul(a, b):
    if _ok("matmul", a, b):
        try:
            return _C.matmul(a, b)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "matmul", a, b)
    return _binary(np.matmul, a, b)


def matmul_backward(g, a, b):
    if _ok("matmul_backward", g, a, b):
        try:
            return _C.matmul_backward(g, a, b)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "matmul_backward", g, a, b)
    gg, aa, bb = np_(g), np_(a), np_(b)
    if aa.ndim == 1 and bb.ndim == 1:
        return t_(gg * bb), t_(gg * aa)
    a2 = aa[None, :] if aa.ndim == 1 else aa
    b2 = bb[:, None] if bb.ndim == 1 else bb
    g2 = gg
    if aa.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if bb.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2
    ga = np_(sum_to(t_(ga), a2.shape)).reshape(aa.shape)
    gb = np_(sum_to(t_(gb), b2.shape)).reshape(bb.shape)
    return t_(ga), t_(gb)


def linear(x, w, b=None):
    if _ok("linear", x, w, b):
        try:
            return _C.linear(x, w, b)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "linear", x, w, b)
    y = np_(x) @ np_(w).T
    if b is not None:
        y = y + np_(b)
    return t_(y, _dev(x))


_ONES = {}


def _ones_row(n, device="cpu"):
    """A cached (1, n) float32 row of ones on `device`: bias gradients as a GEMV on the GEMM
    kernel (made on the device itself: no host copy inside a training step)."""
    key = (n, device)
    t = _ONES.get(key)
    if t is None:
        t = _ONES[key] = _C.full([1, n], 1.0, device)
    return t


def _bias_grad(g2):
    return _C.gemm(_ones_row(g2.shape[0], str(g2.device)), g2)._reshape([g2.shape[1]])


def _rows(t):
    return t if t.ndim == 2 else t._reshape([-1, t.shape[-1]])


def linear_weight_backward(g, x, need_bias=True):
    """(grad_weight, grad_bias) of linear when the input needs no gradient: skips the
    grad_input GEMM (a third of the backward FLOPs of a first layer)."""
    if _ok("linear", g, x):
        try:
            g2 = _rows(g)
            gw = _C.gemm(g2, _rows(x), trans_a=True)
            return gw, (_bias_grad(g2) if need_bias else None)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "linear", g, x)
    w0 = _C.zeros([g.shape[-1], x.shape[-1]], g.dtype, str(g.device))  # grad_input computed and dropped
    _, gw, gb = linear_backward(g, x, w0, need_bias)
    return gw, gb


def linear_backward(g, x, w, need_bias=True):
    if _ok("linear_backward", g, x, w):
        try:
            if g.is_cuda and need_bias:
                # _C.linear_backward's bias GEMV stages its row of ones through the host; the
                # cached device row keeps the step free of host copies.
                gx, gw, _ = _C.linear_backward(g, x, w, False)
                return gx, gw, _bias_grad(_rows(g))
            return _C.linear_backward(g, x, w, need_bias)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "linear_backward", g, x, w)
    gg, xx, ww = np_(g), np_(x), np_(w)
    g2 = gg.reshape(-1, gg.shape[-1])
    x2 = xx.reshape(-1, xx.shape[-1])
    gx = (g2 @ ww).reshape(xx.shape)
    gw = g2.T @ x2
    gb = g2.sum(0) if need_bias else None
    d = _dev(g)
    return t_(gx, d), t_(gw, d), (t_(gb, d) if gb is not None else None)


# ---- activations ------------------------------------------------------------------------------
def _act(x, name):
    if _ok("activation", x):
        try:
            return _C.activation(x, name)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "activation", x)
    return None


def _act_bwd(g, x, name):
    if _ok("activation_backward", g, x):
        try:
            return _C.activation_backward(g, x, name)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "activation_backward", g, x)
    return None


def relu(x):
    y = _act(x, "relu")
    return y if y is not None else _unary(lambda a: np.maximum(a, a.dtype.type(0)), x)


def relu_backward(g, x, out):
    r = _act_bwd(g, x, "relu")
    return r if r is not None else t_(np_(g) * (np_(out) > 0), _dev(g))


try:  # exact erf for the fallback GELU (scipy is there whenever scikit-learn is)
    from scipy.special import erf as _erf
except ImportError:  # pragma: no cover
    def _erf(x):
        return np.vectorize(math.erf, otypes=[np.float64])(x)


def gelu(x, approximate="none"):
    y = _act(x, "gelu_tanh" if approximate == "tanh" else "gelu")
    if y is not None:
        return y
    a = np_(x)
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        y = 0.5 * a * (1.0 + np.tanh(c * (a + 0.044715 * a ** 3)))
    else:
        y = 0.5 * a * (1.0 + _erf(a / math.sqrt(2.0)))
    return t_(y.astype(a.dtype), _dev(x))


def gelu_backward(g, x, approximate="none"):
    r = _act_bwd(g, x, "gelu_tanh" if approximate == "tanh" else "gelu")
    if r is not None:
        return r
    a = np_(x)
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        u = c * (a + 0.044715 * a ** 3)
        th = np.tanh(u)
        d = 0.5 * (1 + th) + 0.5 * a * (1 - th * th) * c * (1 + 3 * 0.044715 * a * a)
    else:
        cdf = 0.5 * (1.0 + _erf(a / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
        d = cdf + a * pdf
    return t_((np_(g) * d).astype(a.dtype), _dev(g))


def sigmoid(x):
    y = _act(x, "sigmoid")
    if y is not None:
        return y
    a = np_(x)
    return t_((0.5 * (1.0 + np.tanh(0.5 * a))).astype(a.dtype), _dev(x))


def sigmoid_backward(g, x, out):
    r = _act_bwd(g, x, "sigmoid")
    if r is not None:
        return r
    s = np_(out)
    return t_(np_(g) * s * (1 - s), _dev(g))


def tanh(x):
    y = _act(x, "tanh")
    return y if y is not None else _unary(np.tanh, x)


def tanh_backward(g, x, out):
    r = _act_bwd(g, x, "tanh")
    if r is not None:
        return r
    t = np_(out)
    return t_(np_(g) * (1 - t * t), _dev(g))


def silu(x):
    y = _act(x, "silu")
    if y is not None:
        return y
    a = np_(x)
    return t_((a * 0.5 * (1.0 + np.tanh(0.5 * a))).astype(a.dtype), _dev(x))


def silu_backward(g, x, out=None):
    r = _act_bwd(g, x, "silu")
    if r is not None:
        return r
    a = np_(x)
    s = 0.5 * (1.0 + np.tanh(0.5 * a))
    return t_((np_(g) * s * (1 + a * (1 - s))).astype(a.dtype), _dev(g))


# ---- softmax and losses -----------------------------------------------------------------------
def _to_last(t, dim):
    """t with `dim` moved last (a view), for the last-axis softmax kernels."""
    d = dim % t.ndim if t.ndim else 0
    return t if d == t.ndim - 1 or t.ndim == 0 else t._transpose(d, t.ndim - 1), d


def _softmax_fwd(x, dim, log):
    if _ok("softmax", x) and x.ndim > 0:
        try:
            xl, d = _to_last(x, dim)
            y = _C.softmax(xl, log)
            return y if d == x.ndim - 1 else y._transpose(d, x.ndim - 1)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "softmax", x)
    return None


def _softmax_bwd(g, out, dim, log):
    if _ok("softmax_backward", g, out) and out.ndim > 0:
        try:
            gl, d = _to_last(g, dim)
            ol, _ = _to_last(out, dim)
            gx = _C.softmax_backward(gl, ol, log)
            return gx if d == out.ndim - 1 else gx._transpose(d, out.ndim - 1)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "softmax_backward", g, out)
    return None


def softmax(x, dim=-1):
    y = _softmax_fwd(x, dim, False)
    if y is not None:
        return y
    a = np_(x)
    e = np.exp(a - a.max(axis=dim, keepdims=True))
    return t_(e / e.sum(axis=dim, keepdims=True), _dev(x))


def softmax_backward(g, out, dim=-1):
    r = _softmax_bwd(g, out, dim, False)
    if r is not None:
        return r
    y, gg = np_(out), np_(g)
    return t_(y * (gg - (gg * y).sum(axis=dim, keepdims=True)), _dev(g))


def log_softmax(x, dim=-1):
    y = _softmax_fwd(x, dim, True)
    if y is not None:
        return y
    a = np_(x)
    s = a - a.max(axis=dim, keepdims=True)
    return t_(s - np.log(np.exp(s).sum(axis=dim, keepdims=True)), _dev(x))


def log_softmax_backward(g, out, dim=-1):
    r = _softmax_bwd(g, out, dim, True)
    if r is not None:
        return r
    y, gg = np_(out), np_(g)
    return t_(gg - np.exp(y) * gg.sum(axis=dim, keepdims=True), _dev(g))


def _reduce(l, reduction):
    if reduction == "mean":
        return l.mean(), 1.0 / builtins.max(l.size, 1)
    if reduction == "sum":
        return l.sum(), 1.0
    return l, None


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Fused log_softmax + NLL: (loss, dloss/dlogits for a unit upstream gradient).
    logits (N, C) float, target (N,) int64 class indices."""
    if _ok("cross_entropy", logits) and target.dtype in (_I64, _I32):
        try:
            return _C.cross_entropy(logits, target, float(label_smoothing), -100, reduction, True, True, None)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "cross_entropy", logits, target)
    a = np_(logits)
    y = np_(target).astype(np.int64)
    n, c = a.shape
    if n and (y.min() < 0 or y.max() >= c):
        bad = int(y[(y < 0) | (y >= c)][0])
        raise IndexError(f"cross_entropy: argument 'target': expected class indices in [0, {c}), got {bad}")
    s = a - a.max(axis=1, keepdims=True)
    e = np.exp(s)
    se = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    if label_smoothing:
        logp = s - np.log(se)
        q = np.full_like(a, label_smoothing / c)
        q[rows, y] += 1.0 - label_smoothing
        l = -(q * logp).sum(axis=1)
        grad = e / se - q
    else:
        l = np.log(se[:, 0]) - s[rows, y]
        grad = e / se
        grad[rows, y] -= 1.0
    loss, scale = _reduce(l, reduction)
    if scale is not None and scale != 1.0:
        grad *= a.dtype.type(scale)
    return t_(np.asarray(loss, dtype=a.dtype), _dev(logits)), t_(grad.astype(a.dtype, copy=False), _dev(logits))


def bce_with_logits(x, y, reduction="mean", pos_weight=None):
    if _ok("bce_with_logits", x, y, pos_weight):
        try:
            return _C.bce_with_logits(x, y, pos_weight, reduction, True, None)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "bce_with_logits", x, y)
    a, t = np_(x), np_(y).astype(np_(x).dtype)
    # log(1 + e^-|a|) form: never overflows
    sp = np.maximum(-a, 0) + np.log1p(np.exp(-np.abs(a)))  # softplus(-a)
    pw = 1.0 if pos_weight is None else np_(pos_weight)
    l = (1 - t) * a + (1 + (pw - 1) * t) * sp
    loss, scale = _reduce(l, reduction)
    sig = 0.5 * (1.0 + np.tanh(0.5 * a))
    grad = (1 + (pw - 1) * t) * sig - pw * t if pos_weight is not None else sig - t
    if scale is not None:
        grad = grad * scale
    return t_(np.asarray(loss, dtype=a.dtype), _dev(x)), t_(grad.astype(a.dtype), _dev(x))


def mse_loss(x, y, reduction="mean"):
    if _ok("mse_loss", x, y):
        try:
            return _C.mse_loss(x, y, reduction, True, None)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "mse_loss", x, y)
    d = np_(x) - np_(y)
    loss, scale = _reduce(d * d, reduction)
    grad = 2 * d * (scale if scale is not None else 1.0)
    return t_(np.asarray(loss, dtype=d.dtype), _dev(x)), t_(grad.astype(d.dtype), _dev(x))


# ---- layer norm, dropout, embedding -----------------------------------------------------------
def _flat_last(t, k):
    """t with its last k dims merged into one (k > 1: the normalized shape of a LayerNorm)."""
    if t is None or k == 1:
        return t
    n = 1
    for s in t.shape[t.ndim - k:]:
        n *= s
    return t._reshape(list(t.shape[:t.ndim - k]) + [n])


def layer_norm(x, normalized_ndim, weight, bias, eps):
    """(y, mean, rstd); mean/rstd have the leading (un-normalized) shape of x."""
    if _ok("layer_norm", x, weight, bias):
        try:
            k = normalized_ndim
            y, mu, rs = _C.layer_norm(_flat_last(x, k), _flat_last(weight, weight.ndim if weight is not None else 1),
                                      _flat_last(bias, bias.ndim if bias is not None else 1), float(eps))
            return (y if k == 1 else y._reshape(list(x.shape))), mu, rs
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "layer_norm", x)
    a = np_(x)
    axes = tuple(range(a.ndim - normalized_ndim, a.ndim))
    mu = a.mean(axis=axes, keepdims=True)
    var = ((a - mu) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (a - mu) * rstd
    if weight is not None:
        y = y * np_(weight)
    if bias is not None:
        y = y + np_(bias)
    lead = list(a.shape[:a.ndim - normalized_ndim])
    return t_(y.astype(a.dtype), _dev(x)), t_(mu.reshape(lead), _dev(x)), t_(rstd.reshape(lead), _dev(x))


def layer_norm_backward(g, x, normalized_ndim, weight, mean, rstd, need_bias=True):
    if _ok("layer_norm_backward", g, x, weight, mean, rstd):
        try:
            k = normalized_ndim
            w = _flat_last(weight, weight.ndim if weight is not None else 1)
            gx, gw, gb = _C.layer_norm_backward(_flat_last(g, k), _flat_last(x, k), w, mean, rstd,
                                                weight is not None, weight is not None and need_bias)
            if k != 1:
                gx = gx._reshape(list(x.shape))
                gw = gw._reshape(list(weight.shape)) if gw is not None else None
                gb = gb._reshape(list(weight.shape)) if gb is not None else None
            return gx, gw, gb
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "layer_norm_backward", g, x)
    a, gg = np_(x), np_(g)
    kshape = list(a.shape[:a.ndim - normalized_ndim]) + [1] * normalized_ndim
    mu, rs = np_(mean).reshape(kshape), np_(rstd).reshape(kshape)
    axes = tuple(range(a.ndim - normalized_ndim, a.ndim))
    lead = tuple(range(a.ndim - normalized_ndim))
    xhat = (a - mu) * rs
    gw = (gg * xhat).sum(axis=lead) if weight is not None else None
    gb = gg.sum(axis=lead) if (weight is not None and need_bias) else None
    gx_hat = gg * np_(weight) if weight is not None else gg
    n = int(np.prod([a.shape[i] for i in axes]))
    gx = rs * (gx_hat - gx_hat.sum(axis=axes, keepdims=True) / n
               - xhat * (gx_hat * xhat).sum(axis=axes, keepdims=True) / n)
    d = _dev(g)
    return (t_(gx.astype(a.dtype), d), t_(gw, d) if gw is not None else None,
            t_(gb, d) if gb is not None else None)


def dropout(x, p, seed):
    """Inverted dropout; the mask is a function of (seed, element index) so the backward can
    regenerate it instead of storing it."""
    if _ok("dropout", x):
        try:
            return _C.dropout(x, float(p), int(seed), 0)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "dropout", x)
    a = np_(x)
    keep = _dropout_mask(a.shape, p, seed)
    return t_(np.where(keep, a * a.dtype.type(1.0 / (1.0 - p)), a.dtype.type(0)), _dev(x))


def dropout_backward(g, p, seed):
    if _ok("dropout", g):
        try:
            return _C.dropout(g, float(p), int(seed), 0)  # same (seed, index) → same mask, same scale
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "dropout", g)
    gg = np_(g)
    keep = _dropout_mask(gg.shape, p, seed)
    return t_(np.where(keep, gg * gg.dtype.type(1.0 / (1.0 - p)), gg.dtype.type(0)), _dev(g))


def _dropout_mask(shape, p, seed):
    return np.random.default_rng(seed).random(shape, dtype=np.float32) >= p


def embedding(idx, weight):
    if _ok("embedding", weight) and idx.dtype in (_I64, _I32):
        try:
            return _C.embedding(idx, weight)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "embedding", idx, weight)
    i = np_(idx).astype(np.int64)
    n = weight.shape[0]
    if i.size and (i.min() < 0 or i.max() >= n):
        bad = int(i[(i < 0) | (i >= n)].flat[0])
        raise IndexError(f"embedding: argument 'input': expected indices in [0, {n}), got {bad}")
    return t_(np_(weight)[i], _dev(weight))


def embedding_backward(g, idx, num, padding_idx=None):
    if _ok("embedding_backward", g) and idx.dtype in (_I64, _I32):
        try:
            gt = _C.embedding_backward(g, idx, num)
            if padding_idx is not None:
                gt._getitem(padding_idx).copy_(_C.zeros([gt.shape[1]], gt.dtype, str(gt.device)))
            return gt
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "embedding_backward", g, idx)
    gg = np_(g)
    i = np_(idx).astype(np.int64).reshape(-1)
    out = np.zeros((num, gg.shape[-1]), dtype=gg.dtype)
    np.add.at(out, i, gg.reshape(-1, gg.shape[-1]))
    if padding_idx is not None:
        out[padding_idx] = 0
    return t_(out, _dev(g))


# ---- attention (kernels: csrc/bindings/bind_attention.cpp via fastnn.ops) ------------------------
def _via_host(fn, dev, *args, **kw):
    """fn on host copies of the CUDA tensors, results moved back to `dev`: the stopgap for a
    CUDA kernel that has not landed (host round trips, counted by the copy counter)."""
    def h(a):
        if isinstance(a, (list, tuple)):
            return type(a)(h(x) for x in a)
        return a.cpu() if a.__class__ is Tensor and a.is_cuda else a

    def back(t):
        return t._to(dev, None, False) if t.__class__ is Tensor else t
    r = fn(*[h(a) for a in args], **{k: h(v) for k, v in kw.items()})
    return tuple(back(t) for t in r) if isinstance(r, (tuple, list)) else back(r)


def attention(q, k, v, **kw):
    from .ops import attention as att
    if q.is_cuda and "attention_forward" in _CUDA_MISSING:
        raise _CudaMissing("attention_forward")
    try:
        return att(q, k, v, **kw)
    except (RuntimeError, ValueError) as e:
        _no_cuda(e, "attention_forward", q, k, v)


def attention_backward(g, q, k, v, out, lse, **kw):
    from .ops import attention_backward as att_bwd
    if q.is_cuda and "attention_forward" in _CUDA_MISSING:
        raise _CudaMissing("attention_forward")
    try:
        return att_bwd(g, q, k, v, out, lse, **kw)
    except (RuntimeError, ValueError) as e:
        _no_cuda(e, "attention_forward", g, q, k, v)


# ---- convolution and pooling (fallback: im2col on strided NumPy views) ------------------------
def _pad(a, p, value=0.0):
    if p == (0, 0):
        return a
    return np.pad(a, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=value)


def _windows(a, k, s):
    w = np.lib.stride_tricks.sliding_window_view(a, k, axis=(2, 3))  # N C OH' OW' kh kw
    return w[:, :, ::s[0], ::s[1]]


def conv2d(x, w, b, stride, padding):
    if _ok("conv2d", x, w, b):
        try:
            return _C.conv2d(x, w, b, stride, padding, 1, 1, None)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "conv2d", x, w, b)
    a = _pad(np_(x), padding)
    ww = np_(w)
    win = _windows(a, ww.shape[2:], stride)  # N C OH OW kh kw
    y = np.einsum("ncijkl,ockl->noij", win, ww, optimize=True)
    if b is not None:
        y = y + np_(b)[None, :, None, None]
    return t_(y.astype(a.dtype), _dev(x))


def conv2d_backward(g, x, w, stride, padding, need_bias=True):
    if _ok("conv2d_backward", g, x, w):
        try:
            return _C.conv2d_backward(g, x, w, stride, padding, 1, 1, True, True, bool(need_bias))
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "conv2d_backward", g, x, w)
    xx, ww, gg = np_(x), np_(w), np_(g)
    a = _pad(xx, padding)
    kh, kw = ww.shape[2:]
    win = _windows(a, (kh, kw), stride)
    gw = np.einsum("ncijkl,noij->ockl", win, gg, optimize=True)
    gb = gg.sum(axis=(0, 2, 3)) if need_bias else None
    ga = np.zeros_like(a)
    oh, ow = gg.shape[2:]
    cols = np.einsum("noij,ockl->ncijkl", gg, ww, optimize=True)
    for ki in range(kh):  # kh*kw strided adds (col2im), each a whole-array op
        for kj in range(kw):
            ga[:, :, ki:ki + stride[0] * oh:stride[0], kj:kj + stride[1] * ow:stride[1]] += cols[:, :, :, :, ki, kj]
    gx = ga[:, :, padding[0]:padding[0] + xx.shape[2], padding[1]:padding[1] + xx.shape[3]]
    return t_(gx, _dev(g)), t_(gw.astype(ww.dtype), _dev(g)), (t_(gb, _dev(g)) if gb is not None else None)


def max_pool2d(x, k, s, p):
    if _ok("max_pool2d", x):
        try:
            return _C.max_pool2d(x, k, s, p, True)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "max_pool2d", x)
    a = _pad(np_(x), p, -np.inf)
    win = _windows(a, k, s)
    n, c, oh, ow = win.shape[:4]
    flat = win.reshape(n, c, oh, ow, -1)
    arg = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return t_(y, _dev(x)), t_(arg.astype(np.int64))


def max_pool2d_backward(g, x, idx, k, s, p):
    if _ok("max_pool2d_backward", g, x):
        try:
            return _C.max_pool2d_backward(g, x, idx, k, s, p)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "max_pool2d_backward", g, x)
    xx, gg, arg = np_(x), np_(g), np_(idx)
    n, c, oh, ow = gg.shape
    hp, wp = xx.shape[2] + 2 * p[0], xx.shape[3] + 2 * p[1]
    ki, kj = np.divmod(arg, k[1])
    rows = np.arange(oh)[None, None, :, None] * s[0] + ki
    cols = np.arange(ow)[None, None, None, :] * s[1] + kj
    flat = (np.arange(n * c).reshape(n, c, 1, 1) * (hp * wp) + rows * wp + cols).reshape(-1)
    out = np.bincount(flat, weights=gg.reshape(-1).astype(np.float64), minlength=n * c * hp * wp)
    out = out.reshape(n, c, hp, wp)[:, :, p[0]:p[0] + xx.shape[2], p[1]:p[1] + xx.shape[3]]
    return t_(out.astype(gg.dtype), _dev(g))


def avg_pool2d(x, k, s, p):
    if _ok("avg_pool2d", x):
        try:
            return _C.avg_pool2d(x, k, s, p, True)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "avg_pool2d", x)
    # count_include_pad=True, as torch's default
    a = _pad(np_(x), p)
    return t_(_windows(a, k, s).mean(axis=(-1, -2)).astype(a.dtype), _dev(x))


def avg_pool2d_backward(g, x, k, s, p):
    if _ok("avg_pool2d_backward", g, x):
        try:
            return _C.avg_pool2d_backward(g, x, k, s, p, True)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "avg_pool2d_backward", g, x)
    xx, gg = np_(x), np_(g)
    ga = np.zeros((xx.shape[0], xx.shape[1], xx.shape[2] + 2 * p[0], xx.shape[3] + 2 * p[1]), dtype=gg.dtype)
    oh, ow = gg.shape[2:]
    share = gg / (k[0] * k[1])
    for ki in range(k[0]):
        for kj in range(k[1]):
            ga[:, :, ki:ki + s[0] * oh:s[0], kj:kj + s[1] * ow:s[1]] += share
    return t_(ga[:, :, p[0]:p[0] + xx.shape[2], p[1]:p[1] + xx.shape[3]], _dev(g))


def _adaptive_bounds(n_in, n_out):
    return [(i * n_in // n_out, -(-(i + 1) * n_in // n_out)) for i in range(n_out)]


def adaptive_avg_pool2d(x, out_size):
    if _ok("adaptive_avg_pool2d", x):
        try:
            return _C.adaptive_avg_pool2d(x, out_size)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "adaptive_avg_pool2d", x)
    a = np_(x)
    hb, wb = _adaptive_bounds(a.shape[2], out_size[0]), _adaptive_bounds(a.shape[3], out_size[1])
    y = np.empty(a.shape[:2] + tuple(out_size), dtype=a.dtype)
    for i, (h0, h1) in enumerate(hb):
        for j, (w0, w1) in enumerate(wb):
            y[:, :, i, j] = a[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return t_(y, _dev(x))


def adaptive_avg_pool2d_backward(g, x, out_size):
    if _ok("adaptive_avg_pool2d_backward", g, x):
        try:
            return _C.adaptive_avg_pool2d_backward(g, x)
        except (RuntimeError, ValueError) as e:
            _no_cuda(e, "adaptive_avg_pool2d_backward", g, x)
    xx, gg = np_(x), np_(g)
    hb, wb = _adaptive_bounds(xx.shape[2], out_size[0]), _adaptive_bounds(xx.shape[3], out_size[1])
    out = np.zeros(xx.shape, dtype=gg.dtype)
    for i, (h0, h1) in enumerate(hb):
        for j, (w0, w1) in enumerate(wb):
            out[:, :, h0:h1, w0:w1] += gg[:, :, i, j][:, :, None, None] / ((h1 - h0) * (w1 - w0))
    return t_(out, _dev(g))


# ---- CUDA tensors for kernels not on CUDA yet: the CPU kernel on host copies -------------------
def _host_fallback(fn):
    @functools.wraps(fn)
    def op(*args, **kw):
        try:
            return fn(*args, **kw)
        except _CudaMissing:
            return _via_host(fn, _dev(*args, *kw.values()), *args, **kw)
    return op


for _name in ("add", "sub", "mul", "div", "neg", "pow_scalar", "pow_scalar_backward", "rpow_scalar", "exp", "log",
              "sqrt", "rsqrt", "abs_", "sign", "compare", "fill_like", "sum_to", "gather", "scatter_add", "sum",
              "mean", "max", "max_backward", "argmax", "matmul", "matmul_backward", "linear",
              "linear_weight_backward", "linear_backward", "relu", "relu_backward", "gelu", "gelu_backward",
              "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "silu", "silu_backward", "softmax",
              "softmax_backward", "log_softmax", "log_softmax_backward", "cross_entropy", "bce_with_logits",
              "mse_loss", "layer_norm", "layer_norm_backward", "dropout", "dropout_backward", "embedding",
              "embedding_backward", "attention", "attention_backward", "conv2d", "conv2d_backward", "max_pool2d",
              "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "adaptive_avg_pool2d",
              "adaptive_avg_pool2d_backward"):
    globals()[_name] = _host_fallback(globals()[_name])
del _name
