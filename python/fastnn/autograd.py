"""Reverse-mode automatic differentiation on a define-by-run tape.

Every differentiable op runs its forward kernel, then — only if grad mode is on and some
input requires grad — attaches a :class:`Node` to the output (``out.grad_fn``). A Node holds
the input tensors and a backward closure (which owns whatever the backward needs: saved
tensors, shapes, seeds). ``backward()`` sorts the nodes reachable from the root
topologically (iterative DFS, no recursion limit), runs each closure once with the summed
gradient of its output, and accumulates into ``.grad`` of the leaves. Without
``retain_graph=True`` each closure is dropped after use, which frees the saved tensors
(PyTorch's semantics: a second backward through the same graph raises).

Fast path: under :func:`no_grad`, or when no input requires grad, an op is its kernel call
plus one flag test and one attribute read per input — no Node, no closure.

This module also attaches the operators and differentiable methods to ``fastnn.Tensor``.
"""
from __future__ import annotations

import builtins
import functools
import numbers
import threading

import numpy as np

from . import _C
from . import _kernels as K

Tensor = _C.Tensor

__all__ = ["Function", "Node", "backward", "grad_enabled", "is_grad_enabled", "no_grad", "enable_grad",
           "set_grad_enabled"]


# ---- grad mode ---------------------------------------------------------------------------------
class _Mode(threading.local):
    """Per thread, as in PyTorch: one thread's ``no_grad`` (an optimizer step) must not switch
    off graph recording in another thread that is running a forward pass."""
    enabled = True


_mode = _Mode()


def is_grad_enabled() -> bool:
    return _mode.enabled


grad_enabled = is_grad_enabled


class set_grad_enabled:
    """Context manager / decorator setting grad mode to ``mode``; restores the previous mode."""

    def __init__(self, mode: bool = True):
        self.mode = bool(mode)
        self.prev = []

    def __enter__(self):
        self.prev.append(_mode.enabled)
        _mode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _mode.enabled = self.prev.pop()
        return False

    def __call__(self, fn):
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(set_grad_enabled):
    """``with fastnn.no_grad():``, ``@fastnn.no_grad()`` or ``@fastnn.no_grad`` — ops build no graph."""

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        if fn is not None:  # used as a bare decorator
            self.__init__()
            return self(fn)
        return self

    def __init__(self, fn=None):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    def __new__(cls, fn=None):
        self = super().__new__(cls)
        if fn is not None:
            self.__init__()
            return self(fn)
        return self

    def __init__(self, fn=None):
        super().__init__(True)


# ---- graph -------------------------------------------------------------------------------------
class Node:
    """One recorded op: ``fn(grad_out) -> tuple of grads`` aligned with ``inputs`` (None where an
    input is not a tensor that requires grad)."""
    __slots__ = ("inputs", "fn", "name")

    def __init__(self, fn, inputs, name):
        self.fn = fn
        self.inputs = inputs
        self.name = name

    def __repr__(self):
        return f"<{self.name}>"

    def name_(self):
        return self.name


def _rg(x):
    return x.__class__ is Tensor and x.requires_grad


def _attach(out, inputs, fn, name):
    """Record ``out = op(*inputs)``; inputs that don't require grad are stored as None."""
    out.grad_fn = Node(fn, tuple([t if (t.__class__ is Tensor and t.requires_grad) else None for t in inputs]), name)
    out.requires_grad = True
    return out


def _attach2(out, a, b, ra, rb, fn, name):
    """_attach for a binary op whose requires-grad flags are known (saves the re-checks)."""
    out.grad_fn = Node(fn, (a if ra else None, b if rb else None), name)
    out.requires_grad = True
    return out


def _needs(*xs):
    if not _mode.enabled:
        return False
    for x in xs:
        if x.__class__ is Tensor and x.requires_grad:
            return True
    return False


