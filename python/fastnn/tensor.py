"""fastnn.Tensor and the functions that create tensors.

fastnn.Tensor is the native class ``fastnn._C.Tensor`` (storage, shape, strides, dtype,
device live in C++); this module adds its Python-level methods. Views, copies and
conversions run in C++; nothing here loops over elements.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _C

Tensor = _C.Tensor
# Autograd fields: class-level defaults, overridden per instance in the instance __dict__ (a
# plain attribute read is ~10x cheaper than a C++ accessor; autograd reads these per op).
Tensor.requires_grad = False
Tensor.grad = None
Tensor.grad_fn = None


def _method(fn):
    setattr(Tensor, fn.__name__, fn)
    return fn


def _shape_args(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return list(shape[0])
    return list(shape)


# ---- views ---------------------------------------------------------------------------
@_method
def reshape(self, *shape):
    """View with a new shape when the strides allow it, else a contiguous copy."""
    return self._reshape(_shape_args(shape))


@_method
def view(self, *shape):
    """View with a new shape; ValueError if that needs a copy."""
    return self._view(_shape_args(shape))


@_method
def permute(self, *dims):
    return self._permute(_shape_args(dims))


@_method
def transpose(self, dim0, dim1):
    return self._transpose(dim0, dim1)


@_method
def flatten(self, start_dim=0, end_dim=-1):
    nd = self.ndim
    if nd == 0:
        return self.reshape(1)
    s, e = start_dim % nd, end_dim % nd
    shape = list(self.shape)
    n = 1
    for d in shape[s:e + 1]:
        n *= d
    return self.reshape(shape[:s] + [n] + shape[e + 1:])


@_method
def unsqueeze(self, dim):
    nd = self.ndim
    d = dim + nd + 1 if dim < 0 else dim
    if not 0 <= d <= nd:
        raise IndexError(f"unsqueeze: argument 'dim': expected a dimension in [{-nd - 1}, {nd}], got {dim}")
    shape, strides = list(self.shape), list(self.strides)
    shape.insert(d, 1)
    strides.insert(d, strides[d] * shape[d + 1] if d < nd else 1)
    return self._as_strided(shape, strides)


@_method
def squeeze(self, dim=None):
    if dim is None:
        keep = [i for i, s in enumerate(self.shape) if s != 1]
    else:
        nd = self.ndim
        d = dim % nd if nd else 0
        keep = [i for i in range(nd) if i != d or self.shape[i] != 1]
    return self._as_strided([self.shape[i] for i in keep], [self.strides[i] for i in keep])


Tensor.T = property(lambda self: self._permute(list(range(self.ndim))[::-1]), doc="Reversed dimensions.")
Tensor.__getitem__ = lambda self, idx: self._getitem(idx)


# ---- copies and conversions ------------------------------------------------------------
@_method
def contiguous(self):
    return self if self.is_contiguous() else self._contiguous()


@_method
def clone(self):
    return self._clone()


@_method
def detach(self):
    """The same data, cut from the autograd graph."""
    return self._as_strided(list(self.shape), list(self.strides))


@_method
def to(self, *args, device=None, dtype=None, copy=False):
    """to(device), to(dtype) or to(device, dtype): a converted tensor (self when nothing changes)."""
    for a in args:
        if isinstance(a, str) and (a == "cpu" or a.startswith("cuda")):
            device = a
        else:
            dtype = a
    return self._to(device, dtype, copy)


@_method
def cpu(self):
    return self._to("cpu", None, False)


@_method
def cuda(self, device=0):
    return self._to(f"cuda:{device}" if isinstance(device, int) else device, None, False)


def _to_float32(self):
    return self._to(None, "float32", False)


Tensor.float = _to_float32


@_method
def tolist(self):
    return self.cpu().numpy().tolist() if self.dtype != _C.DType.bfloat16 else self.float().tolist()


@_method
def __array__(self, dtype=None, copy=None):
    """NumPy 2 protocol: a zero-copy view for CPU tensors unless a copy is requested or needed."""
    if self.is_cuda:
        if copy is False:
            raise ValueError(f"__array__: the tensor is on {self.device}; a copy to the host is required but copy=False")
        arr = self.cpu().numpy()
        copy = False
    else:
        arr = self.numpy()
    if dtype is not None and np.dtype(dtype) != arr.dtype:
        if copy is False:
            raise ValueError(f"__array__: converting {arr.dtype} to {np.dtype(dtype)} needs a copy but copy=False")
        return arr.astype(dtype)
    return arr.copy() if copy else arr


@_method
def __repr__(self):
    try:
        host = self if not self.is_cuda else self.cpu()
        if self.dtype == _C.DType.bfloat16:
            host = host.float()
        body = np.array2string(host.numpy(), separator=", ", prefix="tensor(", threshold=200)
    except Exception as e:  # never let repr fail
        body = f"<unprintable: {e}>"
    extras = [f"dtype={self.dtype!r}"]
    if self.is_cuda:
        extras.append(f"device='{self.device}'")
    if self.requires_grad:
        extras.append("requires_grad=True")
    return f"tensor({body}, {', '.join(extras)})"


def _scalar(self, kind):
    if self.numel() != 1:
        raise ValueError(f"only one-element tensors can be converted to Python scalars, got shape {self.shape}")
    return kind(self.item())


Tensor.__float__ = lambda self: _scalar(self, float)
Tensor.__int__ = lambda self: _scalar(self, int)
Tensor.__bool__ = lambda self: _scalar(self, bool)


def _index(self):
    if self.dtype.is_floating_point:
        raise TypeError(f"only integer tensors can be used as an index, got dtype {self.dtype!r}")
    return _scalar(self, int)


Tensor.__index__ = _index


# ---- creation ----------------------------------------------------------------------------
def _default_dtype_for(arr: np.ndarray):
    if arr.dtype == np.float64:
        return "float32"  # fastnn computes in float32; keep float64 only when asked
    return None


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor holding a copy of ``data`` (nested lists, scalars, NumPy arrays, DLPack
    producers or tensors). Python floats and float64 arrays become float32 unless ``dtype``
    says otherwise; integers become int64."""
    if isinstance(data, Tensor):
        src = data
    elif hasattr(data, "__dlpack__") and not isinstance(data, np.ndarray):
        src = _C.from_dlpack(data)
    else:
        arr = np.asarray(data)
        if arr.dtype == object:
            raise TypeError("tensor: argument 'data': expected numbers or nested sequences of numbers, "
                            f"got an object array ({type(data).__name__})")
        if arr.dtype.kind == "U" or arr.dtype.kind == "S":
            raise TypeError(f"tensor: argument 'data': expected numbers, got strings ({arr.dtype})")
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if dtype is None:
            dtype = _default_dtype_for(arr)
        src = _C.from_numpy(arr if arr.flags.c_contiguous and arr.flags.aligned else np.array(arr, order="C"))
    out = src._to(device, dtype, True)
    out.requires_grad = bool(requires_grad)
    return out


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like tensor(), but shares memory with ``data`` when no conversion is needed."""
    if isinstance(data, (Tensor, np.ndarray)) or hasattr(data, "__dlpack__"):
        t = _C.as_tensor(data)
        return t._to(device, dtype, False)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(a: np.ndarray) -> Tensor:
    """A tensor sharing memory with the NumPy array ``a`` (any strides; no copy)."""
    return _C.from_numpy(a)


def from_dlpack(x) -> Tensor:
    """A tensor sharing memory with any DLPack producer (NumPy >= 1.22, PyTorch, JAX, CuPy, ...)."""
    return _C.from_dlpack(x)


def empty(*shape, dtype="float32", device="cpu") -> Tensor:
    return _C.empty(_shape_args(shape), dtype, device)


def zeros(*shape, dtype="float32", device="cpu") -> Tensor:
    return _C.zeros(_shape_args(shape), dtype, device)


def full(shape, fill_value, dtype="float32", device="cpu") -> Tensor:
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    np_dtype = np.float32 if dtype in ("float32", _C.DType.float32) else None
    arr = np.full(tuple(shape), fill_value, dtype=np_dtype)
    return tensor(arr, dtype=dtype, device=device)


def ones(*shape, dtype="float32", device="cpu") -> Tensor:
    return full(tuple(_shape_args(shape)), 1, dtype=dtype, device=device)


_C.DType.__repr__ = lambda self: f"fastnn.{self.name}"
_C.DType.__str__ = _C.DType.__repr__
