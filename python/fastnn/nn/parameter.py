"""nn.Parameter: a leaf tensor that a Module registers as trainable.

fastnn.Tensor is a native class, so a Parameter is a plain Tensor marked ``_is_param``
(isinstance(t, Parameter) checks the mark); it shares storage with the data it wraps."""
from __future__ import annotations

from .. import _C
from ..tensor import tensor as _tensor

Tensor = _C.Tensor


class _ParameterMeta(type):
    def __instancecheck__(cls, obj):
        return obj.__class__ is Tensor and getattr(obj, "_is_param", False)


class Parameter(metaclass=_ParameterMeta):
    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            t = _C.empty([0], "float32", "cpu")
        elif isinstance(data, Tensor):
            t = data.detach()
        else:
            t = _tensor(data)
        t.requires_grad = bool(requires_grad)
        t._is_param = True
        return t