def backward(tensor, grad=None, retain_graph=False):
    """Accumulate d tensor / d leaf into every reachable leaf's ``.grad``.

    ``grad`` defaults to 1 for a one-element tensor (an error otherwise, as in PyTorch)."""
    if not tensor.requires_grad:
        raise RuntimeError("backward: the tensor does not require grad and has no grad_fn "
                           "(did you compute it under no_grad, or from tensors without requires_grad?)")
    if grad is None:
        if tensor.numel() != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for one-element outputs, "
                               f"got shape {tuple(tensor.shape)}; pass grad=")
        grad = K.fill_like(tensor, 1.0)
    else:
        if not isinstance(grad, Tensor):
            grad = K.t_(np.asarray(grad, dtype=K.np_(tensor).dtype), K._dev(tensor))
        if tuple(grad.shape) != tuple(tensor.shape):
            raise ValueError(f"backward: argument 'grad': expected shape {tuple(tensor.shape)}, "
                             f"got {tuple(grad.shape)}")
    root = tensor.grad_fn
    if root is None:  # a leaf
        _accumulate(tensor, grad, set())
        return
    # Topological order: reverse DFS post-order from the root.
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None:
                fn = t.grad_fn
                if fn is not None and id(fn) not in seen:
                    stack.append((fn, False))
    grads = {id(root): grad}
    given = {id(grad)}
    if getattr(tensor, "_retains_grad", False):
        _accumulate(tensor, grad, given)
    for node in reversed(order):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        fn = node.fn
        if fn is None:
            raise RuntimeError(f"backward: trying to backward through the graph a second time ({node.name}); "
                               "its saved tensors were freed. Pass retain_graph=True to the first backward.")
        in_grads = fn(g)
        if not retain_graph:
            node.fn = None
        for t, gi in zip(node.inputs, in_grads):
            if t is None or gi is None:
                continue
            tfn = t.grad_fn
            if tfn is not None:
                k = id(tfn)
                prev = grads.get(k)
                grads[k] = gi if prev is None else K.add(prev, gi)
                if t.__dict__.get("_retains_grad", False):
                    _accumulate(t, gi, given)
            else:
                _accumulate(t, gi, given)


def _accumulate(t, g, given):
    if g.dtype is not t.dtype:
        g = g._to(None, t.dtype, False)
    if t.grad is None:
        # A gradient handed to two leaves (e.g. by add's backward) must not be shared: the
        # optimizer and clip_grad_norm_ update grads in place.
        if id(g) in given:
            g = g._clone()
        given.add(id(g))
        t.grad = g
    else:
        t.grad = K.add(t.grad, g)


# ---- custom functions --------------------------------------------------------------------------
class Context:
    """``ctx`` of :class:`Function`: ``save_for_backward`` / ``saved_tensors`` plus any attributes."""

    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


class Function:
    """User-defined differentiable op, as torch.autograd.Function::

        class Square(fastnn.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x
            @staticmethod
            def backward(ctx, g):
                x, = ctx.saved_tensors
                return 2 * x * g

        y = Square.apply(x)
    """

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        ctx = Context()
        ctx.needs_input_grad = tuple(_rg(a) for a in args)
        with no_grad():
            out = cls.forward(ctx, *args)
        if _mode.enabled and any(ctx.needs_input_grad):
            def fn(g, ctx=ctx):
                r = cls.backward(ctx, g)
                return r if isinstance(r, tuple) else (r,)
            _attach(out, args, fn, cls.__name__ + "Backward")
        return out


# ---- differentiable ops on tensors ---------------------------------------------------------------
def _shape(x):
    return tuple(x.shape) if x.__class__ is Tensor else ()


def _as_t(x, like):
    """Python scalars stay scalars (the kernels broadcast them); arrays become tensors."""
    if x.__class__ is Tensor or isinstance(x, numbers.Number):
        return x
    if isinstance(x, np.ndarray):
        return K.t_(x.astype(K.np_(like).dtype, copy=False))
    return NotImplemented


# Binary ops: the requires-grad flags are read once; input shapes are read in the backward
# (from the inputs that need a gradient, which the node keeps alive anyway).
def add(a, b):
    out = K.add(a, b)
    if _mode.enabled:
        ra, rb = _rg(a), _rg(b)
        if ra or rb:
            _attach2(out, a, b, ra, rb, lambda g: (K.sum_to(g, a.shape) if ra else None,
                                                   K.sum_to(g, b.shape) if rb else None), "AddBackward")
    return out


