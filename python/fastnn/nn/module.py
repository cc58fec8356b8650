"""nn.Module: the container of parameters, buffers and sub-modules (PyTorch's API).

Parameters and sub-modules are kept in ordered dicts (registration order = state_dict order)
and mirrored in the instance ``__dict__`` so that ``self.weight`` in a forward is a plain
attribute read, not a ``__getattr__`` fallback."""
from __future__ import annotations

from collections import OrderedDict

from .. import _C
from ..autograd import no_grad
from .parameter import Parameter

Tensor = _C.Tensor


class Module:
    training: bool

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["training"] = True

    # ---- registration ----------------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for reg in (d["_parameters"], d["_buffers"], d["_modules"]):
            reg.pop(name, None)
        if isinstance(value, Parameter):
            d["_parameters"][name] = value
        elif isinstance(value, Module):
            d["_modules"][name] = value
        elif value is None and name in self.__dict__.get("_none_params", ()):
            d["_parameters"][name] = None
        d[name] = value

    def __delattr__(self, name):
        for reg in (self._parameters, self._buffers, self._modules):
            reg.pop(name, None)
        del self.__dict__[name]

    def register_parameter(self, name, param):
        if param is None:
            self.__dict__.setdefault("_none_params", set()).add(name)
            self._parameters[name] = None
            self.__dict__[name] = None
        else:
            setattr(self, name, Parameter(param) if not isinstance(param, Parameter) else param)

    def register_buffer(self, name, tensor, persistent=True):
        self.__dict__[name] = tensor
        self._buffers[name] = tensor
        if not persistent:
            self.__dict__.setdefault("_non_persistent", set()).add(name)

    def add_module(self, name, module):
        setattr(self, name, module)

    # ---- traversal ---------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is not None:
                yield from m.named_modules(memo, prefix + ("." if prefix else "") + name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield mp + ("." if mp else "") + name, p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        mods = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mp, m in mods:
            for name, b in m._buffers.items():
                if b is not None:
                    yield mp + ("." if mp else "") + name, b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- modes and grads ---------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self, prefix=""):
        """Ordered {name: tensor} of parameters and persistent buffers (detached, shared storage)."""
        out = OrderedDict()
        for mp, m in self.named_modules(prefix=prefix.rstrip(".")):
            skip = m.__dict__.get("_non_persistent", ())
            for name, p in m._parameters.items():
                if p is not None:
                    out[mp + ("." if mp else "") + name] = p.detach()
            for name, b in m._buffers.items():
                if b is not None and name not in skip:
                    out[mp + ("." if mp else "") + name] = b.detach()
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy tensors into the parameters/buffers. Shapes must match; with ``strict`` the key
        sets must be equal. Raises ValueError naming the key (and both shapes). Returns
        (missing_keys, unexpected_keys)."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
            raise ValueError(f"load_state_dict for {type(self).__name__}: " + "; ".join(parts))
        for k, dst in own.items():
            if k not in state_dict:
                continue
            src = state_dict[k]
            src_shape = tuple(getattr(src, "shape", ()))
            if src_shape != tuple(dst.shape):
                raise ValueError(f"load_state_dict for {type(self).__name__}: size mismatch for '{k}': "
                                 f"the model has shape {tuple(dst.shape)}, the state dict has shape {src_shape}")
        with no_grad():
            for k, dst in own.items():
                if k in state_dict:
                    src = state_dict[k]
                    if not isinstance(src, Tensor):
                        from ..tensor import tensor
                        src = tensor(src)
                    dst.copy_(src._to(str(dst.device), dst.dtype, False))
        return missing, unexpected

    def to(self, *args, **kwargs):
        """Move/convert every parameter (and its grad) and buffer; returns self."""
        with no_grad():
            for m in self.modules():
                for name, p in list(m._parameters.items()):
                    if p is None:
                        continue
                    q = p.to(*args, **kwargs)
                    if q is not p:
                        q = Parameter(q, p.requires_grad)
                        if p.grad is not None:
                            q.grad = p.grad.to(*args, **kwargs)
                        m._parameters[name] = q
                        m.__dict__[name] = q
                for name, b in list(m._buffers.items()):
                    if b is not None:
                        nb = b.to(*args, **kwargs)
                        m._buffers[name] = nb
                        m.__dict__[name] = nb
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=0):
        return self.to(f"cuda:{device}" if isinstance(device, int) else device)

    def num_parameters(self):
        n = 0
        for p in self.parameters():
            n += p.numel()
        return n

    # ---- call and repr -----------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward is not implemented")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        lines = []
        for name, m in self._modules.items():
            body = repr(m).replace("\n", "\n  ")
            lines.append(f"({name}): {body}")
        s = type(self).__name__ + "("
        if extra and not lines:
            return s + extra + ")"
        if extra:
            lines = extra.split("\n") + lines
        if lines:
            s += "\n  " + "\n  ".join(lines) + "\n"
        return s + ")"

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameters) + list(self._modules)
