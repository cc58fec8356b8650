"""The one place where the Python layer (autograd, nn, optim) calls compute.

Every function here takes and returns fastnn.Tensor (scalars where noted) and does one kernel
call. While a kernel family has not landed yet in ``fastnn._C`` / ``fastnn.ops`` the function
falls back to a plain NumPy implementation on zero-copy views of the tensors (marked
``# fallback``). That fallback is a stopgap so the layer above can be written and tested now;
it is also the "plain reference implementation beside the fast version". The autograd and nn
code never see the difference: switching an op to its kernel is a change to this file only.

``kernel_status()`` reports which ops run on a fastnn kernel and which on the fallback.
"""
from __future__ import annotations

import builtins
import math

import numpy as np

from . import _C

_HAS = {name: hasattr(_C, name) for name in ("matmul", "matmul_backward", "linear", "linear_backward", "conv2d",
                                               "conv2d_backward", "max_pool2d", "max_pool2d_backward", "avg_pool2d",
                                               "avg_pool2d_backward", "adaptive_avg_pool2d",
                                               "adaptive_avg_pool2d_backward")}
_F32 = _C.DType.float32
_NN = hasattr(_C, "activation")  # training kernels: csrc/bindings/bind_nn.cpp
_I64, _I32 = _C.DType.int64, _C.DType.int32
_HAS_MAXB = hasattr(_C, "max_backward")


def _kok(*ts):
    """Whether every tensor is a float32 CPU tensor. A kernel that raised on such inputs raised
    a genuine error (re-raised); otherwise the NumPy fallback takes over (float64 gradient
    checks, CUDA tensors for CPU-only kernels)."""
    for t in ts:
        if isinstance(t, _C.Tensor) and (t.dtype != _F32 or t.is_cuda):
            return False
    return True


def _sc(v):
    """Python scalars become 0-d float32 arrays for the tensor-only kernels."""
    return v if isinstance(v, _C.Tensor) else np.array(v, dtype=np.float32)


def kernel_status() -> dict:
    """{op family: 'kernel' | 'numpy-fallback'} for the ops the Python layer uses."""
    st = {"matmul/linear": "kernel" if _HAS["linear"] else "numpy-fallback",
          "attention": "kernel" if hasattr(_C, "attention_forward") else "numpy-fallback",
          "optim (adam/sgd/clip)": "kernel" if hasattr(_C, "adam_") else "numpy-fallback",
          "conv/pool": "kernel" if _HAS["conv2d"] else "numpy-fallback"}
    for fam in ("add/sub/mul/div", "activations", "softmax/losses", "layer_norm", "dropout", "embedding",
                "sum/mean/max"):
        st[fam] = "kernel" if _NN else "numpy-fallback"
    st["max(dim) backward"] = "kernel" if _HAS_MAXB else "numpy-fallback"
    for fam in ("exp/log/sqrt/pow/compare", "full max backward, fancy indexing"):
        st[fam] = "numpy-fallback"
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


# ---- elementwise (fallback) -------------------------------------------------------------------
def _bin(op, npfn, a, b):
    if _NN:
        try:
            return _C.binary(_sc(a), _sc(b), op)
        except (TypeError, RuntimeError):
            if _kok(a, b):
                raise
    return _binary(npfn, a, b)


def add(a, b):
    return _bin("add", np.add, a, b)


def sub(a, b):
    return _bin("sub", np.subtract, a, b)


def mul(a, b):
    return _bin("mul", np.multiply, a, b)


def div(a, b):
    return _bin("div", np.divide, a, b)


def neg(a):
    return _bin("mul", np.multiply, a, -1.0)


def pow_scalar(a, p):
    return _unary(lambda x: np.power(x, x.dtype.type(p)), a)


def pow_scalar_backward(g, a, p):
    return t_(np_(g) * (p * np.power(np_(a), np_(a).dtype.type(p - 1))), _dev(g))


def rpow_scalar(base, a):
    """base ** a for a scalar base."""
    return _unary(lambda x: np.power(x.dtype.type(base), x), a)


def exp(a):
    return _unary(np.exp, a)


def log(a):
    return _unary(np.log, a)


def sqrt(a):
    return _unary(np.sqrt, a)


def abs_(a):
    return _unary(np.abs, a)


def sign(a):
    return _unary(np.sign, a)


def compare(op, a, b):
    return _binary(getattr(np, op), a, b)


def where(cond, a, b):
    return t_(np.where(np_(cond), np_(a), np_(b)), _dev(cond, a, b))