def sub(a, b):
    out = K.sub(a, b)
    if _mode.enabled:
        ra, rb = _rg(a), _rg(b)
        if ra or rb:
            _attach2(out, a, b, ra, rb, lambda g: (K.sum_to(g, a.shape) if ra else None,
                                                   K.sum_to(K.neg(g), b.shape) if rb else None), "SubBackward")
    return out


def mul(a, b):
    out = K.mul(a, b)
    if _mode.enabled:
        ra, rb = _rg(a), _rg(b)
        if ra or rb:
            _attach2(out, a, b, ra, rb, lambda g: (K.sum_to(K.mul(g, b), a.shape) if ra else None,
                                                   K.sum_to(K.mul(g, a), b.shape) if rb else None), "MulBackward")
    return out


def div(a, b):
    out = K.div(a, b)
    if _mode.enabled:
        ra, rb = _rg(a), _rg(b)
        if ra or rb:
            def fn(g):
                ga = K.sum_to(K.div(g, b), a.shape) if ra else None
                gb = K.sum_to(K.neg(K.div(K.mul(g, out), b)), b.shape) if rb else None
                return ga, gb
            _attach2(out, a, b, ra, rb, fn, "DivBackward")
    return out


def neg(a):
    out = K.neg(a)
    if _needs(a):
        _attach(out, (a,), lambda g: (K.neg(g),), "NegBackward")
    return out


def pow_(a, p):
    if isinstance(p, Tensor):
        # a ** t = exp(t log a)
        return exp(mul(log(a), p))
    out = K.pow_scalar(a, p)
    if _needs(a):
        _attach(out, (a,), lambda g: (K.pow_scalar_backward(g, a, p),), "PowBackward")
    return out


def rpow(a, base):
    out = K.rpow_scalar(base, a)
    if _needs(a):
        lb = float(np.log(base))
        _attach(out, (a,), lambda g: (K.mul(K.mul(g, out), lb),), "RPowBackward")
    return out


def exp(a):
    out = K.exp(a)
    if _needs(a):
        _attach(out, (a,), lambda g: (K.mul(g, out),), "ExpBackward")
    return out


def log(a):
    out = K.log(a)
    if _needs(a):
        _attach(out, (a,), lambda g: (K.div(g, a),), "LogBackward")
    return out


def sqrt(a):
    out = K.sqrt(a)
    if _needs(a):
        _attach(out, (a,), lambda g: (K.div(K.mul(g, 0.5), out),), "SqrtBackward")
    return out


def abs(a):  # noqa: A001 - the tensor method name
    out = K.abs_(a)
    if _needs(a):
        _attach(out, (a,), lambda g: (K.mul(g, K.sign(a)),), "AbsBackward")
    return out


def matmul(a, b):
    out = K.matmul(a, b)
    if _needs(a, b):
        _attach(out, (a, b), lambda g: K.matmul_backward(g, a, b), "MatmulBackward")
    return out


def _norm_dims(dim, nd):
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -nd <= d < builtins.max(nd, 1):
            raise IndexError(f"argument 'dim': expected a dimension in [{-nd}, {nd - 1}], got {d}")
        out.append(d % nd if nd else 0)
    return tuple(sorted(out))


def _keep_shape(shape, dims):
    if dims is None:
        return [1] * len(shape)
    return [1 if i in dims else s for i, s in enumerate(shape)]


def sum(x, dim=None, keepdim=False):  # noqa: A001
    dims = _norm_dims(dim, x.ndim)
    out = K.sum(x, dims, keepdim)
    if _needs(x):
        shape = tuple(x.shape)
        ks = _keep_shape(shape, dims)
        _attach(out, (x,), lambda g: (K.broadcast_to(g.reshape(ks), shape),), "SumBackward")
    return out


