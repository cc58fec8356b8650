"""Optimizer base: parameter groups, per-parameter state, zero_grad, state_dict.

Subclasses implement ``_step_group(group, params, grads, states)`` with ONE fused
multi-tensor kernel call per group (fastnn.ops.adam_ / sgd_): the Python cost of a step is
a loop over the parameter list to gather pointers, independent of parameter sizes."""
from __future__ import annotations

import copy

from .. import _C
from ..autograd import _mode

Tensor = _C.Tensor


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # id(param) -> dict
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: argument 'params': expected a non-empty iterable of tensors "
                             "or parameter groups, got an empty one")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for g in params:
            self.add_param_group(g)

    def add_param_group(self, group):
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__}: argument 'params': element {i}: expected a Tensor, "
                                f"got {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"{type(self).__name__}: argument 'params': element {i} does not require grad")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError(f"{type(self).__name__}: a parameter appears in more than one parameter group")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.zero_()

    def step(self, closure=None):
        loss = None
        if closure is not None:
            from ..autograd import enable_grad
            with enable_grad():
                loss = closure()
        # no_grad, inlined: the step runs once per batch and its Python cost is overhead
        prev, _mode.enabled = _mode.enabled, False
        try:
            for g in self.param_groups:
                params, grads = [], []
                for p in g["params"]:
                    gr = p.grad
                    if gr is not None:
                        params.append(p)
                        grads.append(gr if gr.is_contiguous() else gr.contiguous())
                if params:
                    self._step_group(g, params, grads)
        finally:
            _mode.enabled = prev
        return loss

    def _step_group(self, group, params, grads):
        raise NotImplementedError

    # ---- state dict (PyTorch's layout: params referred to by index) --------------------------
    def state_dict(self):
        index, groups, i = {}, [], 0
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index[id(p)] = i
                ids.append(i)
                i += 1
            gd = {k: v for k, v in g.items() if k != "params"}
            gd["params"] = ids
            groups.append(gd)
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                st = self.state.get(id(p))
                if st:
                    state[index[id(p)]] = {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in st.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd):
        groups = sd.get("param_groups") if isinstance(sd, dict) else None
        if groups is None or "state" not in sd:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a dict with 'state' and 'param_groups'")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state has {len(groups)} parameter groups, "
                             f"the optimizer {len(self.param_groups)}")
        params = []
        for i, (mine, theirs) in enumerate(zip(self.param_groups, groups)):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"{type(self).__name__}.load_state_dict: group {i} has {len(theirs['params'])} "
                                 f"parameters in the state, {len(mine['params'])} in the optimizer")
            params.extend(zip(theirs["params"], mine["params"]))
        state_in = {int(k): v for k, v in sd["state"].items()}
        new_state = {}
        for idx, p in params:
            st = state_in.get(int(idx))
            if st is None:
                continue
            out = {}
            for k, v in st.items():
                if isinstance(v, Tensor) and v.ndim > 0:
                    if tuple(v.shape) != tuple(p.shape):
                        raise ValueError(f"{type(self).__name__}.load_state_dict: state '{k}' of parameter {idx}: "
                                         f"expected shape {tuple(p.shape)}, got {tuple(v.shape)}")
                    v = v._to(str(p.device), p.dtype, True)
                out[k] = v
            new_state[id(p)] = out
        self.state = new_state
        for mine, theirs in zip(self.param_groups, groups):
            for k, v in theirs.items():
                if k != "params":
                    mine[k] = copy.deepcopy(v)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"
