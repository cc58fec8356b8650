"""Adam and AdamW (torch.optim formulas) on the fused multi-tensor kernel fastnn.ops.adam_."""
from __future__ import annotations

from .. import _C
from ..ops import adam_
from .optimizer import Optimizer


class Adam(Optimizer):
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                 maximize=False):
        name = type(self).__name__
        if lr < 0:
            raise ValueError(f"{name}: argument 'lr': expected a non-negative learning rate, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"{name}: argument 'betas': expected values in [0, 1), got {tuple(betas)}")
        if eps < 0:
            raise ValueError(f"{name}: argument 'eps': expected >= 0, got {eps}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _step_group(self, g, params, grads):
        # Parameters that got grads at different times have different step counts; the kernel
        # takes one step per call, so group by step (one call in the usual case).
        state = self.state
        sts = [state.get(id(p)) for p in params]
        if None not in sts and not g["amsgrad"]:
            step = sts[0]["step"] + 1
            if all(st["step"] + 1 == step for st in sts):  # the usual case: one kernel call
                for st in sts:
                    st["step"] = step
                b1, b2 = g["betas"]
                adam_(params, grads, [st["exp_avg"] for st in sts], [st["exp_avg_sq"] for st in sts], step=step,
                      lr=g["lr"], beta1=b1, beta2=b2, eps=g["eps"], weight_decay=g["weight_decay"],
                      decoupled=self._decoupled, maximize=g["maximize"])
                return
        by_step = {}
        for p, gr in zip(params, grads):
            st = self.state.get(id(p))
            if st is None:
                z = lambda: _C.zeros(list(p.shape), p.dtype, str(p.device))  # noqa: E731
                st = self.state[id(p)] = {"step": 0, "exp_avg": z(), "exp_avg_sq": z()}
                if g["amsgrad"]:
                    st["max_exp_avg_sq"] = z()
            st["step"] += 1
            lst = by_step.setdefault(st["step"], ([], [], [], [], []))
            lst[0].append(p)
            lst[1].append(gr)
            lst[2].append(st["exp_avg"])
            lst[3].append(st["exp_avg_sq"])
            lst[4].append(st.get("max_exp_avg_sq"))
        for step, (ps, gs, ms, vs, mx) in by_step.items():
            adam_(ps, gs, ms, vs, step=step, lr=g["lr"], beta1=g["betas"][0], beta2=g["betas"][1], eps=g["eps"],
                  weight_decay=g["weight_decay"], decoupled=self._decoupled, maximize=g["maximize"],
                  amsgrad=g["amsgrad"], max_exp_avg_sqs=mx if g["amsgrad"] else None)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2, as torch.optim.AdamW)."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