def mean(x, dim=None, keepdim=False):
    dims = _norm_dims(dim, x.ndim)
    out = K.mean(x, dims, keepdim)
    if _needs(x):
        shape = tuple(x.shape)
        ks = _keep_shape(shape, dims)
        n = 1
        for i, s in enumerate(shape):
            if dims is None or i in dims:
                n *= s
        _attach(out, (x,), lambda g: (K.broadcast_to(K.div(g, float(builtins.max(n, 1))).reshape(ks), shape),),
                "MeanBackward")
    return out


def max(x, dim=None, keepdim=False):  # noqa: A001
    """Full max (a 0-d tensor) or, with ``dim``, a ``(values, indices)`` pair like torch.max."""
    d = None if dim is None else _norm_dims(dim, x.ndim)[0]
    vals, idx = K.max(x, d, keepdim)
    if _needs(x):
        _attach(vals, (x,), lambda g: (K.max_backward(g, x, d, keepdim, idx, vals),), "MaxBackward")
    return vals if dim is None else (vals, idx)


def min(x, dim=None, keepdim=False):  # noqa: A001
    r = max(neg(x), dim, keepdim)
    return neg(r) if dim is None else (neg(r[0]), r[1])


# ---- views: the backward scatters into zeros of the input's shape ---------------------------
_orig = {name: getattr(Tensor, name) for name in
         ("reshape", "view", "permute", "transpose", "flatten", "unsqueeze", "squeeze", "__getitem__",
          "contiguous", "clone", "to", "detach")}


def _view_op(name, inverse):
    base = _orig[name]

    def op(self, *args, **kwargs):
        out = base(self, *args, **kwargs)
        if _mode.enabled and self.requires_grad:
            shape = tuple(self.shape)
            _attach(out, (self,), lambda g: (inverse(g, shape, args, kwargs),), name.capitalize() + "Backward")
        return out
    op.__name__ = name
    op.__doc__ = base.__doc__
    return op


def _reshape_back(g, shape, args, kwargs):
    return _orig["reshape"](g, shape)


def _permute_back(g, shape, args, kwargs):
    dims = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    nd = len(dims)
    inv = [0] * nd
    for i, d in enumerate(dims):
        inv[d % nd] = i
    return g._permute(inv)


def _transpose_back(g, shape, args, kwargs):
    return g._transpose(args[0], args[1])


def _getitem_back(g, shape, args, kwargs):
    z = K.zeros(shape, g.dtype, None if not g.is_cuda else str(g.device))
    z._getitem(args[0]).copy_(g)
    return z


for _name, _inv in (("reshape", _reshape_back), ("view", _reshape_back), ("flatten", _reshape_back),
                    ("unsqueeze", _reshape_back), ("squeeze", _reshape_back), ("permute", _permute_back),
                    ("transpose", _transpose_back)):
    setattr(Tensor, _name, _view_op(_name, _inv))

_basic_getitem = _view_op("__getitem__", _getitem_back)