def fill_like(t, value):
    return t_(np.full(t.shape, value, dtype=np_(t).dtype), _dev(t))


def zeros(shape, dtype, device=None):
    return _C.zeros(list(shape), dtype, device or "cpu")


def sum_to(g, shape):
    """Reduce a broadcast gradient back to ``shape`` (the input's)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    if _NN and _kok(g):
        lead = g.ndim - len(shape)
        x = g
        if lead > 0:
            x = _C.reduce(x._reshape([-1] + list(g.shape[lead:])), 0, False, "sum")[0]
        for i, s in enumerate(shape):
            if s == 1 and x.shape[i] != 1:
                x = _C.reduce(x, i, True, "sum")[0]
        return x._reshape(list(shape))
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


# ---- reductions (fallback) --------------------------------------------------------------------
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
    if _NN and _kok(x):
        return _reduce_dims(x, dim, keepdim, "sum")
    return t_(np.sum(np_(x), axis=dim, keepdims=keepdim), _dev(x))


def mean(x, dim=None, keepdim=False):
    if _NN and _kok(x):
        return _reduce_dims(x, dim, keepdim, "mean")
    return t_(np.mean(np_(x), axis=dim, keepdims=keepdim), _dev(x))


def max(x, dim=None, keepdim=False):
    """Values and (for a dim) int64 indices of the maximum."""
    if _NN and _kok(x) and x.numel() > 0:
        vals, idx = _C.reduce(x, dim, keepdim, "max")
        return vals, (idx if dim is not None else None)
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


def max_backward(g, x, dim, keepdim, idx):
    if dim is not None and _HAS_MAXB and _kok(g, x) and idx.dtype == _I64:
        return _C.max_backward(g, idx, list(x.shape), dim)
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
    return t_(np.argmax(np_(x), axis=dim).astype(np.int64), _dev(x))


# ---- matmul / linear (kernels in _C: csrc/bindings/bind_gemm.cpp) -----------------------------
def _f32(*ts):
    return all(not isinstance(t, _C.Tensor) or t.dtype == _F32 for t in ts)


def matmul(a, b):
    if _HAS["matmul"]:
        try:
            return _C.matmul(a, b)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(a, b):
                raise
    return _binary(np.matmul, a, b)


def matmul_backward(g, a, b):
    if _HAS["matmul_backward"]:
        try:
            return _C.matmul_backward(g, a, b)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(g, a, b):
                raise
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
    if _HAS["linear"]:
        try:
            return _C.linear(x, w, b)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(x, w, b):
                raise
    y = np_(x) @ np_(w).T
    if b is not None:
        y = y + np_(b)
    return t_(y, _dev(x))


_ONES = {}


def _ones_row(n):
    """A cached (1, n) float32 row of ones: bias gradients as a GEMV on the GEMM kernel."""
    t = _ONES.get(n)
    if t is None:
        t = _ONES[n] = _C.from_numpy(np.ones((1, n), np.float32))
    return t


def linear_weight_backward(g, x, need_bias=True):
    """(grad_weight, grad_bias) of linear when the input needs no gradient: skips the
    grad_input GEMM (a third of the backward FLOPs of a first layer)."""
    if _HAS["linear"] and g.dtype == _F32 and x.dtype == _F32 and not g.is_cuda:
        g2 = g if g.ndim == 2 else g._reshape([-1, g.shape[-1]])
        x2 = x if x.ndim == 2 else x._reshape([-1, x.shape[-1]])
        gw = _C.gemm(g2, x2, trans_a=True)
        gb = _C.gemm(_ones_row(g2.shape[0]), g2)._reshape([g2.shape[1]]) if need_bias else None
        return gw, gb
    w0 = _C.zeros([g.shape[-1], x.shape[-1]], g.dtype, str(g.device))  # grad_input computed and dropped
    _, gw, gb = linear_backward(g, x, w0, need_bias)
    return gw, gb


def linear_backward(g, x, w, need_bias=True):
    if _HAS["linear_backward"]:
        try:
            return _C.linear_backward(g, x, w, need_bias)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(g, x, w):
                raise
    gg, xx, ww = np_(g), np_(x), np_(w)
    g2 = gg.reshape(-1, gg.shape[-1])
    x2 = xx.reshape(-1, xx.shape[-1])
    gx = (g2 @ ww).reshape(xx.shape)
    gw = g2.T @ x2
    gb = g2.sum(0) if need_bias else None
    return t_(gx), t_(gw), (t_(gb) if gb is not None else None)


# ---- activations (fallback) ------------------------------------------------------------------
def _act(x, name):
    if _NN:
        try:
            return _C.activation(x, name)
        except (TypeError, RuntimeError):
            if _kok(x):
                raise
    return None


def _act_bwd(g, x, name):
    if _NN:
        try:
            return _C.activation_backward(g, x, name)
        except (TypeError, RuntimeError):
            if _kok(g, x):
                raise
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


# ---- softmax and losses (fallback) -----------------------------------------------------------
def _last(x, dim):
    return _NN and _kok(x) and dim == x.ndim - 1


def softmax(x, dim=-1):
    if _last(x, dim):
        return _C.softmax(x, False)
    a = np_(x)
    e = np.exp(a - a.max(axis=dim, keepdims=True))
    return t_(e / e.sum(axis=dim, keepdims=True), _dev(x))


def softmax_backward(g, out, dim=-1):
    if _last(out, dim) and _kok(g):
        return _C.softmax_backward(g, out, False)
    y, gg = np_(out), np_(g)
    return t_(y * (gg - (gg * y).sum(axis=dim, keepdims=True)), _dev(g))


def log_softmax(x, dim=-1):
    if _last(x, dim):
        return _C.softmax(x, True)
    a = np_(x)
    s = a - a.max(axis=dim, keepdims=True)
    return t_(s - np.log(np.exp(s).sum(axis=dim, keepdims=True)), _dev(x))


def log_softmax_backward(g, out, dim=-1):
    if _last(out, dim) and _kok(g):
        return _C.softmax_backward(g, out, True)
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
    if _NN and _kok(logits) and target.dtype in (_I64, _I32) and not target.is_cuda:
        return _C.cross_entropy(logits, target, float(label_smoothing), -100, reduction, True, True, None)
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
    if _NN and _kok(x, y, pos_weight):
        return _C.bce_with_logits(x, y, pos_weight, reduction, True, None)
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
    if _NN and _kok(x, y):
        return _C.mse_loss(x, y, reduction, True, None)
    d = np_(x) - np_(y)
    loss, scale = _reduce(d * d, reduction)
    grad = 2 * d * (scale if scale is not None else 1.0)
    return t_(np.asarray(loss, dtype=d.dtype), _dev(x)), t_(grad.astype(d.dtype), _dev(x))


# ---- layer norm, dropout, embedding (fallback) -----------------------------------------------
def layer_norm(x, normalized_ndim, weight, bias, eps):
    if _NN and normalized_ndim == 1 and _kok(x, weight, bias):
        return _C.layer_norm(x, weight, bias, float(eps))
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
    return t_(y.astype(a.dtype), _dev(x)), t_(mu), t_(rstd)


def layer_norm_backward(g, x, normalized_ndim, weight, mean, rstd, need_bias=True):
    if _NN and normalized_ndim == 1 and _kok(g, x, weight) and mean.ndim == x.ndim - 1:
        return _C.layer_norm_backward(g, x, weight, mean, rstd, weight is not None, weight is not None and need_bias)
    a, gg, mu, rs = np_(x), np_(g), np_(mean), np_(rstd)
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
    if _NN and _kok(x):
        return _C.dropout(x, float(p), int(seed), 0)
    a = np_(x)
    keep = _dropout_mask(a.shape, p, seed)
    return t_(np.where(keep, a * a.dtype.type(1.0 / (1.0 - p)), a.dtype.type(0)), _dev(x))


def dropout_backward(g, p, seed):
    if _NN and _kok(g):
        return _C.dropout(g, float(p), int(seed), 0)  # same (seed, index) → same mask, same scale
    gg = np_(g)
    keep = _dropout_mask(gg.shape, p, seed)
    return t_(np.where(keep, gg * gg.dtype.type(1.0 / (1.0 - p)), gg.dtype.type(0)), _dev(g))


def _dropout_mask(shape, p, seed):
    return np.random.default_rng(seed).random(shape, dtype=np.float32) >= p


def embedding(idx, weight):
    if _NN and _kok(weight) and idx.dtype in (_I64, _I32) and not idx.is_cuda:
        return _C.embedding(idx, weight)
    i = np_(idx).astype(np.int64)
    n = weight.shape[0]
    if i.size and (i.min() < 0 or i.max() >= n):
        bad = int(i[(i < 0) | (i >= n)].flat[0])
        raise IndexError(f"embedding: argument 'input': expected indices in [0, {n}), got {bad}")
    return t_(np_(weight)[i], _dev(weight))


def embedding_backward(g, idx, num, padding_idx=None):
    if _NN and _kok(g) and idx.dtype in (_I64, _I32) and not idx.is_cuda:
        gt = _C.embedding_backward(g, idx, num)
        if padding_idx is not None:
            gt._getitem(padding_idx).copy_(_C.zeros([gt.shape[1]], gt.dtype, "cpu"))
        return gt
    gg = np_(g)
    i = np_(idx).astype(np.int64).reshape(-1)
    out = np.zeros((num, gg.shape[-1]), dtype=gg.dtype)
    np.add.at(out, i, gg.reshape(-1, gg.shape[-1]))
    if padding_idx is not None:
        out[padding_idx] = 0
    return t_(out, _dev(g))


# ---- convolution and pooling (fallback: im2col on strided NumPy views) ------------------------
def _pad(a, p, value=0.0):
    if p == (0, 0):
        return a
    return np.pad(a, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=value)


def _windows(a, k, s):
    w = np.lib.stride_tricks.sliding_window_view(a, k, axis=(2, 3))  # N C OH' OW' kh kw
    return w[:, :, ::s[0], ::s[1]]


def conv2d(x, w, b, stride, padding):
    if _HAS["conv2d"]:
        try:
            return _C.conv2d(x, w, b, stride, padding, 1, 1, None)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(x, w, b):
                raise
    a = _pad(np_(x), padding)
    ww = np_(w)
    win = _windows(a, ww.shape[2:], stride)  # N C OH OW kh kw
    y = np.einsum("ncijkl,ockl->noij", win, ww, optimize=True)
    if b is not None:
        y = y + np_(b)[None, :, None, None]
    return t_(y.astype(a.dtype), _dev(x))


def conv2d_backward(g, x, w, stride, padding, need_bias=True):
    if _HAS["conv2d_backward"]:
        try:
            return _C.conv2d_backward(g, x, w, stride, padding, 1, 1, True, True, bool(need_bias))
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(g, x, w):
                raise
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
    if _HAS["max_pool2d"]:
        try:
            return _C.max_pool2d(x, k, s, p, True)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(x):
                raise
    a = _pad(np_(x), p, -np.inf)
    win = _windows(a, k, s)
    n, c, oh, ow = win.shape[:4]
    flat = win.reshape(n, c, oh, ow, -1)
    arg = flat.argmax(axis=-1)
    y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
    return t_(y, _dev(x)), t_(arg.astype(np.int64))


def max_pool2d_backward(g, x, idx, k, s, p):
    if _HAS["max_pool2d_backward"]:
        try:
            return _C.max_pool2d_backward(g, x, idx, k, s, p)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(g, x):
                raise
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
    if _HAS["avg_pool2d"]:
        try:
            return _C.avg_pool2d(x, k, s, p, True)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(x):
                raise
    # count_include_pad=True, as torch's default
    a = _pad(np_(x), p)
    return t_(_windows(a, k, s).mean(axis=(-1, -2)).astype(a.dtype), _dev(x))


def avg_pool2d_backward(g, x, k, s, p):
    if _HAS["avg_pool2d_backward"]:
        try:
            return _C.avg_pool2d_backward(g, x, k, s, p, True)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(g, x):
                raise
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
    if _HAS["adaptive_avg_pool2d"]:
        try:
            return _C.adaptive_avg_pool2d(x, out_size)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(x):
                raise
    a = np_(x)
    hb, wb = _adaptive_bounds(a.shape[2], out_size[0]), _adaptive_bounds(a.shape[3], out_size[1])
    y = np.empty(a.shape[:2] + tuple(out_size), dtype=a.dtype)
    for i, (h0, h1) in enumerate(hb):
        for j, (w0, w1) in enumerate(wb):
            y[:, :, i, j] = a[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return t_(y, _dev(x))


def adaptive_avg_pool2d_backward(g, x, out_size):
    if _HAS["adaptive_avg_pool2d_backward"]:
        try:
            return _C.adaptive_avg_pool2d_backward(g, x)
        except TypeError:  # not float32: the fallback handles it (float64 gradient checks)
            if _f32(g, x):
                raise
    xx, gg = np_(x), np_(g)
    hb, wb = _adaptive_bounds(xx.shape[2], out_size[0]), _adaptive_bounds(xx.shape[3], out_size[1])
    out = np.zeros(xx.shape, dtype=gg.dtype)
    for i, (h0, h1) in enumerate(hb):
        for j, (w0, w1) in enumerate(wb):
            out[:, :, h0:h1, w0:w1] += gg[:, :, i, j][:, :, None, None] / ((h1 - h0) * (w1 - w0))
    return t_(out, _dev(g))
