"""Sequential and ModuleList."""
from __future__ import annotations

from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """Applies its modules in order. ``Sequential(m1, m2)`` or ``Sequential(OrderedDict(...))``."""

    def __init__(self, *mods):
        super().__init__()
        if len(mods) == 1 and isinstance(mods[0], (OrderedDict, dict)):
            for name, m in mods[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(mods):
                if not isinstance(m, Module):
                    raise TypeError(f"Sequential: argument {i}: expected a Module, got {type(m).__name__}")
                self.add_module(str(i), m)
        self.__dict__["_seq"] = list(self._modules.values())

    def add_module(self, name, module):
        super().add_module(name, module)
        self.__dict__["_seq"] = list(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def forward(self, x):
        for m in self._seq:
            x = m(x)
        return x

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(OrderedDict(list(self._modules.items())[i]))
        return self._seq[i]

    def __len__(self):
        return len(self._seq)

    def __iter__(self):
        return iter(self._seq)


class ModuleList(Module):
    def __init__(self, mods=()):
        super().__init__()
        for m in mods:
            self.append(m)

    def append(self, m):
        self.add_module(str(len(self._modules)), m)
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))