def _is_advanced(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    for it in items:
        if isinstance(it, (list, np.ndarray, Tensor)) and not (isinstance(it, Tensor) and it.ndim == 0):
            return True
    return False


def _getitem(self, idx):
    if _is_advanced(idx):
        return _fancy_getitem(self, idx)
    return _basic_getitem(self, idx)


def _index_tensor(it, device):
    """One advanced index item as int64 tensors on `device`: a list (1 tensor, or mask.ndim
    tensors for a boolean mask, whose nonzero() is computed on the host: its shape depends on
    the data)."""
    if it.__class__ is Tensor:
        if it.dtype == _C.DType.bool:
            return [K.t_(a, device) for a in np.nonzero(K.np_(it))]
        if it.dtype.is_floating_point:
            raise IndexError(f"tensors used as indices must be integer or bool, got {it.dtype!r}")
        t = it if it.dtype == _C.DType.int64 else it._to(None, _C.DType.int64, False)
        return [t if str(t.device) == device or (device is None and not t.is_cuda) else t._to(device or "cpu", None, False)]
    a = np.asarray(it)
    if a.dtype == np.bool_:
        return [K.t_(x, device) for x in np.nonzero(a)]
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise IndexError(f"arrays used as indices must be integer or bool, got dtype {a.dtype}")
    return [K.t_(a.astype(np.int64), device)]


def _gather(x, idx):
    """x[idx[0], ..., idx[k-1]] over the leading dims (one gather kernel); backward scatter-adds."""
    out = K.gather(x, idx)
    if _needs(x):
        shape = tuple(x.shape)
        _attach(out, (x,), lambda g: (K.scatter_add(g, idx, shape),), "IndexBackward")
    return out


def _fancy_getitem(self, idx):
    """Advanced (integer/boolean array) indexing with NumPy's rules, as differentiable pieces:
    basic indexing (a view) with full slices in place of the arrays, a permute bringing the
    indexed dims first, one gather kernel, and a permute placing the broadcast index dims where
    NumPy puts them (in place when the indexed dims are adjacent, else first)."""
    items = list(idx) if isinstance(idx, tuple) else [idx]
    dev = K._dev(self)
    conv = []  # (kind, value): 'adv' -> list of int64 tensors, else the basic item
    for it in items:
        if it is None or it is Ellipsis or isinstance(it, slice):
            conv.append(("basic", it))
        elif isinstance(it, (bool, np.bool_)):
            raise IndexError("fancy indexing with a Python bool mixed with arrays is not supported")
        elif isinstance(it, (int, np.integer)) or (it.__class__ is Tensor and it.ndim == 0):
            v = int(it.item()) if it.__class__ is Tensor else int(it)
            conv.append(("adv", [K.t_(np.array(v, np.int64), dev)]))
        else:
            conv.append(("adv", _index_tensor(it, dev)))
    used = builtins.sum(len(v) if k == "adv" else (0 if v is None or v is Ellipsis else 1) for k, v in conv)
    if used > self.ndim:
        raise IndexError(f"too many indices for tensor of dimension {self.ndim}")
    basic, adv, adv_dims, vd = [], [], [], 0
    for kind, v in conv:
        if kind == "adv":
            for t in v:
                basic.append(slice(None))
                adv.append(t)
                adv_dims.append(vd)
                vd += 1
        elif v is Ellipsis:
            for _ in range(self.ndim - used):
                basic.append(slice(None))
                vd += 1
        else:
            basic.append(v)
            vd += 1 if (v is None or isinstance(v, slice)) else 0
    view = _basic_getitem(self, tuple(basic))
    bshape = tuple(np.broadcast_shapes(*[tuple(t.shape) for t in adv]))
    adv = [t if tuple(t.shape) == bshape else K.broadcast_to(t, bshape) for t in adv]
    rest = [d for d in range(view.ndim) if d not in adv_dims]
    perm = adv_dims + rest
    v = view if perm == list(range(view.ndim)) else view.permute(perm)
    out = _gather(v, adv)
    a0, nb = adv_dims[0], len(bshape)
    if adv_dims == list(range(a0, a0 + len(adv_dims))) and a0 > 0:
        p2 = list(range(nb, nb + a0)) + list(range(nb)) + list(range(nb + a0, out.ndim))
        out = out.permute(p2)
    return out


Tensor.__getitem__ = _getitem
Tensor.T = property(lambda self: self.permute(list(range(self.ndim))[::-1]), doc="Reversed dimensions.")


def _contiguous(self):
    return self if self.is_contiguous() else _clone(self)


def _clone(self):
    out = self._clone()
    if _mode.enabled and self.requires_grad:
        _attach(out, (self,), lambda g: (g,), "CloneBackward")
    return out


def _to(self, *args, **kwargs):
    out = _orig["to"](self, *args, **kwargs)
    if out is not self and _mode.enabled and self.requires_grad:
        dt, dev = self.dtype, str(self.device)
        _attach(out, (self,), lambda g: (g._to(dev, dt, False),), "ToBackward")
    return out


def _detach(self):
    return _orig["detach"](self)


def _detach_(self):
    self.grad_fn = None
    self.requires_grad = False
    return self


def _requires_grad_(self, requires_grad=True):
    if self.grad_fn is not None and not requires_grad:
        raise RuntimeError("requires_grad_: you can only change requires_grad of leaf tensors")
    self.requires_grad = bool(requires_grad)
    return self


def _retain_grad(self):
    self._retains_grad = True
    return self


def _zero_(self):
    """Fill with zeros in place (used by optimizers on grads and by init)."""
    self.copy_(K.zeros(self.shape, self.dtype, None if not self.is_cuda else str(self.device)))
    return self


def _fill_(self, value):
    self.copy_(K.fill_like(self, value))
    return self


def _tensor_backward(self, gradient=None, retain_graph=False):
    backward(self, gradient, retain_graph)


def _binop(fn, reflected=False):
    def op(self, other):
        other = _as_t(other, self)
        if other is NotImplemented:
            return NotImplemented
        return fn(other, self) if reflected else fn(self, other)
    return op


def _cmp(name):
    def op(self, other):
        other = _as_t(other, self)
        if other is NotImplemented:
            return NotImplemented
        return K.compare(name, self, other)
    return op


def _pow(self, p):
    if isinstance(p, np.ndarray):
        p = _as_t(p, self)
    return pow_(self, p)


def _rpow(self, base):
    return rpow(self, base)


def _matmul_op(self, other):
    if isinstance(other, np.ndarray):
        other = K.t_(other)
    if other.__class__ is not Tensor:
        return NotImplemented
    return matmul(self, other)


def _rmatmul_op(self, other):
    if isinstance(other, np.ndarray):
        other = K.t_(other)
    if other.__class__ is not Tensor:
        return NotImplemented
    return matmul(other, self)


def _sum(self, dim=None, keepdim=False):
    return sum(self, dim, keepdim)


def _mean(self, dim=None, keepdim=False):
    return mean(self, dim, keepdim)


def _max(self, dim=None, keepdim=False):
    return max(self, dim, keepdim)


def _min(self, dim=None, keepdim=False):
    return min(self, dim, keepdim)


def _argmax(self, dim=-1):
    return K.argmax(self, dim)


def _is_leaf(self):
    return self.grad_fn is None


def _install():
    T = Tensor
    T.__add__, T.__radd__ = _binop(add), _binop(add, True)
    T.__sub__, T.__rsub__ = _binop(sub), _binop(sub, True)
    T.__mul__, T.__rmul__ = _binop(mul), _binop(mul, True)
    T.__truediv__, T.__rtruediv__ = _binop(div), _binop(div, True)
    T.__neg__ = neg
    T.__pos__ = lambda self: self
    T.__pow__, T.__rpow__ = _pow, _rpow
    T.__matmul__, T.__rmatmul__ = _matmul_op, _rmatmul_op
    T.__abs__ = abs
    for py, npn in (("__eq__", "equal"), ("__ne__", "not_equal"), ("__lt__", "less"), ("__le__", "less_equal"),
                    ("__gt__", "greater"), ("__ge__", "greater_equal")):
        setattr(T, py, _cmp(npn))
    T.__hash__ = object.__hash__  # identity, so tensors still work as dict keys
    T.__array_priority__ = 1000  # ndarray op tensor -> our reflected operator
    T.add, T.sub, T.mul, T.div, T.matmul = add, sub, mul, div, matmul
    T.neg, T.exp, T.log, T.sqrt, T.abs, T.pow = neg, exp, log, sqrt, abs, pow_
    T.sum, T.mean, T.max, T.min, T.argmax = _sum, _mean, _max, _min, _argmax
    T.contiguous, T.clone, T.to, T.detach = _contiguous, _clone, _to, _detach
    T.detach_, T.requires_grad_, T.retain_grad = _detach_, _requires_grad_, _retain_grad
    T.zero_, T.fill_ = _zero_, _fill_
    T.backward = _tensor_backward
    T.is_leaf = property(_is_leaf)
    T.data = property(_detach, lambda self, v: self.copy_(v),
                      doc="The same storage without autograd history (assigning copies into it).")


_install()
