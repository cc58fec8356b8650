"""FusedAdam: torch.optim.Adam / AdamW semantics, one fastnn kernel call per parameter group."""
from __future__ import annotations

import torch


class FusedAdam(torch.optim.Optimizer):
    """Drop-in for ``torch.optim.Adam`` (and ``AdamW`` with ``decoupled_weight_decay=True``) whose
    step is one ``torch.ops.fastnn.adam_`` call per parameter group (float32 parameters, dense
    grads). The state has torch's layout (``step`` as a float32 scalar tensor, ``exp_avg``,
    ``exp_avg_sq``, ``max_exp_avg_sq``), so state dicts move between this and torch.optim.Adam.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        if not 0.0 <= float(lr):
            raise ValueError(f"FusedAdam: argument 'lr': expected >= 0, got {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"FusedAdam: argument 'eps': expected >= 0, got {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"FusedAdam: argument 'betas[{i}]': expected a value in [0, 1), got {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"FusedAdam: argument 'weight_decay': expected >= 0, got {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:  # state dicts of torch.optim.Adam may lack these
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("decoupled_weight_decay", False)

    def _state_of(self, p, amsgrad):
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if amsgrad:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            amsgrad = bool(group["amsgrad"])
            # One kernel call per distinct step count (a single one unless params joined the group late).
            buckets: dict[int, list] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise TypeError("FusedAdam: sparse gradients are not supported")
                if p.dtype != torch.float32:
                    raise TypeError(f"FusedAdam: expected float32 parameters, got {p.dtype}")
                state = self._state_of(p, amsgrad)
                state["step"] += 1
                buckets.setdefault(int(state["step"].item()), []).append((p, state))
            beta1, beta2 = group["betas"]
            for step, items in buckets.items():
                torch.ops.fastnn.adam_(
                    [p for p, _ in items], [p.grad for p, _ in items], [s["exp_avg"] for _, s in items],
                    [s["exp_avg_sq"] for _, s in items],
                    [s["max_exp_avg_sq"] for _, s in items] if amsgrad else [], step, float(group["lr"]),
                    float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]),
                    bool(group["decoupled_weight_decay"]), bool(group["maximize"]), amsgrad)
        return loss
